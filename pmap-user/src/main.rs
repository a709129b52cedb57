fn main() { println!("{}", pmap_trace::EBPF_OBJECT.len()); }
