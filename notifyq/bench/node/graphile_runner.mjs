// `notifyq bench peers`: graphile-worker measured as the Python peers are (see
// notifyq/bench/graphile.py, which starts this script, and notifyq/bench/peers.py).
//
//   node graphile_runner.mjs PEERS_DIR drain|latency DSN OPTIONS_JSON
//
// PEERS_DIR holds node_modules/graphile-worker (installed by `make bench-peers`); the
// scratch database DSN is empty. OPTIONS_JSON: concurrency, local_queue (size, or null for
// none), complete_batch_delay_ms (also the fail batch delay; -1: not batched),
// clock_tick_s (the kernel's /proc time unit), and for drain: tasks; for latency: count,
// spacing, warmup. One process, graphile-worker's default logger (a line per job), used as
// its documentation shows: run({ taskList, preset: { worker: {...} } }).
//
// drain: TASKS no-op jobs added in one call (graphile_worker.add_jobs), then timed from
// run() until the handler ran TASKS times and graphile_worker.jobs is empty (completed jobs
// are deleted: the batched completes committed). Prints {tasks, done, seconds, cpu_s,
// server_cpu_s}: user + system CPU of this process over the drain, and of the PostgreSQL
// server when it runs on this machine (null otherwise; the same reading as
// notifyq/bench/cpu.py).
// latency: one job at a time from WorkerUtils.addJob; commit acknowledgement -> handler
// start on one clock (performance.now()). Prints {samples_s}.
// The result is the last line of stdout, as JSON.

import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

const STALL_S = 30; // a drain that finishes nothing for this long fails
const PROBE_TIMEOUT_S = 10;

const [peersDir, mode, dsn, optionsJson] = process.argv.slice(2);
const opts = JSON.parse(optionsJson);
const require = createRequire(join(peersDir, "package.json"));
const { run, makeWorkerUtils } = require("graphile-worker");
const version = JSON.parse(
  readFileSync(join(peersDir, "node_modules", "graphile-worker", "package.json"), "utf8"),
).version;

// --- the server's CPU time, from /proc (see notifyq/bench/cpu.py) ---------------------

function stat(pid) {
  let text;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  const end = text.lastIndexOf(")");
  return { comm: text.slice(text.indexOf("(") + 1, end), f: text.slice(end + 2).split(" ") };
}

function serverOf(backendPid) {
  const backend = stat(backendPid);
  if (!backend || !backend.comm.startsWith("postgres")) return null;
  const parent = Number(backend.f[1]);
  const postmaster = stat(parent);
  return postmaster && postmaster.comm.startsWith("postgres") ? parent : null;
}

function serverCpuS(postmaster) {
  const own = stat(postmaster);
  if (!own) return 0;
  let ticks = own.f.slice(11, 15).reduce((sum, x) => sum + Number(x), 0);
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const child = stat(name);
    if (child && Number(child.f[1]) === postmaster) {
      ticks += Number(child.f[11]) + Number(child.f[12]);
    }
  }
  return ticks * opts.clock_tick_s;
}

// --- the worker -----------------------------------------------------------------------

function workerPreset() {
  const worker = {
    connectionString: dsn,
    concurrentJobs: opts.concurrency,
    // The documentation's advice: 10 or concurrentJobs + 2, whichever is larger.
    maxPoolSize: Math.max(10, opts.concurrency + 2),
    completeJobBatchDelay: opts.complete_batch_delay_ms,
    failJobBatchDelay: opts.complete_batch_delay_ms,
  };
  if (opts.local_queue) worker.localQueue = { size: opts.local_queue };
  return { worker };
}

function startWorker(taskList) {
  return run({ preset: workerPreset(), taskList, noHandleSignals: true });
}

async function waitUntil(check, what, timeoutS) {
  const deadline = performance.now() + timeoutS * 1000;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${timeoutS} s`);
    await sleep(2);
  }
}

async function drain(utils) {
  const n = opts.tasks;
  await utils.withPgClient((c) =>
    c.query(
      `SELECT count(*) FROM graphile_worker.add_jobs(ARRAY(
         SELECT ROW('noop', '{}'::json, NULL, NULL, NULL, NULL, NULL, NULL)::graphile_worker.job_spec
           FROM generate_series(1, $1::int)))`,
      [n],
    ),
  );
  const backend = await utils.withPgClient((c) => c.query("SELECT pg_backend_pid() AS pid"));
  const postmaster = serverOf(backend.rows[0].pid);
  let ran = 0;
  let lastRan = 0;
  let lastChange = performance.now();
  const server0 = postmaster === null ? null : serverCpuS(postmaster);
  const cpu0 = process.cpuUsage();
  const started = performance.now();
  const runner = await startWorker({
    noop: async () => {
      ran += 1;
    },
  });
  const left = async () =>
    (await utils.withPgClient((c) => c.query("SELECT count(*)::int AS n FROM graphile_worker.jobs")))
      .rows[0].n;
  let measured;
  try {
    // Until every handler ran (no database load meanwhile), then until the completes are in.
    while (ran < n) {
      if (ran !== lastRan) {
        lastRan = ran;
        lastChange = performance.now();
      } else if (performance.now() - lastChange > STALL_S * 1000) {
        throw new Error(`drain stalled: ${ran}/${n} handlers ran, none for ${STALL_S} s`);
      }
      await sleep(2);
    }
    await waitUntil(async () => (await left()) === 0, "completes written", STALL_S);
    const seconds = (performance.now() - started) / 1000;
    const cpu = process.cpuUsage(cpu0);
    measured = {
      seconds,
      cpu_s: (cpu.user + cpu.system) / 1e6,
      server_cpu_s: postmaster === null ? null : serverCpuS(postmaster) - server0,
    };
  } finally {
    await runner.stop();
  }
  return { tasks: n, done: n - (await left()), handler_runs: ran, ...measured };
}

async function latency(utils) {
  const starts = new Map();
  const runner = await startWorker({
    probe: async (payload) => {
      starts.set(payload.seq, performance.now());
    },
  });
  const samples = [];
  try {
    await sleep(500);
    for (let seq = 0; seq < opts.warmup + opts.count; seq++) {
      await utils.addJob("probe", { seq });
      const acked = performance.now();
      await waitUntil(async () => starts.has(seq), `probe ${seq} started`, PROBE_TIMEOUT_S);
      if (seq >= opts.warmup) samples.push((starts.get(seq) - acked) / 1000);
      starts.delete(seq);
      await sleep(opts.spacing * 1000);
    }
  } finally {
    await runner.stop();
  }
  return { samples_s: samples };
}

const utils = await makeWorkerUtils({ connectionString: dsn });
try {
  await utils.migrate();
  const result = mode === "drain" ? await drain(utils) : await latency(utils);
  process.stdout.write(`${JSON.stringify({ version, node: process.version, ...result })}\n`);
} finally {
  await utils.release();
}
