//! Rebuild the eBPF object when bpf-linker changes (it is not a cargo input).
use which::which;

fn main() {
    if let Ok(bpf_linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", bpf_linker.display());
    }
}
