//! How the bench writes durations and sizes, in its progress lines and in the report alike.

/// A duration in nanoseconds, in the unit that keeps it short.
pub(super) fn format_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.1} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// A size in KiB (as /proc reports it) in MB, or `n/a` when it was not read.
pub(super) fn format_kb(kb: Option<u64>) -> String {
    kb.map_or("n/a".into(), |kb| {
        format!("{:.1} MB", kb as f64 * 1024.0 / 1e6)
    })
}
