//! What the kernel shows of a process under `/proc`: the mappings a table is seeded from, the
//! command line and stack start pmap prints, the smaps lines of the extended formats, the
//! `PROCMAP_QUERY` ioctl that settles what events cannot tell, and the comparison `--verify`
//! makes.

pub mod procmap_query;
pub mod seed;
pub mod verify;
