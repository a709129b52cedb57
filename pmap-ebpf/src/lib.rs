#![no_std]

// Exists so `pmap-user` can name this crate as a build dependency (cargo rebuilds the embedded
// object when it changes); the programs are in the `pmap-ebpf` binary.
