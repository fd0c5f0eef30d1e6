//! Builds the eBPF object (`leak-ebpf`, target bpfel-unknown-none, nightly)
//! into OUT_DIR so `main.rs` can embed it with `include_bytes_aligned!`.
//! The fuzz targets' build (feature `fuzzing`) loads no probes: it embeds
//! an empty object instead.
fn main() -> anyhow::Result<()> {
    if std::env::var_os("CARGO_FEATURE_FUZZING").is_some() {
        let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
        std::fs::write(out.join("leak"), [])?;
        return Ok(());
    }
    let ebpf = aya_build::Package {
        name: "leak-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../leak-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf], aya_build::Toolchain::default())
}
