"""``resque-py listen`` (issue 8): the audio itself, the live poller against real Redis (and
Ruby's own keyspaces), recording/replay, plain logs, the WAV output and the HTTP stream.

Audio assertions measure what a listener hears: RMS per window, spectrum peaks, peak level,
and a click detector (second difference and energy above 8 kHz) whose sensitivity is checked
on a deliberately damaged copy.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import wave
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import redis

from bench.run import free_port
from resque_compat.listen.events import (
    BUSY,
    DEPTH,
    FAILURE,
    JOB,
    Event,
    TimeMap,
    read_jsonl,
    write_jsonl,
)
from resque_compat.listen.logs import read_log
from resque_compat.listen.poller import Poller, apportion
from resque_compat.listen.synth import (
    BLOCK,
    FAILURE_HZ,
    SCALE_HZ,
    Renderer,
    queue_voice,
    render_events,
    to_pcm16,
)
from resque_compat.listen.synth import (
    SAMPLE_RATE as SR,
)
from resque_compat.listen.wav import streaming_header
from resque_compat.wire.keys import Keys
from tests.conftest import REDIS_DB, REDIS_HOST, REDIS_PORT, REDIS_URL, ROOT
from tests.keyspace import load_fixture, load_keys

# -- helpers -----------------------------------------------------------------------------------

def render(events, seconds, seed=0):
    return np.concatenate(list(render_events(sorted(events, key=lambda e: e.t), seconds, seed=seed)))


def rms(x):
    return float(np.sqrt(np.mean(np.square(x)))) if len(x) else 0.0


def window_rms(x, seconds=0.5):
    n = int(seconds * SR)
    return [rms(x[i:i + n]) for i in range(0, len(x) - n + 1, n)]


def spectrum_peak(x, low, high):
    """Frequency (Hz) of the strongest bin between low and high, of the mono mix."""
    mono = x.mean(axis=1) * np.hanning(len(x))
    power = np.abs(np.fft.rfft(mono)) ** 2
    freqs = np.fft.rfftfreq(len(mono), 1 / SR)
    band = (freqs >= low) & (freqs <= high)
    return float(freqs[band][np.argmax(power[band])]), power, freqs


def clicks(x):
    """(largest second difference, share of energy above 8 kHz): both tiny for smooth audio."""
    mono = x.mean(axis=1)
    power = np.abs(np.fft.rfft(mono)) ** 2
    freqs = np.fft.rfftfreq(len(mono), 1 / SR)
    return float(np.abs(np.diff(x, n=2, axis=0)).max()), float(power[freqs > 8000].sum() / power.sum())


def jobs(t0, seconds, per_second, queue="critical"):
    """What the poller reports for steady traffic: one job event per poll interval (0.1 s, or
    longer for slow traffic so every event has at least one job)."""
    step = max(0.1, 1.0 / per_second)
    n = int(round(per_second * step))
    return [Event(t0 + step * (i + 1), JOB, queue=queue, n=n, span=step)
            for i in range(int(round(seconds / step)))]


def burst_events(t0=1_000.0):
    """A 3 s burst of 400 jobs/s on two queues while 2,000 jobs wait, then nothing."""
    events = [Event(t0, DEPTH, queues={"critical": 2000, "mailers": 0}), Event(t0, BUSY, n=20)]
    events += jobs(t0 + 1, 3, 300) + jobs(t0 + 1, 3, 100, queue="mailers")
    events += [Event(t0 + 4, DEPTH, queues={"critical": 0, "mailers": 0}), Event(t0 + 4, BUSY, n=0)]
    return events


# -- the sound ---------------------------------------------------------------------------------

def test_a_burst_is_loud_and_its_end_is_quiet():
    x = render(burst_events(), 10)
    levels = window_rms(x)  # 0.5 s windows; the burst is t = 1..4 s, the queue empties at 4 s
    during = levels[2:8]
    after = levels[-4:]  # 8..10 s, four seconds after the end
    assert min(during) > 0.05, levels
    assert max(after) < min(during) / 20, levels
    assert levels[9] < levels[7] / 2, "the end of the burst must be audible within a second"


def test_energy_follows_the_job_rate_and_idle_is_silent():
    rates = [0, 5, 50, 500, 5000]
    events = []
    for i, rate in enumerate(rates):
        if rate:
            events += jobs(100.0 + 3 * i, 2, rate)
    x = render([Event(100.0, DEPTH, queues={})] + events, 3 * len(rates))
    # the last 1.5 s of each 3 s stretch: the job rate has been steady for a while
    levels = [rms(x[int((3 * i + 0.5) * SR):int((3 * i + 2) * SR)]) for i in range(len(rates))]
    assert levels[0] == 0.0, "no jobs, no queue: exact silence"
    assert all(a < b for a, b in zip(levels, levels[1:])), dict(zip(rates, levels))
    assert levels[-1] < 8 * levels[2], "dense traffic must not drown everything else"
    # a texture, not noise: at 5,000 jobs/s the sound still sits on the queue's note (and the
    # harmonics that make it brighter than at 500 jobs/s)
    dense = x[int(12.5 * SR):int(14 * SR)]
    _, power, freqs = spectrum_peak(dense, 0, SR / 2)
    note = queue_voice("critical")[0]
    harmonics = sum(power[abs(freqs - k * note) < 100].sum() for k in (1, 2, 3))
    assert harmonics > 0.9 * power.sum()
    assert power[abs(freqs - note) < 100].sum() > 0.5 * power.sum()


def test_a_failure_sounds_its_low_tone_over_the_traffic():
    base = [Event(10.0, DEPTH, queues={"critical": 300})] + jobs(10.0, 4, 200)
    with_failures = base + [Event(11.0, FAILURE, queue="critical", exception="RuntimeError")]
    window = slice(int(1.0 * SR), int(1.8 * SR))
    clean = render(base, 4)[window]
    failed = render(with_failures, 4)[window]
    peak, power, freqs = spectrum_peak(failed, 100, 400)
    assert abs(peak - FAILURE_HZ) < 3, peak
    near = (freqs > FAILURE_HZ - 3) & (freqs < FAILURE_HZ + 3)
    _, clean_power, _ = spectrum_peak(clean, 100, 400)
    assert power[near].sum() > 100 * clean_power[near].sum()
    assert rms(failed) > rms(clean)


def test_each_queue_has_its_own_pitch_and_place():
    names = ["critical", "mailers", "low", "reports", "default"]
    distinct = {}
    for name in names:
        distinct.setdefault(queue_voice(name)[0], name)
    assert len(distinct) >= 3, "the test needs queues on different notes"
    for freq, name in list(distinct.items())[:3]:
        x = render(jobs(0.0, 2, 50, queue=name), 2)
        peak, _, _ = spectrum_peak(x, 300, 4000)
        # an 80 ms grain is ~20 Hz wide; neighbouring notes are 60 Hz or more apart
        assert min(SCALE_HZ, key=lambda f: abs(f - peak)) == freq, (name, peak, freq)
        pan = queue_voice(name)[1]
        left, right = rms(x[:, 0]), rms(x[:, 1])
        if abs(pan) > 0.1:
            assert (left > right) == (pan < 0), (name, pan, left, right)


def test_nothing_clips_under_overload():
    events = [Event(0.0, DEPTH, queues={"critical": 5_000_000}), Event(0.0, BUSY, n=500)]
    for q in ("critical", "mailers", "low", "reports"):
        events += jobs(0.0, 3, 20_000, queue=q)
    events += [Event(0.5 + i * 0.01, FAILURE, queue="critical", n=5) for i in range(200)]
    x = render(events, 4)
    pcm = np.frombuffer(to_pcm16(x), "<i2")
    assert rms(x) > 0.2, "the overload must actually be loud for this test to mean anything"
    assert np.abs(x).max() < 1.0
    assert np.abs(pcm.astype(np.int32)).max() < 32767


def test_no_clicks_when_sounds_start_and_stop():
    events = burst_events() + [Event(1_002.0, FAILURE, queue="critical")]
    x = render(events, 8)
    step, high = clicks(x)
    assert step < 0.015 and high < 5e-10, (step, high)
    # the detector's sensitivity: a dropped block, and a 10 % level step, are both caught
    dropped = x.copy()
    dropped[3 * SR: 3 * SR + BLOCK] = 0
    stepped = x.copy()
    stepped[int(3.3 * SR):] *= 0.9
    for damaged in (dropped, stepped):
        d_step, d_high = clicks(damaged)
        assert d_step > 0.015 or d_high > 5e-10, (d_step, d_high)


def test_same_events_and_seed_give_the_same_samples_however_they_are_taken():
    events = sorted(burst_events(), key=lambda e: e.t)
    whole = render(events, 6, seed=7)
    renderer = Renderer(seed=7)
    for event in events:
        renderer.feed(event)
    pieces, taken, sizes = [], 0, [1, 999, 4410, 7, 30000, 12345]
    while taken < len(whole):
        n = min(sizes[len(pieces) % len(sizes)], len(whole) - taken)
        pieces.append(renderer.render(n))
        taken += n
    assert np.array_equal(np.concatenate(pieces), whole)
    other_seed = render(events, 6, seed=8)
    assert not np.array_equal(other_seed, whole)
    assert abs(rms(other_seed) - rms(whole)) < 0.1 * rms(whole), "the seed varies detail, not level"


# -- events: JSONL, speed, plain logs -------------------------------------------------------------

def test_jsonl_round_trip_and_errors(tmp_path):
    events = [Event(1.5, DEPTH, queues={"a": 3}), Event(1.5, BUSY, n=2),
              Event(1.6, JOB, queue="a", n=4, span=0.1),
              Event(1.7, FAILURE, queue="a", exception="RuntimeError")]
    path = tmp_path / "events.jsonl"
    with open(path, "w") as fh:
        assert write_jsonl(events, fh) == 4
    assert path.read_text().splitlines()[2] == '{"t":1.6,"type":"job","queue":"a","n":4,"span":0.1}'
    with open(path) as fh:
        assert list(read_jsonl(fh)) == events
    path.write_text('{"t":1,"type":"job"}\n\n{"t":2,"type":"sneeze"}\n')
    with open(path) as fh, pytest.raises(ValueError, match=r"x.jsonl:3: 'type' must be one of"):
        list(read_jsonl(fh, "x.jsonl"))


def test_speed_compresses_time_and_spans():
    mapped = list(TimeMap(10, origin=500.0).map_all(
        [Event(1000.0, JOB, span=1.0), Event(1100.0, JOB, span=1.0)]))
    assert [(e.t, e.span) for e in mapped] == [(500.0, 0.1), (510.0, 0.1)]


def _utc(*parts, micro=0):
    return datetime(*parts, microsecond=micro, tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize("line, start, resolution", [
    ("I, [2026-11-27T11:55:41.250000 #42]  INFO -- : Processed Archive", _utc(2026, 11, 27, 11, 55, 41, micro=250000), 1e-6),
    ("2026-11-27 11:55:41,123 INFO Processed", _utc(2026, 11, 27, 11, 55, 41, micro=123000), 1e-3),
    ("2026-11-27T12:55:41+01:00 Processed", _utc(2026, 11, 27, 11, 55, 41), 1.0),
    ("started 2026-11-27 11:55:41 +0000 Processed", _utc(2026, 11, 27, 11, 55, 41), 1.0),
    ('{"failed_at":"2026/11/27 12:01:34 UTC"} Processed', _utc(2026, 11, 27, 12, 1, 34), 1.0),
    ('127.0.0.1 - - [27/Nov/2026:06:55:41 -0500] "POST /Processed" 200', _utc(2026, 11, 27, 11, 55, 41), 1.0),
    ("Nov 27 11:55:41 vm app[1]: Processed", _utc(2026, 11, 27, 11, 55, 41), 1.0),
    ("1795780680.5 Processed", 1795780680.5, 0.1),
    ("1795780680500 Processed", 1795780680.5, 0.001),
    ("1795780680.000123 Processed", 1795780680.000123, 1e-6),
    ("at 2026-11-27 12:55:41.123456789 +0100 Processed", _utc(2026, 11, 27, 11, 55, 41, micro=123457), 1e-9),
    ("2026-11-27T06:55:41.000007-05:00 Processed", _utc(2026, 11, 27, 11, 55, 41, micro=7), 1e-6),
    ("** [11:55:41 2026-11-27] 4242: Processed", _utc(2026, 11, 27, 11, 55, 41), 1.0),
])
def test_log_timestamps(tmp_path, line, start, resolution):
    path = tmp_path / "app.log"
    path.write_text(line + "\n")
    os.utime(path, (_utc(2026, 6, 1, 0, 0, 0), _utc(2026, 6, 1, 0, 0, 0)))  # the syslog year
    [event] = list(read_log(str(path), "Processed"))
    assert event.span == pytest.approx(resolution)
    assert event.t == pytest.approx(start, abs=5e-7), "the time as written, fraction and zone kept"


def test_log_lines_become_jobs_and_failures_by_pattern(tmp_path):
    path = tmp_path / "worker.log"
    path.write_text(
        "2026-11-27T11:00:00Z boot\n"
        "2026-11-27T11:00:01Z done (critical) Archive\n"
        "  continuation line: done (critical) again\n"
        "2026-11-27T11:00:03Z FAILED (mailers) Welcome\n"
        "2026-11-27T11:00:02Z done (low) late line from another process\n"
    )
    events = list(read_log(str(path), r"(?:done|(?P<failed>FAILED)) \((?P<queue>\w+)\)"))
    assert [(e.kind, e.queue) for e in events] == [
        (JOB, "critical"), (JOB, "critical"), (FAILURE, "mailers"), (JOB, "low")]
    t1 = _utc(2026, 11, 27, 11, 0, 1)
    assert [e.t - t1 for e in events] == [0, 0, 2, 2], "continuations and late lines keep order"
    with pytest.raises(ValueError, match="not a valid regular expression"):
        read_log(str(path), "(")


# -- the live poller ---------------------------------------------------------------------------------

class CountingConnection(redis.Connection):
    """Counts writes to the socket: one per command, or one per whole pipeline."""

    sends = 0

    def send_packed_command(self, command, check_health=True):
        CountingConnection.sends += 1
        return super().send_packed_command(command, check_health)


def counting_client():
    pool = redis.ConnectionPool(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB,
                                connection_class=CountingConnection)
    return redis.Redis(connection_pool=pool)


def test_each_poll_is_one_round_trip_however_many_queues_and_workers(r):
    keys = Keys()
    for i in range(6):
        r.sadd(keys.queues, f"q{i}")
        r.rpush(keys.queue(f"q{i}"), "{}")
    for i in range(12):
        wid = f"vm:{100 + i}:q{i % 6}"
        r.sadd(keys.workers, wid)
        r.set(keys.worker_processed(wid), i)
    r.rpush(keys.failed, json.dumps({"queue": "q1", "exception": "RuntimeError"}))
    client = counting_client()
    client.ping()  # the connection handshake is not a poll
    poller = Poller(client, keys)
    CountingConnection.sends = 0
    for i in range(5):
        poller.poll(100.0 + i)
        r.incr(keys.processed)
        r.rpush(keys.failed, json.dumps({"queue": "q2", "exception": "KeyError"}))
        r.incr(keys.failed_count)
    assert CountingConnection.sends == 5
    assert len(poller.queues) == 6 and len(poller.workers) == 12, "the reads covered them all"


def test_poller_reports_real_worker_traffic(r, start_worker):
    keys = Keys()
    alpha = start_worker("QUEUE=alpha", "FIBERS=3")
    beta = start_worker("QUEUE=beta", "FIBERS=2")
    alpha.wait_registered(r, 3)
    beta.wait_registered(r, 2)
    poller = Poller(redis.Redis.from_url(REDIS_URL), keys)
    events = poller.poll(time.time()) + poller.poll(time.time())
    assert len(poller.workers) == 5 and events == []
    r.set(keys.pause_all_workers, "true")  # so the listener sees the jobs wait before they run
    client_push = r.pipeline()
    for i in range(40):
        client_push.rpush(keys.queue("alpha"), json.dumps({"class": "OkJob", "args": [i]}))
    for i in range(4):
        client_push.rpush(keys.queue("alpha"), json.dumps({"class": "FailJob", "args": [i]}))
    for i in range(25):
        client_push.rpush(keys.queue("beta"), json.dumps({"class": "OkJob", "args": [i]}))
    client_push.rpush(keys.queue("beta"), json.dumps({"class": "WaitJob", "args": ["held"]}))
    client_push.sadd(keys.queues, "alpha", "beta")
    client_push.execute()
    seen = poller.poll(time.time()) + poller.poll(time.time())
    assert [e.queues for e in seen if e.kind == DEPTH] == [{"alpha": 44, "beta": 26}]
    r.delete(keys.pause_all_workers)
    deadline = time.time() + 20
    busy_seen = False
    while time.time() < deadline:
        seen += poller.poll(time.time())
        if r.llen("test:started") and not busy_seen:
            seen += poller.poll(time.time())
            busy_seen = any(e.kind == BUSY and e.n >= 1 for e in seen)
            r.rpush("test:release:held", "go")
        if int(r.get(keys.processed) or 0) == 70:
            break
        time.sleep(0.05)
    seen += poller.poll(time.time())
    done = {}
    for e in seen:
        if e.kind == JOB:
            done[e.queue] = done.get(e.queue, 0) + e.n
    assert done == {"alpha": 44, "beta": 26}
    failures = [e for e in seen if e.kind == FAILURE]
    assert sum(e.n for e in failures) == 4
    assert {(e.queue, e.exception) for e in failures} == {("alpha", "RuntimeError")}
    assert busy_seen, "the held WaitJob must show as a busy worker"
    assert [e.queues for e in seen if e.kind == DEPTH][-1] == {"alpha": 0, "beta": 0}
    assert [e for e in seen if e.kind == BUSY][-1].n == 0


def test_poller_reads_what_ruby_resque_writes(r):
    """Ruby's own keyspaces: a registered worker (04 without its results), then 04's results
    (stat keys and the failure entry, verbatim), then a busy worker (03)."""
    fx = load_fixture("04_processed.json")
    results = {k: v for k, v in fx["keys"].items() if ":stat:" in k or k.endswith(":failed")}
    load_keys(r, {k: v for k, v in fx["keys"].items() if k not in results})
    poller = Poller(redis.Redis.from_url(REDIS_URL), Keys(fx["namespace"]))
    primed = poller.poll(1.0) + poller.poll(2.0)
    assert [(e.kind, e.queues) for e in primed] == [(DEPTH, {"critical": 0})]
    load_keys(r, results)
    events = poller.poll(3.0)
    assert [(e.kind, e.queue, e.n, e.exception) for e in events if e.kind in (JOB, FAILURE)] == [
        (JOB, "critical", 4, ""), (FAILURE, "critical", 1, "RuntimeError")]

    r.flushdb()
    busy = load_fixture("03_worker_busy.json")
    poller = Poller(redis.Redis.from_url(REDIS_URL), Keys(busy["namespace"]))
    load_keys(r, busy["keys"])
    events = poller.poll(1.0) + poller.poll(2.0)
    assert [(e.kind, e.n) for e in events if e.kind == BUSY] == [(BUSY, 1)]


def test_poller_counts_failures_without_entries_and_survives_resets(r):
    """Fixture 10 (redis_multi_queue): failures live in <queue>_failed lists, not `failed`, so
    only stat:failed tells; a FLUSHDB between polls must not produce negative or bogus events."""
    poller = Poller(redis.Redis.from_url(REDIS_URL), Keys())
    poller.poll(1.0)
    load_keys(r, load_fixture("10_failed_multi_queue.json")["keys"])
    events = poller.poll(2.0)
    assert sum(e.n for e in events if e.kind == FAILURE) == 2
    assert sum(e.n for e in events if e.kind == JOB) == 2
    r.flushdb()
    assert [e for e in poller.poll(3.0) if e.kind in (JOB, FAILURE)] == []


def test_apportion_keeps_the_global_total():
    assert apportion({"a": 30, "b": 10}, 20) == {"a": 15, "b": 5}
    assert sum(apportion({"a": 1, "b": 1, "c": 1}, 2).values()) == 2
    assert apportion({"a": 3}, 10) == {"a": 3}


# -- the command ---------------------------------------------------------------------------------

def listen_cmd(*args):
    return [sys.executable, "-m", "resque_compat", "--redis", REDIS_URL, "listen", *args]


def run_listen(*args, timeout=60):
    return subprocess.run(listen_cmd(*args), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_replay_to_wav_is_the_deterministic_rendering(tmp_path):
    events = sorted(burst_events(), key=lambda e: e.t)
    jsonl = tmp_path / "burst.jsonl"
    with open(jsonl, "w") as fh:
        write_jsonl(events, fh)
    out = tmp_path / "burst.wav"
    done = run_listen("--replay", str(jsonl), "--speed", "2", "--seed", "3", "--out", str(out))
    assert done.returncode == 0, done.stderr
    with wave.open(str(out)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 44100)
        pcm = w.readframes(w.getnframes())
    expected = render(TimeMap(2).map_all(events), None, seed=3)
    assert len(pcm) == len(expected) * 4 == int(round((4 / 2 + 2.0) * SR)) * 4  # to the end + 2 s
    assert pcm == to_pcm16(expected)


def test_log_to_wav_and_record(tmp_path):
    log = tmp_path / "app.log"
    start = datetime(2026, 11, 27, 11, 0, 0, tzinfo=timezone.utc)
    lines = [f"{(start + timedelta(milliseconds=5 * i)).isoformat(timespec='milliseconds')} done"
             for i in range(400)]  # 200 lines a second for two seconds
    log.write_text("\n".join(lines) + "\n")
    out, rec = tmp_path / "log.wav", tmp_path / "log.jsonl"
    done = run_listen("--from-log", str(log), "--pattern", "done", "--seconds", "4",
                      "--out", str(out), "--record", str(rec))
    assert done.returncode == 0, done.stderr
    with open(rec) as fh:
        assert sum(e.n for e in read_jsonl(fh)) == 400
    with wave.open(str(out)) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2) / 32768
    assert len(x) == 4 * SR
    assert rms(x[: 2 * SR]) > 0.03 and rms(x[3 * SR:]) < rms(x[: 2 * SR]) / 50


def test_usage_errors_and_missing_numpy(tmp_path):
    nothing = run_listen("--seconds", "1")
    assert nothing.returncode == 2 and "nothing to do" in nothing.stderr
    stray = run_listen("--pattern", "x", "--record", str(tmp_path / "e.jsonl"))
    assert stray.returncode == 2 and "--pattern only applies to --from-log" in stray.stderr
    jsonl = tmp_path / "e.jsonl"
    jsonl.write_text('{"t":1,"type":"job"}\n{"t":2,"type":"sneeze"}\n')
    bad_line = run_listen("--replay", str(jsonl), "--out", str(tmp_path / "bad.wav"))
    assert bad_line.returncode == 1 and "e.jsonl:2: 'type' must be one of" in bad_line.stderr
    jsonl.write_text('{"t":1,"type":"job"}\n')
    code = ("import sys; sys.modules['numpy'] = None\n"
            "from resque_compat.cli.main import main\n"
            f"sys.exit(main(['listen', '--replay', {str(jsonl)!r}, '--out', 'x.wav']))\n")
    no_numpy = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), capture_output=True, text=True)
    assert no_numpy.returncode == 2
    assert "pip install 'resque_compat[listen]'" in no_numpy.stderr
    assert not (tmp_path / "x.wav").exists()


def test_live_listen_during_a_burst_makes_a_wav_where_the_burst_and_its_end_are_heard(r, start_worker, tmp_path):
    """The issue's "done when": `resque-py listen --seconds N --out demo.wav` while a real worker
    drains a burst; the file is loud during the burst and quiet once it is over."""
    keys = Keys()
    worker = start_worker("QUEUE=burst", "FIBERS=10")
    worker.wait_registered(r, 10)
    out, rec = tmp_path / "demo.wav", tmp_path / "demo.jsonl"
    listen = subprocess.Popen(listen_cmd("--seconds", "7", "--out", str(out), "--record", str(rec)),
                              cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        assert "polling" in listen.stderr.readline()
        pipe = r.pipeline()
        for i in range(3000):
            pipe.rpush(keys.queue("burst"), json.dumps({"class": "OkJob", "args": [i]}))
        pipe.sadd(keys.queues, "burst")
        pipe.execute()
        assert listen.wait(30) == 0, listen.stderr.read()
    finally:
        listen.kill()
        listen.wait()
    assert int(r.get(keys.processed)) == 3000, "the burst must be over within the recording"
    with open(rec) as fh:
        events = list(read_jsonl(fh))
    assert sum(e.n for e in events if e.kind == JOB) == 3000
    with wave.open(str(out)) as w:
        assert w.getnframes() == 7 * SR
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2) / 32768
    levels = window_rms(x)
    loudest = max(levels)
    assert loudest > 0.05, levels
    assert max(levels[-2:]) < loudest / 10, levels  # the last second: the burst is over


def test_serve_streams_wav_to_several_listeners_and_counts_them(tmp_path):
    events = sorted(burst_events(time.time()), key=lambda e: e.t)
    jsonl = tmp_path / "burst.jsonl"
    with open(jsonl, "w") as fh:
        write_jsonl(events, fh)
    port = free_port()
    server = subprocess.Popen(listen_cmd("--replay", str(jsonl), "--speed", "4", "--serve",
                                         f"127.0.0.1:{port}", "--seconds", "20"),
                              cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        assert "open http://127.0.0.1" in server.stderr.readline()
        base = f"http://127.0.0.1:{port}"
        page = urllib.request.urlopen(base + "/", timeout=5).read().decode()
        assert '<audio id="audio" src="/stream.wav"' in page
        streams = [urllib.request.urlopen(base + "/stream.wav", timeout=5) for _ in range(2)]
        heads = [s.read(44) for s in streams]
        assert heads == [streaming_header()] * 2
        assert streams[0].headers["Content-Type"] == "audio/wav"
        got = [len(s.read(SR * 4)) for s in streams]  # one second each
        assert got == [SR * 4] * 2
        stats = json.loads(urllib.request.urlopen(base + "/stats", timeout=5).read())
        assert stats["listeners"] == 2 and stats["events"] == len(events)
        assert stats["jobs"] == sum(e.n for e in events if e.kind == JOB)
        assert all(s["bytes"] >= 44 + SR * 4 for s in stats["streams"])
        for s in streams:
            s.close()
    finally:
        server.terminate()
        assert server.wait(10) == 0



def test_rendering_10000_events_a_second_costs_under_the_budget():
    """The issue's CPU budget, measured as bench/listen_render.py does (best of three)."""
    from bench.listen_render import BUDGET, cpu_for_one_second, log_events

    assert cpu_for_one_second(log_events, repeat=3) < BUDGET
