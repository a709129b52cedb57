// Workload for `cargo xtask bench`: node's allocation loop, a JavaScript runtime building and
// dropping objects and buffers.
//
//     node churn.js MS
//
// Runs a short untimed warm-up, then whole iterations for MS milliseconds of the monotonic clock,
// and prints `RESULT iters=N ns=ELAPSED ns_per_iter=X` on stderr. JavaScript cannot call
// madvise, so the timed loop has no markers and the bench counts no calls per iteration.
'use strict';

function once() {
  // Many small objects (V8's heap: new space, then old space as they survive a scavenge) and
  // large ArrayBuffers (node's allocator: malloc'd above glibc's mmap threshold, each its own
  // mapping); all of it dropped at the end.
  const records = [];
  for (let i = 0; i < 20000; i++) {
    records.push({ id: i, name: String(i), tags: [i, i * 2] });
  }
  const buffers = [];
  for (let i = 0; i < 16; i++) {
    const buffer = new ArrayBuffer(256 * 1024 + 4096 * i);
    new Uint8Array(buffer)[0] = 1;
    buffers.push(buffer);
  }
  return records.length + buffers.length;
}

function main() {
  const limit = BigInt(Number(process.argv[2])) * 1000000n;
  let sink = 0;
  let start = process.hrtime.bigint();
  while (process.hrtime.bigint() - start < 50000000n) {
    sink += once();
  }
  let iters = 0;
  let elapsed = 0n;
  start = process.hrtime.bigint();
  for (;;) {
    sink += once();
    iters++;
    elapsed = process.hrtime.bigint() - start;
    if (elapsed >= limit) {
      break;
    }
  }
  const perIter = (Number(elapsed) / iters).toFixed(2);
  process.stderr.write(`RESULT iters=${iters} ns=${elapsed} ns_per_iter=${perIter} sink=${sink}\n`);
}

main();
