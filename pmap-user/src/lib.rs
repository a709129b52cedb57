//! pmap-trace as a library. The data flow, one module per stage:
//! kernel hook (`pmap-ebpf`) → [`pmap_common::EventRecord`] → `decode` → [`table`] →
//! [`render`] → output sink.

pub mod render;
pub mod seed;
pub mod table;

/// The eBPF object built from `pmap-ebpf` by `build.rs`.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pmap-ebpf"));
