"""``resque-py listen``: hear your queues (issue 8). Parses options and calls
:func:`resque_compat.listen.session.run`; the sound itself is described in README.rst."""
from __future__ import annotations

from typing import Any, Optional

import click

from resque_compat.cli.common import Context, connected_client, fail

LISTEN_EPILOG = """\b
Examples:
  resque-py listen --seconds 10 --out demo.wav        # 10 s of live traffic to a file
  resque-py listen --serve 127.0.0.1:8765             # open it in a browser
  resque-py listen --record events.jsonl              # keep the events for later
  resque-py listen --replay events.jsonl --speed 10 --out replay.wav
  resque-py listen --from-log worker.log --speed 60 --out day.wav     # Resque's VVERBOSE log
  resque-py listen --from-log production.log --pattern 'Completed|(?P<failed>Error)' \\
      --speed 60 --out day.wav
  resque-py listen --from-prometheus http://127.0.0.1:9090 --since 1h --speed 60 --out hour.wav \\
      --query 'rate(resque_jobs_processed_total[1m])' --query 'rate(resque_jobs_failed_total[1m])'
  resque-py listen --from-graphite http://graphite --target 'stats.resque.*.processed' \\
      --follow --serve 127.0.0.1:8765
\b
--from-log without --pattern reads the job lines of Ruby Resque's and resque-py's logs
(VVERBOSE=1, or resque-py's LOG_FORMAT=json): queue, class and failures included. With
--pattern, named groups (?P<queue>...), (?P<class>...) and (?P<failed>...) set the queue and
class and mark failures. Timestamps: 2026-11-27T11:55:41.123456Z, 2026-11-27 11:55:41.123 +0000,
[11:55:41 2026-11-27], 2026/11/27 12:01:34 UTC, [27/Nov/2026:11:55:41 +0000], Nov 27 11:55:41 or
a leading Unix epoch; fractions and offsets are kept. A log without events is an error (exit 1).
\b
--from-prometheus / --from-graphite: each series is a voice (its queue label or the varying part
of its path); its per-second value is the job rate, and a series whose query or name contains
"fail" plays the failure tone.
\b
Exit codes: 0 ok, 1 runtime error (e.g. Redis or the monitoring server unreachable, a source
without events), 2 usage error or numpy missing.
"""


def _check_usage(pattern: Optional[str], out: Optional[str]) -> None:
    """Usage errors found before any work, each one line with exit code 2 (issue 15)."""
    import os
    import re

    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            fail(f"--pattern {pattern!r} is not a valid regular expression: {exc}")
    if out:
        folder = os.path.dirname(os.path.abspath(out))
        if not os.path.isdir(folder):
            fail(f"--out {out!r}: directory {folder} does not exist; create it or choose another path")
        if not os.access(folder, os.W_OK):
            fail(f"--out {out!r}: directory {folder} is not writable; choose another path")


@click.command(epilog=LISTEN_EPILOG)
@click.option("--rate", type=click.FloatRange(min=0, min_open=True, max=100), default=10.0,
              show_default=True, help="Polls of Redis per second (one pipelined read each).")
@click.option("--record", metavar="FILE.jsonl", help="Write every event, one JSON object a line.")
@click.option("--replay", metavar="FILE.jsonl", type=click.Path(exists=True, dir_okay=False),
              help="Play events from a --record file instead of live traffic.")
@click.option("--from-log", "from_log", metavar="FILE", type=click.Path(exists=True, dir_okay=False),
              help="Play a plain log: one event per line matching --pattern, timed by the line.")
@click.option("--pattern", metavar="REGEX",
              help="Lines of --from-log that are events (default: Resque's and resque-py's job lines).")
@click.option("--from-prometheus", "from_prometheus", metavar="URL",
              help="Play Prometheus range queries (--query), e.g. http://127.0.0.1:9090.")
@click.option("--query", metavar="PROMQL", multiple=True,
              help="A --from-prometheus query giving per-second rates; repeat for more voices.")
@click.option("--from-graphite", "from_graphite", metavar="URL",
              help="Play Graphite render API targets (--target), e.g. http://graphite.")
@click.option("--target", metavar="PATH", multiple=True,
              help="A --from-graphite target giving per-second rates; repeat for more voices.")
@click.option("--since", metavar="DURATION", default="1h", show_default=True,
              help="How far back a monitoring replay starts: 90, 15m, 1h, 2d.")
@click.option("--step", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Seconds between monitoring points (default: --since / 2000, at least 1).")
@click.option("--follow", is_flag=True,
              help="Follow the monitoring source live (a query every --step) instead of replaying.")
@click.option("--speed", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Replay this many times faster than recorded (--replay, --from-log, monitoring replays).")
@click.option("--out", metavar="FILE.wav", help="Write 16-bit 44.1 kHz stereo WAV here.")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True),
              help="Length of the audio (default: live until Ctrl-C; files: to the last event + 2 s).")
@click.option("--serve", metavar="HOST:PORT", help="Stream live audio over HTTP, e.g. 127.0.0.1:8765.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the random grain timing: same events + seed = same samples.")
@click.pass_obj
def listen(obj: Context, **values: Any) -> None:
    """Turn job traffic into ambient sound: a drone for waiting jobs, a soft grain per job
    (pitch and stereo place by queue), a low tone per failure, silence when idle."""
    from resque_compat.listen.session import ListenOptions, run

    try:
        options = ListenOptions(**values).validate()
    except ValueError as exc:
        fail(str(exc))
    _check_usage(values.get("pattern"), values.get("out"))
    if options.renders:
        try:
            import numpy  # noqa: F401
        except ImportError:
            fail("rendering sound needs numpy, which is not installed: "
                 "pip install 'resque_compat[listen]' (or drop --out/--serve to only --record)")
    connect = None
    if options.live:
        resque = connected_client(obj)  # fails with exit code 1 if Redis does not answer

        def connect() -> Any:
            from resque_compat.listen.poller import Poller

            return Poller(resque.redis, resque.keys)
    import sys

    from resque_compat import log

    log.setup("quiet", stream=sys.stderr)  # status lines for the person listening, not a job log
    try:
        code: Optional[int] = run(options, connect)
    except (OSError, ValueError) as exc:
        fail(str(exc), 1)
    raise SystemExit(code)
