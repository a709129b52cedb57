//! What the kernel shows of a process under `/proc`: the mappings a table is seeded from, the
//! command line and stack start pmap prints, the smaps lines of the extended formats, the
//! `PROCMAP_QUERY` ioctl that settles what events cannot tell, the comparison `--verify`
//! makes, and why the kernel refuses to show a process.

pub mod access;
pub mod procmap_query;
pub mod seed;
pub mod verify;
