"""The page ``--serve`` shows at ``/`` (issue 18 item 4): the player, and what you hear drawn live.

* a scrolling spectrogram of the stream itself: a Web Audio ``AnalyserNode`` on the page's
  ``<audio>`` element, one column per 40 ms (low notes at the bottom, log frequency up to
  8 kHz). A column is drawn only when the analyser hears something, so the picture stands
  still while the system is idle (and a test can tell);
* a per-queue activity strip from ``/stats``: each queue in its own colour (its note sets the
  hue), a bar for its job rate over the last seconds (log scale), its totals;
* the last failures, newest first: time, queue, job class and exception.

Browsers start Web Audio only after a gesture: the Play button resumes it. ``window.listen``
holds counters (columns drawn, analyser state) for tests and curious users.
"""
from __future__ import annotations

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>resque-py listen</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:1.5em;max-width:52em;background:#fafafa;color:#222}
#counts span{font-variant-numeric:tabular-nums;font-weight:bold}
canvas{display:block;background:#000;width:100%;border-radius:4px}
#queues{margin:.6em 0}
.queue{display:grid;grid-template-columns:9em 1fr 11em;gap:.6em;align-items:center;margin:.15em 0}
.bar{height:.8em;border-radius:3px;min-width:1px;transition:width .4s}
.nums{font-variant-numeric:tabular-nums;font-size:90%;color:#555}
#failures{font-size:90%;margin:0;padding-left:1.2em}
#failures li{font-variant-numeric:tabular-nums}
.class{font-weight:bold}.exc{color:#a11}
</style></head>
<body><h1>Hear your queues</h1>
<p><audio id="audio" src="/stream.wav" controls autoplay preload="auto"></audio>
<button id="play" type="button">Play</button></p>
<canvas id="spectrogram" width="800" height="200" aria-label="spectrogram of the stream"></canvas>
<p id="counts">events <span id="events">0</span> &middot; jobs <span id="jobs">0</span>
&middot; failures <span id="failures-count">0</span> &middot; waiting <span id="depth">0</span>
&middot; busy <span id="busy">0</span> &middot; listeners <span id="listeners">0</span>
&middot; played <span id="played">0</span> s</p>
<h2>Queues</h2><div id="queues"></div>
<h2>Last failures</h2><ol id="failures"></ol>
<script>
const audio = document.getElementById("audio");
const canvas = document.getElementById("spectrogram");
const g = canvas.getContext("2d");
const state = window.listen = {columns: 0, analyser: "none", lastFailure: null};
let analyser = null, bins = null, context = null;

function connect() {
  if (analyser) return;
  try {
    context = new (window.AudioContext || window.webkitAudioContext)();
    const source = context.createMediaElementSource(audio);
    analyser = context.createAnalyser();
    analyser.fftSize = 4096;
    analyser.smoothingTimeConstant = 0.3;
    analyser.minDecibels = -100;
    analyser.maxDecibels = -20;
    source.connect(analyser);
    analyser.connect(context.destination);
    bins = new Uint8Array(analyser.frequencyBinCount);
    state.analyser = context.state;
  } catch (e) { state.analyser = "error: " + e; }
}
document.getElementById("play").onclick = () => { connect(); if (context) context.resume(); audio.play(); };
audio.addEventListener("play", () => { connect(); if (context) context.resume(); });

// row y (0 = top) -> analyser bin, log frequency from 40 Hz to 8 kHz
function binOf(y) {
  const f = 40 * Math.pow(8000 / 40, 1 - y / (canvas.height - 1));
  return Math.min(bins.length - 1, Math.round(f / (context.sampleRate / 2) * bins.length));
}
function colour(v) {  // 0..255 -> black, blue, orange, white
  const t = v / 255;
  return `rgb(${Math.round(255 * Math.min(1, t * 1.6))},${Math.round(255 * Math.max(0, t * 1.4 - 0.4))},` +
         `${Math.round(255 * (t < 0.5 ? t * 1.6 : 1.6 - t * 1.4))})`;
}
function draw() {
  if (!analyser) return;
  state.analyser = context.state;
  analyser.getByteFrequencyData(bins);
  let heard = false;
  for (let i = 0; i < bins.length; i++) if (bins[i] > 0) { heard = true; break; }
  if (!heard) return;  // idle: the picture stands still
  const step = 2;
  g.drawImage(canvas, -step, 0);
  for (let y = 0; y < canvas.height; y++) {
    g.fillStyle = colour(bins[binOf(y)]);
    g.fillRect(canvas.width - step, y, step, 1);
  }
  state.columns++;
}
setInterval(draw, 40);

// a queue's colour follows its note (C5 red ... A6 violet), as its sound does
function hue(hz) { return Math.round((Math.log2(hz / 523.25) * 150) % 360); }
function showQueues(queues) {
  const box = document.getElementById("queues");
  const names = Object.keys(queues).sort();
  box.replaceChildren(...names.map(name => {
    const q = queues[name];
    const row = document.createElement("div");
    row.className = "queue";
    const width = q.rate > 0 ? Math.min(100, 20 * Math.log10(1 + q.rate) + 2) : 0;
    row.innerHTML = `<span></span><div class="bar" ` +
      `style="width:${width}%;background:hsl(${hue(q.hz)},70%,45%)"></div>` +
      `<span class="nums">${q.rate.toFixed(1)}/s &middot; ${q.jobs} jobs &middot; ${q.failures} failed</span>`;
    row.firstChild.textContent = name || "(unknown queue)";
    return row;
  }));
}
function showFailures(failures) {
  const list = document.getElementById("failures");
  list.replaceChildren(...failures.slice().reverse().map(f => {
    const item = document.createElement("li");
    const when = new Date(f.t * 1000).toLocaleTimeString();
    item.innerHTML = `<span></span> <span class="q"></span> <span class="class"></span> <span class="exc"></span>`;
    item.children[0].textContent = when + (f.n > 1 ? ` (${f.n}x)` : "");
    item.children[1].textContent = f.queue || "(unknown queue)";
    item.children[2].textContent = f.class || "(class unknown)";
    item.children[3].textContent = f.exception;
    return item;
  }));
  state.lastFailure = failures.length ? failures[failures.length - 1] : null;
}
function show(stats) {
  for (const name of ["events", "jobs", "depth", "busy", "listeners"]) {
    document.getElementById(name).textContent = stats[name];
  }
  document.getElementById("failures-count").textContent = stats.failures;
  document.getElementById("played").textContent = audio.currentTime.toFixed(1);
  showQueues(stats.queues || {});
  showFailures(stats.last_failures || []);
}
async function poll() {
  try { show(await (await fetch("/stats", {cache: "no-store"})).json()); } catch (e) {}
  setTimeout(poll, 500);
}
poll();
</script></body></html>
"""
