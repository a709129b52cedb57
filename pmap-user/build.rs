//! Builds `pmap-ebpf` for the BPF target (nightly + bpf-linker, see `cargo xtask setup`) so the
//! binary can embed the object with `include_bytes_aligned!`.
use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

fn main() -> anyhow::Result<()> {
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("MetadataCommand::exec")?;
    let ebpf_package = packages
        .into_iter()
        .find(|cargo_metadata::Package { name, .. }| name.as_str() == "pmap-ebpf")
        .ok_or_else(|| anyhow!("pmap-ebpf package not found"))?;
    let root_dir = ebpf_package
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf_package.manifest_path))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: ebpf_package.name.as_str(),
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        Toolchain::default(),
    )
}
