//! Part 5, a real server: redis-server, launched untraced, by `pmap-trace --no-sites` and by the
//! plain run (both with events to /dev/null), driven by redis-benchmark; requests per second.
//! What call sites on by default cost a server is the difference between the last two.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Result, anyhow, bail};

use super::{
    Plan,
    env::{Env, Redis},
    in_rotation,
    processes::{Guarded, median, trimmed},
    quiet::{check_interrupted, quietly},
    workloads::Tracer,
};

/// The configurations compared, in the order of a round.
pub(super) const CONFIGS: [Tracer; 3] = [Tracer::None, Tracer::PmapEvents, Tracer::PmapPlain];

/// redis-benchmark's tests: SET with random keys over a keyspace larger than a run writes, so the
/// data set (and the server's memory) grows all through it; then GET of those keys.
pub(super) const TESTS: [&str; 2] = ["SET", "GET"];

/// Random keys out of this many (`-r`) and values of this many bytes (`-d`).
const KEYSPACE: &str = "1000000";
const VALUE_BYTES: &str = "1024";

#[derive(Default)]
pub(super) struct RedisResults {
    /// Requests per second, every round, by test and configuration.
    pub(super) rps: BTreeMap<(&'static str, Tracer), Vec<f64>>,
    /// Requests per run and test.
    pub(super) requests: u64,
    /// Why the part did not run, when it did not.
    pub(super) skipped: Option<String>,
}

impl RedisResults {
    pub(super) fn median(&self, test: &'static str, tracer: Tracer) -> Option<f64> {
        median(self.rps.get(&(test, tracer))?)
    }
}

/// Part 5: [`Plan::rounds`] rounds of the three configurations, alternating.
pub(super) fn redis(env: &Env, plan: &Plan) -> Result<RedisResults> {
    let mut results = RedisResults {
        requests: plan.redis_requests,
        ..Default::default()
    };
    let redis = match &env.redis {
        Ok(redis) => redis,
        Err(why) => {
            results.skipped = Some(why.clone());
            return Ok(results);
        }
    };
    println!(
        "\n==> redis-server under redis-benchmark: {} rounds x {} configurations, {} requests per \
         test",
        plan.rounds,
        CONFIGS.len(),
        plan.redis_requests
    );
    let socket = env.bench_dir.join("redis.sock");
    for round in 0..plan.rounds {
        for tracer in in_rotation(&CONFIGS, round) {
            check_interrupted()?;
            let what = format!("redis-benchmark under {}", tracer.label());
            let rps = quietly(&what, || {
                serve_and_benchmark(env, redis, tracer, &socket, plan)
            })?;
            let shown: Vec<String> = rps.iter().map(|(t, r)| format!("{t} {r:.0}/s")).collect();
            println!(
                "[round {}/{}] redis {:<58} {}",
                round + 1,
                plan.rounds,
                tracer.label(),
                shown.join(", ")
            );
            for (test, rps) in rps {
                results.rps.entry((test, tracer)).or_default().push(rps);
            }
        }
    }
    Ok(results)
}

/// A redis-server on a unix socket, shut down (without saving) when dropped: in launch mode
/// pmap-trace ends when it does.
struct Server<'a> {
    redis: &'a Redis,
    socket: &'a Path,
    process: Option<Guarded>,
}

impl Drop for Server<'_> {
    fn drop(&mut self) {
        let _ = cli(self.redis, self.socket, &["shutdown", "nosave"]);
        if let Some(mut process) = self.process.take() {
            let _ = process.wait(Duration::from_secs(30), "redis-server");
        }
    }
}

/// Starts the server under `tracer`, runs the benchmark against it, stops it; returns the
/// requests per second of each test.
fn serve_and_benchmark(
    env: &Env,
    redis: &Redis,
    tracer: Tracer,
    socket: &Path,
    plan: &Plan,
) -> Result<Vec<(&'static str, f64)>> {
    let _ = std::fs::remove_file(socket);
    let mut server_argv: Vec<PathBuf> = vec![redis.server.clone()];
    // No persistence: the run measures requests, not disk writes.
    for arg in [
        "--port",
        "0",
        "--save",
        "",
        "--appendonly",
        "no",
        "--unixsocket",
    ] {
        server_argv.push(arg.into());
    }
    server_argv.push(socket.into());
    let mut cmd = match tracer {
        Tracer::None => Command::new(&server_argv[0]),
        Tracer::PmapEvents | Tracer::PmapPlain => {
            let mut cmd = Command::new(&env.pmap_trace);
            if tracer == Tracer::PmapEvents {
                cmd.arg("--no-sites");
            }
            cmd.args(["-o", "/dev/null", "--"]).arg(&server_argv[0]);
            cmd
        }
        _ => bail!("redis is not measured under {}", tracer.label()),
    };
    cmd.args(&server_argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let server = Server {
        redis,
        socket,
        process: Some(Guarded::spawn(&mut cmd)?),
    };
    // pmap-trace attaches before it starts the server, so a server that answers is traced.
    let deadline = Instant::now() + Duration::from_secs(30);
    while cli(redis, socket, &["ping"]).as_deref() != Some("PONG") {
        if Instant::now() > deadline {
            bail!(
                "redis-server did not answer on {} within 30 s",
                socket.display()
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
    let out = Command::new(&redis.benchmark)
        .arg("-s")
        .arg(socket)
        .args(["-n", &plan.redis_requests.to_string()])
        .args([
            "-r",
            KEYSPACE,
            "-d",
            VALUE_BYTES,
            "-t",
            "set,get",
            "--csv",
            "-q",
        ])
        .output()?;
    drop(server);
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "redis-benchmark: {}; stderr:\n{}",
            out.status,
            trimmed(&String::from_utf8_lossy(&out.stderr))
        );
    }
    TESTS
        .iter()
        .map(|&test| {
            requests_per_second(&text, test)
                .map(|rps| (test, rps))
                .ok_or_else(|| anyhow!("redis-benchmark printed no {test} line:\n{text}"))
        })
        .collect()
}

/// The `rps` column of `test`'s line in redis-benchmark's CSV (`"SET","86956.52",…`).
fn requests_per_second(csv: &str, test: &str) -> Option<f64> {
    csv.lines().find_map(|line| {
        let mut fields = line.split(',').map(|f| f.trim_matches('"'));
        (fields.next()? == test).then_some(())?;
        fields.next()?.parse().ok()
    })
}

/// What `redis-cli -s SOCKET ARGS...` printed, when it ran.
fn cli(redis: &Redis, socket: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new(&redis.cli)
        .arg("-s")
        .arg(socket)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_rps_of_each_test_from_redis_benchmarks_csv() {
        // As redis-benchmark 7.0 prints it.
        let csv = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\"\n\
                   \"SET\",\"20986.36\",\"1.963\",\"0.104\"\n\
                   \"GET\",\"53050.40\",\"0.618\",\"0.056\"\n";
        assert_eq!(requests_per_second(csv, "SET"), Some(20986.36));
        assert_eq!(requests_per_second(csv, "GET"), Some(53050.40));
        assert_eq!(requests_per_second(csv, "LPUSH"), None);
        assert_eq!(requests_per_second("\"SET\",\"n/a\"", "SET"), None);
    }
}
