"""``resque-py listen`` issue 18 items 1-2: a log's exact times, and dense traffic heard as a
texture, tested on the audio of the issue's 4-phase log.

The log (40 s, lines shaped like the issue's): 0-10 s 5 jobs/s, 10-20 s 200 jobs/s, 20-30 s
nothing, 30-40 s 30 jobs/s of which a tenth fail. Event times are random within each phase
(sorted, microsecond stamps), as in a real log, so steadiness is not an artefact of even spacing.
"""
from __future__ import annotations

import json
import subprocess
import sys
import wave
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from resque_compat.listen.events import FAILURE, JOB, Event, read_jsonl
from resque_compat.listen.logs import read_log
from resque_compat.listen.synth import FAILURE_HZ, Renderer, grain_kernel, queue_voice, render_events, to_pcm16
from resque_compat.listen.synth import SAMPLE_RATE as SR
from tests.conftest import REDIS_URL, ROOT

START = datetime(2027, 1, 5, 9, 0, 0, tzinfo=timezone.utc)
PHASES = ((0, 10, 5, 0.0), (10, 20, 200, 0.0), (20, 30, 0, 0.0), (30, 40, 30, 0.1))
LINE = "{stamp} INFO done: (Job{{{queue}}} | Callbacks::Deliver | [3]) processed"
FAILED = "{stamp} ERROR (Job{{{queue}}} | Callbacks::Deliver | [3]) failed: #<RuntimeError: boom>"


def four_phase_log(path, whole_seconds=False):
    """Write the issue's log; returns [(unix time, kind, queue)] of its lines, in order."""
    rng = np.random.default_rng(18)
    lines, truth = [], []
    for begin, end, rate, fail_share in PHASES:
        n = int((end - begin) * rate)
        micros = np.sort(rng.integers(begin * 1_000_000, end * 1_000_000, n))
        if begin == 0 and n:
            micros[0] = 0  # the first line is at 09:00:00.000000 exactly (the off-by-one)
        for i, us in enumerate(micros):
            when = START + timedelta(microseconds=int(us))
            failed = rng.random() < fail_share
            queue = "critical" if begin < 30 or i % 2 else "mailers"
            stamp = when.replace(microsecond=0).isoformat() if whole_seconds else \
                when.isoformat(timespec="microseconds")
            lines.append((FAILED if failed else LINE).format(stamp=stamp, queue=queue))
            truth.append((round(when.timestamp(), 6), FAILURE if failed else JOB, queue))
    path.write_text("\n".join(lines) + "\n")
    return truth


def db(x):
    return 10 * np.log10(np.maximum(x, 1e-30))


