// node-resque reference worker for `make bench` (issue 17): the same job bodies as
// bench/jobs.py, run by node-resque 9 in one Node process at the same concurrency.
//
// node worker.js KIND JOBS CONCURRENCY URL
//   KIND: noop | incr | callback | callback_sleep (bench/run.py's WORKLOADS[...]["node"])
//   env: REDIS_PORT, BENCH_OUT (a path; {pid} is replaced), MYSQL_DB, DB_POOL
// Runs CONCURRENCY node-resque Workers on queue "bench" sharing one ioredis connection (as a
// MultiWorker does), exits once JOBS jobs are done, and writes the same summary as
// bench/jobs.py (jobs, pickup percentiles, window, first job done, peak RSS) to BENCH_OUT.
"use strict";

const http = require("http");
const fs = require("fs");
const { performance } = require("perf_hooks");
const IORedis = require("ioredis");
const { Worker } = require("node-resque");

const [kind, jobsText, concurrencyText, url] = process.argv.slice(2);
const expected = Number(jobsText);
const concurrency = Number(concurrencyText);
const redisPort = Number(process.env.REDIS_PORT);
const now = () => (performance.timeOrigin + performance.now()) / 1000;

const latencies = [];
const window = { first_start: 0, last_end: 0, first_end: 0 };
let done = 0;

function start(enqueuedAt) {
  const t = now();
  latencies.push(t - enqueuedAt);
  if (!window.first_start) window.first_start = t;
}

function end() {
  const t = now();
  window.last_end = t;
  if (!window.first_end) window.first_end = t;
  done += 1;
  if (done === expected) finish();
}

// The job bodies' own clients, as a node user would make them: a second ioredis connection,
// a keep-alive HTTP agent with as many sockets as workers, a 20-connection MySQL pool.
const bodyRedis = new IORedis(redisPort, "127.0.0.1");
const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
let mysqlPool = null;
if (kind === "callback_sleep") {
  mysqlPool = require("mysql2/promise").createPool({
    host: "127.0.0.1", port: 3306, user: "root", database: process.env.MYSQL_DB,
    connectionLimit: Number(process.env.DB_POOL || 20),
  });
}

function get(target) {
  return new Promise((resolve, reject) => {
    http.get(target, { agent }, (res) => {
      res.resume();
      res.on("end", () => (res.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`))));
    }).on("error", reject);
  });
}

const bodies = {
  noop: async (enqueuedAt) => { start(enqueuedAt); end(); },
  incr: async (enqueuedAt) => { start(enqueuedAt); await bodyRedis.incr("bench:counter"); end(); },
  callback: async (enqueuedAt, target) => { start(enqueuedAt); await get(target); end(); },
  callback_sleep: async (enqueuedAt, target) => {
    start(enqueuedAt);
    await mysqlPool.query("SELECT SLEEP(0.005)");
    await get(target);
    end();
  },
};
const CLASSES = { noop: "Bench::Noop", incr: "Bench::Incr", callback: "Bench::Callback",
                  callback_sleep: "Bench::CallbackSleep" };
const jobs = { [CLASSES[kind]]: { perform: bodies[kind] } };

function percentile(values, q) {
  if (!values.length) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function finish() {
  const out = process.env.BENCH_OUT;
  if (out) {
    fs.writeFileSync(out.replace("{pid}", String(process.pid)), JSON.stringify({
      jobs: latencies.length,
      pickup_p50_ms: percentile(latencies, 0.5) * 1000,
      pickup_p99_ms: percentile(latencies, 0.99) * 1000,
      window_s: Math.max(0, window.last_end - window.first_start),
      first_start: window.first_start,
      last_end: window.last_end,
      first_end: window.first_end,
      peak_rss_mb: process.resourceUsage().maxRSS / 1024,
    }));
  }
  process.exit(0);
}

async function main() {
  const shared = new IORedis(redisPort, "127.0.0.1");
  shared.setMaxListeners(0); // every Worker listens on the shared connection
  const workers = [];
  for (let i = 0; i < concurrency; i++) {
    // timeout: ms between polls of an empty queue (node-resque's default is 5000).
    const worker = new Worker({ connection: { redis: shared }, queues: ["bench"], timeout: 5,
                                name: `${require("os").hostname()}:${process.pid}+${i}` }, jobs);
    worker.on("failure", (queue, job, failure) => {
      console.error(`node-resque job failed: ${failure}`);
      process.exit(1);
    });
    worker.on("error", (error) => console.error(`node-resque worker error: ${error}`));
    workers.push(worker);
  }
  await Promise.all(workers.map((w) => w.connect()));
  if (expected === 0) finish(); // start-up and shutdown cost only (bench/run.py's idle CPU)
  await Promise.all(workers.map((w) => w.start()));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
