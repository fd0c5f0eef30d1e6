//! Builds the eBPF object (`leak-ebpf`, target bpfel-unknown-none, nightly)
//! into OUT_DIR so `main.rs` can embed it with `include_bytes_aligned!`.
fn main() -> anyhow::Result<()> {
    let ebpf = aya_build::Package {
        name: "leak-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../leak-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf], aya_build::Toolchain::default())
}
