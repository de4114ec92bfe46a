"""16-bit PCM, 44.1 kHz, stereo WAV: files via the stdlib ``wave`` module, and the header of an
endless stream for ``--serve`` (no numpy needed here)."""
from __future__ import annotations

import struct
import wave
from typing import Optional

SAMPLE_RATE = 44100
CHANNELS = 2
SAMPLE_WIDTH = 2  # bytes: 16-bit PCM
FRAME_BYTES = CHANNELS * SAMPLE_WIDTH

#: The RIFF and data sizes of a stream whose length is unknown. Browsers and ffmpeg play such a
#: file until the connection ends; 0xFFFFFFFF is what most streaming WAV servers send.
UNKNOWN_SIZE = 0xFFFFFFFF


class WavWriter:
    """Append PCM blocks to a WAV file; the header's sizes are fixed on :meth:`close`, so stop
    with ``close()`` (or a ``with`` block) even after Ctrl-C, or players see an empty file."""

    def __init__(self, path: str, sample_rate: int = SAMPLE_RATE) -> None:
        self.path = path
        self._wav: Optional[wave.Wave_write] = wave.open(path, "wb")
        self._wav.setnchannels(CHANNELS)
        self._wav.setsampwidth(SAMPLE_WIDTH)
        self._wav.setframerate(sample_rate)
        self.frames = 0

    def write(self, pcm: bytes) -> None:
        """Interleaved little-endian 16-bit samples, a whole number of stereo frames."""
        if self._wav is None:
            raise ValueError(f"{self.path} is already closed")
        self._wav.writeframesraw(pcm)
        self.frames += len(pcm) // FRAME_BYTES

    def close(self) -> None:
        if self._wav is not None:
            self._wav.close()
            self._wav = None

    def __enter__(self) -> "WavWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def streaming_header(sample_rate: int = SAMPLE_RATE) -> bytes:
    """The 44-byte canonical WAV header with unknown (maximal) sizes, for a live stream."""
    byte_rate = sample_rate * FRAME_BYTES
    return (b"RIFF" + struct.pack("<I", UNKNOWN_SIZE) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, CHANNELS, sample_rate, byte_rate,
                                    FRAME_BYTES, SAMPLE_WIDTH * 8)
            + b"data" + struct.pack("<I", UNKNOWN_SIZE))
