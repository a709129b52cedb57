//! pmap-trace as a library. The data flow, one module per stage:
//! kernel hook (`pmap-ebpf`) → [`pmap_common::EventRecord`] → [`decode`] → [`table`] →
//! [`render`] → [`sink`]; [`capture`] owns the kernel side and [`session`] drives the flow.

pub mod attribution;
pub mod capture;
pub mod cli;
pub mod config;
pub mod decode;
pub mod demo;
mod fd_watch;
pub mod folded;
pub mod launch;
pub mod process;
pub mod procmap_query;
pub mod render;
pub mod seed;
pub mod session;
pub mod sink;
pub mod sites;
pub mod symbolize;
pub mod table;
mod terminal;
pub mod unwind;
pub mod verify;

/// The eBPF object built from `pmap-ebpf` by `build.rs`.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pmap-ebpf"));
