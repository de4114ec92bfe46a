"""The sound of a Resque: events in, 44.1 kHz stereo out. Deterministic for a given seed.

Sound design (README "Hear your queues"):

* **drone** — a low tone (E1 to E2, with its octave and a slightly detuned twin that beats
  slowly) whose pitch follows the total queue depth and whose loudness follows depth plus busy
  workers, both on a log scale and smoothed over about a second; silent when both are zero;
* **grains and texture** — each queue has a note of a C-major-pentatonic scale and a stereo
  place, both chosen by the queue's name. A job on a quiet queue is a soft 80 ms sine grain
  (3 ms raised-cosine attack, 18 ms exponential decay). Each queue's job rate is followed in
  3.3 ms frames (a one-pole estimate over :data:`RATE_TAU`); as it passes :data:`TEXTURE_KNEE`
  jobs/s the grains fade and a continuous tone on the queue's note takes over, louder (log of the
  rate) and brighter (2nd and 3rd harmonics) as the rate grows. Dense traffic is therefore a
  steady texture, never grains summed into a click (issue 18 item 2), and 5, 30, 200, 2,000 and
  20,000 jobs/s are each louder than the last;
* **failures** — a 0.9 s G3 tone (196 Hz plus a fading octave), centred, well below every
  grain note and above every drone partial, so it is recognisable in a spectrum and by ear;
* **limiter** — a gain that drops within one 3.3 ms frame when the mix passes
  :data:`LIMIT` and recovers over half a second, then a soft knee that no sample can pass:
  nothing clips and the gain never jumps.

Randomness (grain timing and loudness jitter) comes from ``numpy.random.default_rng(seed)``
drawn in event order, and audio is made in fixed blocks on a grid starting at ``start``, so the
same events and seed give the same samples however the caller asks for them.
"""
from __future__ import annotations

import math
import zlib
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from resque_compat.listen.events import BUSY, DEPTH, FAILURE, JOB, Event
from resque_compat.listen.texture import FRAMES_PER_BLOCK, TEXTURE_KNEE, Texture

SAMPLE_RATE = 44100
#: Internal render grid: 0.1 s. Output never depends on how callers slice it.
BLOCK = 4410
#: Limiter frame (1/300 s); BLOCK is a whole number of frames.
FRAME = 147

#: Grain notes: C major pentatonic, C5 to A6 (a queue keeps its note: crc32 of its name).
SCALE_HZ = (523.25, 587.33, 659.26, 783.99, 880.00, 1046.50, 1174.66, 1318.51, 1567.98, 1760.00)
GRAIN_SECONDS = 0.08
GRAIN_AMP = 0.15
#: Jobs reported at one instant with no span are spread over at least this long.
MIN_SPREAD = 0.02

FAILURE_HZ = 196.0
FAILURE_SECONDS = 0.9
FAILURE_AMP = 0.3

DRONE_LOW_HZ = 41.20     # E1 at depth 1 ...
DRONE_OCTAVES = 1.0      # ... up to E2 at DRONE_FULL_DEPTH and beyond
DRONE_FULL_DEPTH = 10_000
DRONE_MAX_AMP = 0.22
DRONE_AMP_TAU = 0.8      # seconds: loudness glides, it never steps
DRONE_PITCH_TAU = 1.5

LIMIT = 0.8              # the limiter's target peak
KNEE = 0.85              # above this the soft knee bends towards CEILING
CEILING = 0.98
RELEASE_SECONDS = 0.5


def queue_voice(queue: str) -> Tuple[float, float]:
    """(frequency in Hz, pan in -0.8..0.8) of a queue's grains: stable across runs and hosts.

    Two queues may share a note (ten notes); they then usually differ in stereo place. Jobs
    whose queue is unknown (``""``) sound centred on C5.
    """
    if not queue:
        return SCALE_HZ[0], 0.0
    h = zlib.crc32(queue.encode("utf-8"))
    return SCALE_HZ[h % len(SCALE_HZ)], ((h >> 16) % 201 - 100) / 100 * 0.8


