"""``resque-py listen``: Resque traffic (live, recorded or from a plain log) as ambient sound.

Modules, in the order an event travels (issue 8):

* :mod:`.events` — the :class:`~.events.Event` record and its JSONL form (``--record`` /
  ``--replay``), and the ``--speed`` time mapping;
* :mod:`.poller` — the live source: one pipelined Redis read per poll, turned into events;
* :mod:`.logs` — the ``--from-log FILE --pattern REGEX`` source;
* :mod:`.synth` — the deterministic, seeded renderer (numpy), events in, stereo samples out;
* :mod:`.wav` — 16-bit PCM WAV files and the streaming WAV header;
* :mod:`.server` — ``--serve``: the page, the live WAV stream and ``/stats`` (gevent pywsgi);
* :mod:`.session` — wires one source to the chosen outputs for the CLI.

Only :mod:`.synth` (and what imports it) needs numpy, the optional ``listen`` extra.
"""
from __future__ import annotations