def window_power(x, seconds):
    n = int(seconds * SR)
    mono = x.mean(axis=1)
    frames = mono[: len(mono) // n * n].reshape(-1, n)
    return np.mean(np.square(frames), axis=1)


def flatness(x, seconds=0.01):
    """Spectral flatness (geometric / arithmetic mean of the power spectrum) of each window
    that is not silent (within 60 dB of the loudest): near 1 for a broadband click or noise,
    near 0 for a tone."""
    n = int(seconds * SR)
    mono = x.mean(axis=1)
    frames = mono[: len(mono) // n * n].reshape(-1, n)
    energy = np.mean(np.square(frames), axis=1)
    frames = frames[energy > 1e-6 * energy.max()] * np.hanning(n)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-30
    return np.exp(np.mean(np.log(power), axis=1)) / np.mean(power, axis=1)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The issue's command (without --pattern now): WAV + record, and the same rendering
    in-process to read the limiter's counters."""
    tmp = tmp_path_factory.mktemp("four_phase")
    log, out, rec = tmp / "app.log", tmp / "out.wav", tmp / "events.jsonl"
    truth = four_phase_log(log)
    done = subprocess.run([sys.executable, "-m", "resque_compat", "--redis", REDIS_URL, "listen",
                           "--from-log", str(log), "--out", str(out), "--seconds", "40", "--record", str(rec)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    with wave.open(str(out)) as w:
        pcm = w.readframes(w.getnframes())
    renderer = Renderer(seed=0)
    x = np.concatenate(list(render_events(read_log(str(log)), 40, renderer=renderer)))
    assert pcm == to_pcm16(x), "the CLI renders exactly what the renderer does"
    with open(rec) as fh:
        events = list(read_jsonl(fh))
    return truth, events, x, renderer


def test_log_times_are_exact_to_the_microsecond_from_the_first_line(rendered):
    truth, events, _, _ = rendered
    assert len(events) == len(truth)
    assert [(e.t, e.kind, e.queue) for e in events] == truth
    assert events[0].t == START.timestamp(), "09:00:00 is 09:00:00, not a second later"
    assert len({e.t for e in events[:5]}) == 5, "the first second's events keep their own times"
    assert all(e.job_class == "Callbacks::Deliver" for e in events)


def test_the_busy_phase_is_a_steady_texture_not_a_pulse_per_second(rendered):
    _, _, x, _ = rendered
    # the phase's first 0.25 s is the texture's attack (RATE_TAU 0.15 s); the rest must hold
    busy = x[int(10.25 * SR):20 * SR]
    power = window_power(busy, 0.05)
    spread = db(power) - db(power.mean())
    assert spread.max() < 3 and spread.min() > -3, f"50 ms RMS {spread.min():.2f}..{spread.max():.2f} dB"
    tens = window_power(busy, 0.01)
    assert db(tens).max() - db(tens.mean()) < 10, "a 10 ms window stands out: a transient"
    assert flatness(busy).max() < 0.1, "a broadband window (a click) in the busy phase"
    # the detectors see the old failure, 200 grains summed at one instant each second: its
    # broadband edge (an impulse mid-window) and its burst of energy (a grain at 0.9)
    impulses, grains = np.zeros_like(busy), np.zeros_like(busy)
    impulses[SR // 2 + 220::SR] = 0.9
    grain = 0.9 * grain_kernel(queue_voice("critical")[0]) / np.abs(grain_kernel(queue_voice("critical")[0])).max()
    for at in range(SR // 2, len(busy) - len(grain), SR):
        grains[at:at + len(grain)] += grain[:, None]
    assert flatness(busy + impulses).max() > 0.1
    loud = window_power(busy + grains, 0.01)
    assert db(loud).max() - db(loud.mean()) > 10


def test_peak_limiter_silence_and_failure_tone(rendered):
    _, _, x, renderer = rendered
    assert np.abs(x).max() <= 0.9
    assert renderer.frames_limited <= 0.01 * renderer.frames_total, (
        renderer.frames_limited, renderer.frames_total)
    silent = np.frombuffer(to_pcm16(x[21 * SR:30 * SR]), "<i2")
    assert not silent.any(), "the silent phase is silent (after the busy phase's 1 s release)"
    last = x[30 * SR:40 * SR].mean(axis=1)
    power = np.abs(np.fft.rfft(last * np.hanning(len(last)))) ** 2
    freqs = np.fft.rfftfreq(len(last), 1 / SR)
    band = (freqs > 100) & (freqs < 400)
    assert abs(freqs[band][np.argmax(power[band])] - FAILURE_HZ) < 2


def test_a_whole_second_log_is_spread_over_its_seconds(tmp_path):
    """Lines stamped to the second (200 share each stamp) are spread over their second, so the
    busy phase is as steady as with exact stamps: the issue's metronome of clicks is gone."""
    log = tmp_path / "seconds.log"
    four_phase_log(log, whole_seconds=True)
    x = np.concatenate(list(render_events(read_log(str(log)), 40)))
    busy = x[int(10.25 * SR):20 * SR]
    spread = db(window_power(busy, 0.05)) - db(window_power(busy, 0.05).mean())
    assert spread.max() < 3 and spread.min() > -3, (spread.min(), spread.max())
    assert flatness(busy).max() < 0.1 and np.abs(x).max() <= 0.9


def _steady(rate, seconds, t0, rng, queue="critical"):
    times = np.sort(t0 + rng.random(int(rate * seconds)) * seconds)
    return [Event(float(t), JOB, queue=queue) for t in times]


def test_loudness_and_brightness_rise_with_the_rate():
    rng = np.random.default_rng(5)
    rates = (5, 30, 200, 2_000, 20_000)
    levels, centroids = [], []
    note = queue_voice("critical")[0]
    for rate in rates:
        renderer = Renderer(seed=1, start=0.0)
        x = np.concatenate(list(render_events(_steady(rate, 2.5, 0.0, rng), 2.5, renderer=renderer)))
        steady = x[int(0.75 * SR):int(2.5 * SR)]
        levels.append(float(np.sqrt(np.mean(np.square(steady)))))
        mono = steady.mean(axis=1) * np.hanning(len(steady))
        power = np.abs(np.fft.rfft(mono)) ** 2
        freqs = np.fft.rfftfreq(len(mono), 1 / SR)
        centroids.append(float((freqs * power).sum() / power.sum()) / note)
        assert np.abs(x).max() <= 0.9 and renderer.frames_limited == 0, rate
    steps = np.diff(db(np.square(levels)))
    assert (steps > 1.0).all(), dict(zip(rates, levels))
    assert centroids[2] < centroids[3] < centroids[4], dict(zip(rates, centroids))


def test_events_at_one_instant_are_not_one_transient():
    """200 jobs reported at the same instant (a poll, a coarse log) are spread over their span;
    with span 0 they still enter a texture, never a 200-grain spike."""
    events = [Event(1.0 + i, JOB, queue="critical", n=200, span=1.0) for i in range(6)]
    x = np.concatenate(list(render_events(events, 6, start=0.0)))
    steady = x[int(1.25 * SR):6 * SR]
    spread = db(window_power(steady, 0.05)) - db(window_power(steady, 0.05).mean())
    assert spread.max() < 3 and spread.min() > -3, (spread.min(), spread.max())
    instant = [Event(1.0 + i, JOB, queue="critical", n=200) for i in range(6)]
    y = np.concatenate(list(render_events(instant, 6, start=0.0)))
    assert np.abs(y).max() <= 0.9
    assert flatness(y[SR:]).max() < 0.1


def test_record_keeps_the_class():
    line = Event(1.5, FAILURE, queue="a", exception="RuntimeError", job_class="Deliver").to_json()
    assert json.loads(line) == {"t": 1.5, "type": "failure", "queue": "a", "class": "Deliver", "n": 1,
                                "exception": "RuntimeError"}
    assert Event.from_json(line).job_class == "Deliver"
