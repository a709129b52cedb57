//! pmap-trace as a library, one folder per stage of the data flow:
//!
//! kernel hook (`pmap-ebpf`) → record ([`pmap_common`]) → [`capture`] (the kernel side as
//! userspace sees it: loading, the ring) → [`decode`] (ring bytes → events) → [`table`] (the
//! live table of each process, kept by applying events; [`procfs`] seeds it and settles what
//! events cannot tell) → [`render`] (pmap's formats, event lines, JSON, every notice; the output
//! sink) and [`sites`] (who grew the anonymous memory: unwinding, symbols, ownership, reports).
//! [`session`] drives the flow; [`model`] holds what every stage shares; [`cli`] and [`config`]
//! turn flags into settled settings before anything starts.

pub mod capture;
pub mod cli;
pub mod config;
pub mod decode;
pub mod demo;
pub mod model;
pub mod procfs;
pub mod render;
pub mod session;
pub mod sites;
pub mod table;

/// The eBPF object built from `pmap-ebpf` by `build.rs`.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pmap-ebpf"));
