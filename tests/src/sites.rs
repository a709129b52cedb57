//! pmap-trace's JSON call-site records as the tests read them.

use std::io::BufRead;

use serde_json::Value;

use crate::Tracer;

/// Asks `tracer` (run with `--json`) for a dump and returns the `sites` record that follows it.
pub fn sites_after_dump(tracer: &mut Tracer) -> Value {
    tracer.signal(libc::SIGUSR1);
    loop {
        let mut line = String::new();
        let n = tracer.stdout.read_line(&mut line).unwrap();
        assert!(n > 0, "pmap-trace ended before its sites record");
        let value: Value = serde_json::from_str(&line).unwrap();
        if value["type"] == "sites" {
            return value;
        }
    }
}

/// The function of each frame of a site, innermost first.
pub fn functions(site: &Value) -> Vec<&str> {
    site["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["function"].as_str().unwrap())
        .collect()
}
