//! `--sites` for real: a program built without frame pointers grows anonymous memory through
//! glibc's malloc from three functions by known amounts (large blocks: one mmap each; small and
//! medium blocks: the brk heap), then stops. Each amount must be attributed to a call site that
//! names its function (at least 95 % of it, at most 110 %), the site must start at the program's
//! own frame (allocator frames folded away), and `--full-stacks` keeps those frames.

use pmap_integration_tests::{Tracer, Workload, require_root};
use serde_json::Value;

const TARGET: &str = env!("ATTRIBUTION_TARGET");

/// The target's functions and the bytes each asks malloc for (see attribution-target/main.rs).
const GROWERS: [(&str, u64); 3] = [
    ("attribution_target::grow_with_large_blocks", 24 << 20),
    ("attribution_target::grow_with_small_blocks", 4096 * 2040),
    (
        "attribution_target::grow_with_medium_blocks",
        96 * ((64 << 10) - 8),
    ),
];

/// Runs the target under `pmap-trace --sites 10 --json EXTRA...`, dumps once it has grown
/// everything, and returns the `sites` record of that dump.
fn sites_after_growth(extra: &[&str]) -> Value {
    let mut target = Workload::start(TARGET, "grow", &[]);
    let pid = target.pid().to_string();
    let mut args = vec!["--sites", "10", "--no-events", "--json"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-p", &pid]);
    let mut tracer = Tracer::attach(&args);
    target.go();
    target.read_until_checkpoint();
    target.wait_stopped();
    tracer.signal(libc::SIGUSR1);
    let sites = loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut tracer.stdout, &mut line).unwrap();
        assert!(n > 0, "pmap-trace ended before its sites record");
        let value: Value = serde_json::from_str(&line).unwrap();
        if value["type"] == "sites" {
            break value;
        }
    };
    target.resume();
    assert_eq!(target.finish(), 0);
    let (code, _, err) = tracer.finish();
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(sites["pid"].as_u64(), Some(pid.parse().unwrap()));
    sites
}

fn functions(site: &Value) -> Vec<&str> {
    site["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["function"].as_str().unwrap())
        .collect()
}

#[test]
fn each_function_owns_what_it_grew_through_malloc_without_frame_pointers() {
    if !require_root() {
        return;
    }
    let sites = sites_after_growth(&[]);
    let by_live = sites["by_live"].as_array().unwrap();
    for (function, asked) in GROWERS {
        let naming: Vec<&Value> = by_live
            .iter()
            .filter(|site| functions(site).contains(&function))
            .collect();
        let owned: u64 = naming
            .iter()
            .map(|s| s["live_bytes"].as_u64().unwrap())
            .sum();
        let share = owned as f64 / asked as f64;
        assert!(
            (0.95..=1.10).contains(&share),
            "{function} asked for {asked} bytes, its sites own {owned} ({:.1} %): {sites:#}",
            share * 100.0
        );
        for site in naming {
            let frames = functions(site);
            // No site names two of the functions: each stack is its own.
            for (other, _) in GROWERS.iter().filter(|(f, _)| *f != function) {
                assert!(
                    !frames.contains(other),
                    "{function} and {other} in one site: {frames:?}"
                );
            }
            // Folded: the site starts in the program (`allocate` is inlined into each
            // function), not in malloc or the C library's mmap/brk wrappers.
            let first = &site["frames"][0];
            assert_eq!(
                first["module"], "attribution-target",
                "unfolded: {frames:?}"
            );
            assert!(
                frames.contains(&"attribution_target::main"),
                "the walk did not reach main: {frames:?}"
            );
        }
    }
    // The first dump's growth is everything traced so far.
    let growth: Vec<&str> = sites["by_growth"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(functions)
        .collect();
    for (function, _) in GROWERS {
        assert!(
            growth.contains(&function),
            "{function} missing from growth: {sites:#}"
        );
    }
}

#[test]
fn full_stacks_keep_the_allocator_frames_and_no_copy_means_no_site() {
    if !require_root() {
        return;
    }
    let sites = sites_after_growth(&["--full-stacks", "--stack-bytes", "8K"]);
    let large = sites["by_live"]
        .as_array()
        .unwrap()
        .iter()
        .find(|site| functions(site).contains(&GROWERS[0].0))
        .unwrap_or_else(|| panic!("no site for the large blocks: {sites:#}"));
    let frames = functions(large);
    assert_eq!(large["frames"][0]["module"], "libc.so.6", "{frames:?}");
    let malloc = frames
        .iter()
        .position(|f| f.contains("malloc"))
        .expect("malloc frame");
    let grower = frames.iter().position(|f| *f == GROWERS[0].0).unwrap();
    assert!(
        malloc < grower,
        "malloc is called by the grower: {frames:?}"
    );

    // Without a stack copy the growth is still counted, under an origin that says why.
    let sites = sites_after_growth(&["--stack-bytes", "0"]);
    let uncopied: u64 = sites["by_live"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|site| site["origin"] == "(no stack copied: --stack-bytes 0)")
        .map(|site| site["live_bytes"].as_u64().unwrap())
        .sum();
    let asked: u64 = GROWERS.iter().map(|(_, bytes)| bytes).sum();
    assert!(
        uncopied as f64 >= asked as f64 * 0.95,
        "{uncopied} of {asked} bytes under the no-copy origin: {sites:#}"
    );
}
