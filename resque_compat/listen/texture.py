"""Dense traffic as a texture (issue 18 item 2): each queue's job rate, followed in short
frames, fades its single grains out and a continuous tone on the queue's note in.

Why: grains at random times sum to a level that jumps with every cluster, and jobs that share
a timestamp sum into one broadband transient. A tone whose level follows the rate, estimated
over :data:`RATE_TAU`, is as steady as the traffic is, and its loudness (log of the rate) and
brightness (2nd and 3rd harmonics) say how busy the queue is.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

#: Control frames per render block, for the per-queue rate and texture level.
FRAMES_PER_BLOCK = 30
#: Seconds over which a queue's job rate is estimated: long enough that 200 jobs/s at random
#: times gives a level steady to a fraction of a dB, short enough to follow a burst's start.
RATE_TAU = 0.15
#: Seconds over which the texture's level glides (no zipper noise from frame steps).
LEVEL_TAU = 0.03
#: Jobs/s at which grains and texture weigh the same (grains x 1/(1+(r/knee)^2)).
TEXTURE_KNEE = 25.0
#: The texture's peak amplitude at TEXTURE_FULL jobs/s (it grows on a log scale up to there).
TEXTURE_AMP = 0.3
TEXTURE_FULL = 20_000.0


def _one_pole(start: np.ndarray, inputs: np.ndarray, keep: float) -> np.ndarray:
    """``y[i] = keep * y[i-1] + (1 - keep) * inputs[i]`` along axis 1 from ``y[-1] = start``,
    in closed form (no per-frame Python loop)."""
    powers = keep ** np.arange(1, inputs.shape[1] + 1)
    return powers * (start[:, None] + np.cumsum((1 - keep) * inputs / powers, axis=1))


def texture_level(rate: np.ndarray) -> np.ndarray:
    """Peak amplitude of a queue's texture at ``rate`` jobs/s: nothing while grains are heard
    one by one, then growing with the log of the rate (issue 18: 20,000 > 2,000 > 200 > 30)."""
    rate = np.maximum(rate, 0.0)
    takeover = np.square(rate) / (np.square(rate) + TEXTURE_KNEE ** 2)
    loud = np.log10(1 + rate / TEXTURE_KNEE) / math.log10(1 + TEXTURE_FULL / TEXTURE_KNEE)
    return TEXTURE_AMP * takeover * np.minimum(loud, 1.25) ** 0.8


def texture_brightness(rate: np.ndarray) -> np.ndarray:
    """0 (a pure tone on the queue's note) at TEXTURE_KNEE jobs/s up to 1 at TEXTURE_FULL."""
    ratio = np.maximum(rate, TEXTURE_KNEE) / TEXTURE_KNEE
    return np.clip(np.log10(ratio) / math.log10(TEXTURE_FULL / TEXTURE_KNEE), 0.0, 1.0)


class Texture:
    """Each queue's job-rate follower and the continuous tone it drives (module docstring)."""

    #: A slow, shallow vibrato keeps a sustained tone alive without changing its level.
    VIBRATO_HZ = 4.5
    VIBRATO_DEPTH = 0.003

    def __init__(self, voices: Any, sr: int, block: int) -> None:
        self.voices = voices  # synth._Voices: freqs and pans by voice index
        self.block = block
        self.sr = sr
        frame_seconds = self.block / FRAMES_PER_BLOCK / sr
        self._frame_seconds = frame_seconds
        self._keep_rate = math.exp(-frame_seconds / RATE_TAU)
        self._keep_level = math.exp(-frame_seconds / LEVEL_TAU)
        self.rate = np.zeros(0)
        self.level = np.zeros(0)
        self.phase = np.zeros(0)
        self._levels = np.zeros((0, FRAMES_PER_BLOCK + 1))
        self._rates = np.zeros((0, FRAMES_PER_BLOCK + 1))

    def follow(self, counts: np.ndarray) -> np.ndarray:
        """Per-queue rate (jobs/s) at each frame of the next block, given its job counts."""
        grow = counts.shape[0] - len(self.rate)
        if grow > 0:
            self.rate, self.level, self.phase = (np.concatenate([a, np.zeros(grow)])
                                                 for a in (self.rate, self.level, self.phase))
        rates = _one_pole(self.rate, counts / self._frame_seconds, self._keep_rate)
        levels = _one_pole(self.level, texture_level(rates), self._keep_level)
        silent = (rates[:, -1] < 1e-3) & (levels[:, -1] < 1e-5)
        rates[silent, -1] = 0.0
        levels[silent, -1] = 0.0  # inaudible step; exact zero lets idle blocks skip the tone
        self._rates = np.concatenate([self.rate[:, None], rates], axis=1)
        self._levels = np.concatenate([self.level[:, None], levels], axis=1)
        self.rate, self.level = rates[:, -1].copy(), levels[:, -1].copy()
        return rates

    def add(self, buf: np.ndarray, b0: int) -> None:
        """Add this block's tones (levels interpolated per sample, so no step is heard)."""
        active = np.nonzero(self._levels.max(axis=1) > 0)[0]
        if not len(active):
            return
        index = np.arange(self.block)
        edges = np.arange(FRAMES_PER_BLOCK + 1) * (self.block // FRAMES_PER_BLOCK)
        brightness = texture_brightness(self._rates[active][:, [0, -1]])
        ramp = index / self.block
        for row, v in enumerate(active):
            level = np.interp(index + 1, edges, self._levels[v])
            vibrato = 1 + self.VIBRATO_DEPTH * np.sin(2 * np.pi * self.VIBRATO_HZ * (b0 + index) / self.sr + v)
            phase = self.phase[v] + np.cumsum(2 * np.pi * self.voices.freqs[v] / self.sr * vibrato)
            bright = brightness[row, 0] + (brightness[row, 1] - brightness[row, 0]) * ramp
            second, third = 0.5 * bright, 0.3 * bright * bright
            tone = (np.sin(phase) + second * np.sin(2 * phase) + third * np.sin(3 * phase))
            mono = level * tone / np.sqrt(1 + second * second + third * third)
            buf[:self.block] += mono[:, None] * np.array(self.voices.pans[v])[None, :]
            self.phase[v] = phase[-1] % (2 * np.pi)