def _raised_cosine(n: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / max(1, n))


def grain_kernel(freq: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    n = int(GRAIN_SECONDS * sr)
    t = np.arange(n) / sr
    env = np.exp(-t / 0.018)
    attack = int(0.003 * sr)
    env[:attack] *= _raised_cosine(attack)
    fade = int(0.01 * sr)
    env[-fade:] *= _raised_cosine(fade)[::-1]
    return env * np.sin(2 * np.pi * freq * t)


def failure_kernel(sr: int = SAMPLE_RATE) -> np.ndarray:
    n = int(FAILURE_SECONDS * sr)
    t = np.arange(n) / sr
    tone = np.sin(2 * np.pi * FAILURE_HZ * t) + 0.35 * np.exp(-t / 0.15) * np.sin(4 * np.pi * FAILURE_HZ * t)
    env = np.exp(-t / 0.3)
    attack = int(0.012 * sr)
    env[:attack] *= _raised_cosine(attack)
    fade = int(0.1 * sr)
    env[-fade:] *= _raised_cosine(fade)[::-1]
    return env * tone / 1.35


def _pan_gains(pan: float) -> Tuple[float, float]:
    """Equal-power panning, so a queue sounds as loud wherever it sits."""
    angle = (pan + 1) * math.pi / 4
    return math.cos(angle), math.sin(angle)


def _fft_size(n: int) -> int:
    return 1 << (n - 1).bit_length()


class _Voices:
    """Per-queue grain kernels and pans, with their FFTs cached per transform size."""

    def __init__(self, sr: int) -> None:
        self.sr = sr
        self.index: Dict[str, int] = {}
        self.kernels: List[np.ndarray] = []
        self.pans: List[Tuple[float, float]] = []
        self.freqs: List[float] = []
        self._spectra: Dict[int, np.ndarray] = {}

    def of(self, queue: str) -> int:
        i = self.index.get(queue)
        if i is None:
            freq, pan = queue_voice(queue)
            i = self.index[queue] = len(self.kernels)
            self.kernels.append(grain_kernel(freq, self.sr))
            self.pans.append(_pan_gains(pan))
            self.freqs.append(freq)
            self._spectra.clear()
        return i

    def spectra(self, nfft: int) -> np.ndarray:
        if nfft not in self._spectra:
            self._spectra[nfft] = np.fft.rfft(np.array(self.kernels), nfft, axis=1)
        return self._spectra[nfft]


class Renderer:
    """Feed events in time order with :meth:`feed`; take audio with :meth:`render`.

    ``start`` is the Unix time of sample 0 (default: the first event's start). Jobs fed after
    their time was rendered sound in the next block still to come.
    """

    def __init__(self, seed: int = 0, start: Optional[float] = None, sample_rate: int = SAMPLE_RATE) -> None:
        self.sr = sample_rate
        self.start = start
        self.rng = np.random.default_rng(seed)
        self.voices = _Voices(sample_rate)
        self._failure_spectrum: Dict[int, np.ndarray] = {}
        self._failure_kernel = failure_kernel(sample_rate)
        self._grain_len = int(GRAIN_SECONDS * sample_rate)
        self.position = 0                     # absolute index of the next block's first sample
        self._fed: List[Tuple[int, float, float, int, float]] = []   # voice, start, length, n, amp
        self._pos = np.zeros(0)
        self._voice = np.zeros(0, dtype=np.int64)
        self._amp = np.zeros(0)
        self._controls: List[Tuple[int, str, int]] = []   # sample, depth|busy, value
        self._depth = 0
        self._busy = 0
        self._carry = np.zeros((len(self._failure_kernel) - 1, 2))
        self._drone = [0.0, DRONE_LOW_HZ, 0.0, 0.0]        # amp, freq, phase, twin phase
        self._gain = 1.0
        self._fail_rate = 0.0
        self._rate_t: Optional[float] = None
        self._out = np.zeros((0, 2))
        self.texture = Texture(self.voices, sample_rate, BLOCK)
        self.frames_limited = 0               # limiter frames with gain below 1 (issue 18 item 2)
        self.frames_total = 0

    # -- input --------------------------------------------------------------------------------
    def feed(self, event: Event) -> None:
        if self.start is None:
            self.start = event.t - event.span
        sample = max(0, int(round((event.t - self.start) * self.sr)))
        if event.kind in (DEPTH, BUSY):
            self._controls.append((sample, event.kind, event.depth if event.kind == DEPTH else event.n))
            return
        if event.n <= 0 or event.kind not in (JOB, FAILURE):
            return
        decay = 1.0 if self._rate_t is None else math.exp(-max(0.0, event.t - self._rate_t) / 0.5)
        self._rate_t = event.t
        self._fail_rate *= decay
        span = max(event.span, MIN_SPREAD if event.n > 1 else 0.0) * self.sr
        if event.kind == JOB:
            amp = GRAIN_AMP  # the per-queue rate in _block decides how much of it is a grain
            voice = self.voices.of(event.queue)
        else:
            self._fail_rate += event.n / 0.5
            amp = FAILURE_AMP * (1 + self._fail_rate / 4) ** -0.5
            voice = -1
        self._fed.append((voice, sample - span, span, event.n, amp))

    def _flush_fed(self) -> None:
        """Draw every fed event's random placement, in feed order (so block sizes do not
        change which random number goes with which job)."""
        if not self._fed:
            return
        voice, begin, length, n, amp = (np.array(col) for col in zip(*self._fed))
        self._fed = []
        draws = self.rng.random((int(n.sum()), 2))
        pos = np.repeat(begin, n) + draws[:, 0] * np.repeat(length, n)
        self._pos = np.concatenate([self._pos, pos])
        self._voice = np.concatenate([self._voice, np.repeat(voice, n)])
        self._amp = np.concatenate([self._amp, np.repeat(amp, n) * (0.7 + 0.3 * draws[:, 1])])

    # -- output -------------------------------------------------------------------------------
    def render(self, n: int) -> np.ndarray:
        """The next ``n`` stereo samples, floats in (-1, 1), shape (n, 2)."""
        while len(self._out) < n:
            self._out = np.concatenate([self._out, self._block()])
        out, self._out = self._out[:n], self._out[n:]
        return out

    def render_pcm16(self, n: int) -> bytes:
        """The next ``n`` samples as interleaved little-endian 16-bit PCM (WAV data)."""
        return to_pcm16(self.render(n))

    def _block(self) -> np.ndarray:
        self._flush_fed()
        b0 = self.position
        buf = np.zeros((BLOCK + len(self._carry), 2))
        buf[: len(self._carry)] += self._carry
        now = self._pos < b0 + BLOCK
        # grains fed too late (a slow poll) are folded into this block, spread as they were,
        # rather than piled onto its first sample
        offsets = np.floor(self._pos[now] - b0).astype(np.int64) % BLOCK
        voices, amps = self._voice[now], self._amp[now]
        self._pos, self._voice, self._amp = self._pos[~now], self._voice[~now], self._amp[~now]
        grains = voices >= 0
        frames = offsets[grains] * FRAMES_PER_BLOCK // BLOCK
        count = len(self.voices.kernels)
        counts = np.bincount(voices[grains] * FRAMES_PER_BLOCK + frames,
                             minlength=count * FRAMES_PER_BLOCK).reshape(count, FRAMES_PER_BLOCK)
        rates = self.texture.follow(counts)  # every block, so the rates also decay in silence
        if grains.any():
            weights = 1.0 / (1.0 + np.square(rates[voices[grains], frames] / TEXTURE_KNEE))
            self._add_grains(buf, voices[grains], offsets[grains], amps[grains] * weights)
        if not grains.all():
            self._add_failures(buf, offsets[~grains], amps[~grains])
        self.texture.add(buf, b0)
        self._add_drone(buf, b0)
        self._carry = buf[BLOCK:].copy()
        self.position += BLOCK
        return self._limit(buf[:BLOCK])

    def _add_grains(self, buf: np.ndarray, voices: np.ndarray, offsets: np.ndarray, amps: np.ndarray) -> None:
        count = len(self.voices.kernels)
        impulses = np.bincount(voices * BLOCK + offsets, weights=amps, minlength=count * BLOCK)
        nfft = _fft_size(BLOCK + self._grain_len - 1)
        spectra = np.fft.rfft(impulses.reshape(count, BLOCK), nfft, axis=1) * self.voices.spectra(nfft)
        mono = np.fft.irfft(spectra, nfft, axis=1)[:, : BLOCK + self._grain_len - 1]
        buf[: mono.shape[1]] += mono.T @ np.array(self.voices.pans)

    def _add_failures(self, buf: np.ndarray, offsets: np.ndarray, amps: np.ndarray) -> None:
        size = BLOCK + len(self._failure_kernel) - 1
        nfft = _fft_size(size)
        if nfft not in self._failure_spectrum:
            self._failure_spectrum[nfft] = np.fft.rfft(self._failure_kernel, nfft)
        impulses = np.bincount(offsets, weights=amps, minlength=BLOCK)
        mono = np.fft.irfft(np.fft.rfft(impulses, nfft) * self._failure_spectrum[nfft], nfft)[:size]
        buf[:size] += mono[:, None] * math.sqrt(0.5)

    def _add_drone(self, buf: np.ndarray, b0: int) -> None:
        """Drone targets change only at depth/busy events, so each stretch between two changes
        has a closed-form one-pole glide towards its target: no per-sample Python loop."""
        changes = sorted(c for c in self._controls if c[0] < b0 + BLOCK)
        self._controls = [c for c in self._controls if c[0] >= b0 + BLOCK]
        amp, freq, phase, twin = self._drone
        edges = [0]
        targets = [(self._depth, self._busy)]
        for sample, kind, value in changes:
            if kind == DEPTH:
                self._depth = value
            else:
                self._busy = value
            edge = max(0, sample - b0)
            if edge == edges[-1]:
                targets[-1] = (self._depth, self._busy)
            else:
                edges.append(edge)
                targets.append((self._depth, self._busy))
        edges.append(BLOCK)
        if amp == 0.0 and not any(d + b for d, b in targets):
            return
        amps, freqs = [], []
        ra, rf = math.exp(-1 / (DRONE_AMP_TAU * self.sr)), math.exp(-1 / (DRONE_PITCH_TAU * self.sr))
        for (depth, busy), a, b in zip(targets, edges, edges[1:]):
            target_amp, target_freq = drone_targets(depth, busy)
            k = np.arange(1, b - a + 1)
            amps.append(target_amp + (amp - target_amp) * ra ** k)
            freqs.append(target_freq + (freq - target_freq) * rf ** k)
            amp, freq = float(amps[-1][-1]), float(freqs[-1][-1])
        amp_curve, freq_curve = np.concatenate(amps), np.concatenate(freqs)
        step = 2 * np.pi * freq_curve / self.sr
        phases = phase + np.cumsum(step)
        twins = twin + np.cumsum(step * 1.003)
        main = np.sin(phases) + 0.5 * np.sin(2 * phases)
        other = np.sin(twins) + 0.5 * np.sin(2 * twins)
        buf[:BLOCK, 0] += amp_curve * (0.8 * main + 0.45 * other) / 1.5
        buf[:BLOCK, 1] += amp_curve * (0.45 * main + 0.8 * other) / 1.5
        if self._depth + self._busy == 0 and amp < 1e-5:
            amp = 0.0  # a 1e-5 step is inaudible; exact zero lets idle blocks skip the drone
        self._drone = [amp, freq, float(phases[-1] % (2 * np.pi)), float(twins[-1] % (2 * np.pi))]

    def _limit(self, block: np.ndarray) -> np.ndarray:
        peaks = np.abs(block).max(axis=1).reshape(-1, FRAME).max(axis=1)
        wanted = np.minimum(1.0, LIMIT / np.maximum(peaks, 1e-12))
        release = FRAME / (RELEASE_SECONDS * self.sr)
        ends = np.empty(len(wanted))
        gain = self._gain
        for i, w in enumerate(wanted):  # 30 frames per block: cheap, and needs the recursion
            gain = min(w, gain + release)
            ends[i] = gain
        starts = np.concatenate([[self._gain], ends[:-1]])
        self._gain = gain
        self.frames_limited += int(np.count_nonzero(ends < 1.0 - 1e-9))
        self.frames_total += len(ends)
        ramp = np.arange(1, FRAME + 1) / FRAME
        gains = (starts[:, None] + (ends - starts)[:, None] * ramp[None, :]).reshape(-1)
        return soft_knee(block * gains[:, None])


def drone_targets(depth: int, busy: int) -> Tuple[float, float]:
    """(amplitude, Hz) the drone glides to: log scales, so 10 and 10,000 waiting both tell."""
    load = max(0, depth) + max(0, busy)
    amp = 0.0 if load == 0 else DRONE_MAX_AMP * (0.25 + 0.75 * min(1.0, math.log10(1 + load) / 4))
    octave = min(1.0, math.log10(1 + max(0, depth)) / math.log10(1 + DRONE_FULL_DEPTH))
    return amp, DRONE_LOW_HZ * 2 ** (DRONE_OCTAVES * octave)


def soft_knee(x: np.ndarray) -> np.ndarray:
    """Identity below KNEE, then a tanh bend with slope 1 at KNEE that never reaches CEILING."""
    mag = np.abs(x)
    over = mag > KNEE
    if not over.any():
        return x
    out = x.copy()
    room = CEILING - KNEE
    out[over] = np.sign(x[over]) * (KNEE + room * np.tanh((mag[over] - KNEE) / room))
    return out


def to_pcm16(samples: np.ndarray) -> bytes:
    return np.round(samples * 32767).astype("<i2").tobytes()


def render_events(events: Iterable[Event], seconds: Optional[float] = None, seed: int = 0,
                  start: Optional[float] = None, tail: float = 2.0,
                  renderer: Optional[Renderer] = None) -> Iterator[np.ndarray]:
    """Offline rendering, block by block: ``seconds`` of audio from ``start`` (default: the
    first event), or until ``tail`` seconds after the last event when ``seconds`` is None.
    Pass ``renderer`` to read its counters (``frames_limited``) afterwards."""
    renderer = renderer if renderer is not None else Renderer(seed=seed, start=start)
    total = None if seconds is None else int(round(seconds * SAMPLE_RATE))
    done = 0
    last_t = None
    for event in events:
        if renderer.start is None:
            renderer.start = event.t - event.span
        earliest = int((event.t - event.span - renderer.start) * SAMPLE_RATE)
        while renderer.position + BLOCK <= earliest and (total is None or done < total):
            block = renderer.render(BLOCK if total is None else min(BLOCK, total - done))
            done += len(block)
            yield block
        if total is not None and done >= total:
            return
        renderer.feed(event)
        last_t = event.t
    if total is None:
        end = 0.0 if last_t is None else last_t - (renderer.start or 0.0) + tail
        total = int(round(end * SAMPLE_RATE))
    while done < total:
        block = renderer.render(min(BLOCK, total - done))
        done += len(block)
        yield block
