//! pmap-trace as a library. The data flow, one module per stage:
//! kernel hook (`pmap-ebpf`) → [`pmap_common::EventRecord`] → [`decode`] → [`table`] →
//! [`render`] → [`sink`]; [`capture`] owns the kernel side and [`session`] drives the flow.

pub mod capture;
pub mod cli;
pub mod decode;
mod fd_watch;
pub mod procmap_query;
pub mod render;
pub mod seed;
pub mod table;

/// The eBPF object built from `pmap-ebpf` by `build.rs`.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pmap-ebpf"));
