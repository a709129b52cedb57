//! What can go wrong with the kernel side: loading, attaching, the maps, reading the ring.

use std::io;

use pmap_common::STACK_SIZES;
use thiserror::Error;

use crate::decode::DecodeError;

#[derive(Debug, Error)]
pub enum CaptureError {
    #[error("could not load the eBPF programs: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("could not load or attach eBPF program {program}: {source}")]
    Program {
        program: String,
        source: aya::programs::ProgramError,
    },
    #[error("eBPF map {0} is missing from the object")]
    MissingMap(&'static str),
    #[error("eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("could not start kernel-side logging: {0}")]
    Logger(#[from] aya_log::Error),
    #[error("waiting on the ring buffer failed: {0}")]
    Poll(#[from] io::Error),
    #[error("undecodable record from the kernel: {0}")]
    Decode(#[from] DecodeError),
    #[error("stack copies of {0} bytes are not supported (0 or one of {STACK_SIZES:?})")]
    StackBytes(u32),
}
