"""One ``resque-py listen`` run: a source of events wired to the outputs the user chose.

Two ways to run:

* **offline** — a file source (``--replay`` / ``--from-log``) without ``--serve``: events are
  rendered as fast as the CPU allows (``--out``) and/or copied (``--record``);
* **clocked** — live Redis traffic, or anything with ``--serve``: the source runs in a greenlet
  (polling, or replaying at ``--speed`` against the wall clock) and the main greenlet renders
  one 0.1 s block at a time, :data:`LATENCY` behind the clock so every poll that covers a block
  has arrived before it is rendered.
"""
from __future__ import annotations

import logging
import math
import signal
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import IO, Any, Callable, Iterator, List, Optional, Tuple

import gevent
from gevent.event import Event as Flag

from resque_compat.listen.events import Event, TimeMap, read_jsonl, write_jsonl

logger = logging.getLogger("resque_compat.listen")

#: How far rendering trails the wall clock: more than one poll at the default 10 Hz.
LATENCY = 0.25


@dataclass(frozen=True)
class ListenOptions:
    rate: float = 10.0
    record: Optional[str] = None
    replay: Optional[str] = None
    from_log: Optional[str] = None
    pattern: Optional[str] = None
    speed: float = 1.0
    out: Optional[str] = None
    seconds: Optional[float] = None
    serve: Optional[str] = None
    seed: int = 0
    from_prometheus: Optional[str] = None
    query: Tuple[str, ...] = ()
    from_graphite: Optional[str] = None
    target: Tuple[str, ...] = ()
    since: str = "1h"
    step: Optional[float] = None
    follow: bool = False

    @property
    def renders(self) -> bool:
        return bool(self.out or self.serve)

    @property
    def monitoring(self) -> bool:
        return bool(self.from_prometheus or self.from_graphite)

    @property
    def live(self) -> bool:
        """Live Redis traffic (no other source given)."""
        return not (self.replay or self.from_log or self.monitoring)

    @property
    def followed(self) -> bool:
        """Events arrive as they happen (Redis, or --follow): played against the clock."""
        return self.live or self.follow

    def step_seconds(self) -> float:
        """--step, else enough points to cover --since in MAX_POINTS (at least 1 s)."""
        from resque_compat.listen.monitoring import MAX_POINTS, parse_duration

        return self.step or max(1.0, math.ceil(parse_duration(self.since) / MAX_POINTS))

    def validate(self) -> "ListenOptions":
        """Raise ValueError, naming the option and a working example, for a bad combination."""
        sources = [name for name, given in (("--replay", self.replay), ("--from-log", self.from_log),
                                            ("--from-prometheus", self.from_prometheus),
                                            ("--from-graphite", self.from_graphite)) if given]
        if len(sources) > 1:
            raise ValueError(f"give one source, not {' and '.join(sources)}")
        if self.from_prometheus and not self.query:
            raise ValueError("--from-prometheus needs --query PROMQL, e.g. "
                             "--query 'rate(resque_jobs_processed_total[1m])'")
        if self.query and not self.from_prometheus:
            raise ValueError("--query only applies to --from-prometheus URL")
        if self.from_graphite and not self.target:
            raise ValueError("--from-graphite needs --target PATH, e.g. --target 'stats.resque.*.processed'")
        if self.target and not self.from_graphite:
            raise ValueError("--target only applies to --from-graphite URL")
        if (self.follow or self.step) and not self.monitoring:
            raise ValueError("--follow and --step apply to --from-prometheus / --from-graphite")
        if self.monitoring:
            from resque_compat.listen.monitoring import parse_duration

            parse_duration(self.since)
            if self.step is not None and not self.step > 0:
                raise ValueError(f"--step is seconds between points, e.g. --step 15 (got {self.step})")
        if self.followed and self.speed != 1.0:
            raise ValueError("--speed only applies to --replay, --from-log and monitoring replays; "
                             "live traffic plays as it happens")
        if self.pattern and not self.from_log:
            raise ValueError("--pattern only applies to --from-log FILE")
        if not (self.out or self.serve or self.record):
            raise ValueError("nothing to do: give --out FILE.wav --seconds N, --serve HOST:PORT "
                             "or --record FILE.jsonl")
        if not self.rate > 0 or self.rate > 100:
            raise ValueError(f"--rate is polls per second, between 0 and 100, e.g. --rate 10 (got {self.rate})")
        if not self.speed > 0:
            raise ValueError(f"--speed must be more than 0, e.g. --speed 10 (got {self.speed})")
        if self.seconds is not None and not self.seconds > 0:
            raise ValueError(f"--seconds must be more than 0 (got {self.seconds})")
        if self.serve:
            from resque_compat.listen.server import parse_address

            parse_address(self.serve)
        return self


def monitoring_source(options: ListenOptions) -> Any:
    """The :class:`~.monitoring.MetricsSource` of --from-prometheus / --from-graphite."""
    from resque_compat.listen.monitoring import MetricsSource

    if options.from_prometheus:
        return MetricsSource("prometheus", options.from_prometheus, options.query, options.step_seconds())
    return MetricsSource("graphite", options.from_graphite or "", options.target, options.step_seconds())


def file_events(options: ListenOptions) -> Iterator[Event]:
    """The raw events of ``--replay``, ``--from-log`` or a monitoring replay (not yet
    time-mapped). A log or replay window without events is refused here, before any output
    is opened."""
    if options.from_log:
        from resque_compat.listen.logs import read_log

        return read_log(options.from_log, options.pattern)
    if options.monitoring:
        from resque_compat.listen.monitoring import parse_duration

        return monitoring_source(options).replay(parse_duration(options.since))
    assert options.replay is not None  # the only source left: the options check demands one
    fh = open(options.replay, encoding="utf-8")  # closed when the generator is
    return _closing(read_jsonl(fh, options.replay or "events"), fh)


def _closing(events: Iterator[Event], fh: IO[str]) -> Iterator[Event]:
    with fh:
        yield from events


def run(options: ListenOptions, connect: Optional[Callable[[], Any]] = None) -> int:
    """Run until done (``--seconds``, end of file offline) or SIGINT/SIGTERM; returns 0.

    ``connect`` returns a :class:`~.poller.Poller` for live traffic; it is only called then.
    """
    events = None if options.followed else file_events(options)  # refuses an empty source first
    with ExitStack() as stack:
        recorder = stack.enter_context(open(options.record, "w", encoding="utf-8")) if options.record else None
        if events is not None and not options.serve:
            return _offline(options, events, recorder, stack)
        return _clocked(options, events, recorder, stack, connect)


def _offline(options: ListenOptions, raw: Iterator[Event], recorder: Optional[IO[str]], stack: ExitStack) -> int:
    events: Iterator[Event] = TimeMap(options.speed).map_all(raw)
    if recorder is not None:
        events = _tee(events, recorder)
    if not options.out:
        count = sum(1 for _ in events)
        logger.info("listen: wrote %d events to %s", count, options.record)
        return 0
    from resque_compat.listen.synth import SAMPLE_RATE, render_events, to_pcm16
    from resque_compat.listen.wav import WavWriter

    writer = stack.enter_context(WavWriter(options.out))
    for block in render_events(events, options.seconds, seed=options.seed):
        writer.write(to_pcm16(block))
    logger.info("listen: wrote %.1f s to %s", writer.frames / SAMPLE_RATE, options.out)
    return 0


def _tee(events: Iterator[Event], fh: IO[str]) -> Iterator[Event]:
    for event in events:
        write_jsonl((event,), fh)
        yield event


def _clocked(options: ListenOptions, raw: Optional[Iterator[Event]], recorder: Optional[IO[str]],
             stack: ExitStack, connect: Optional[Callable[[], Any]]) -> int:
    stop = Flag()
    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = gevent.signal_handler(signum, stop.set)
        stack.callback(handler.cancel)
    start = time.time()
    renderer = None
    if options.renders:
        from resque_compat.listen.synth import Renderer

        renderer = Renderer(seed=options.seed, start=start)
    broadcast = None
    if options.serve:
        from resque_compat.listen.server import Broadcast, serve

        broadcast = Broadcast()
        stack.callback(serve(options.serve, broadcast).stop)

    def sink(event: Event) -> None:
        if broadcast is not None:
            broadcast.count(event)
        if renderer is not None:
            renderer.feed(event)
        if recorder is not None:
            write_jsonl((event,), recorder)

    failures: List[BaseException] = []
    if options.live:
        assert connect is not None  # run() is given one whenever options.live is set
        source = gevent.spawn(_guard, failures, stop, _poll_loop, connect(), options.rate, sink, stop)
    elif options.follow:
        poller = monitoring_source(options)
        source = gevent.spawn(_guard, failures, stop, _poll_loop, poller, 1.0 / poller.step, sink, stop)
    else:
        events = TimeMap(options.speed, origin=start).map_all(raw or iter(()))
        source = gevent.spawn(_guard, failures, stop, _paced, events, sink, stop)
    stack.callback(source.kill)
    if renderer is None:
        stop.wait(options.seconds)
    else:
        _render_loop(options, renderer, broadcast, stack, stop)
    if failures:
        raise failures[0]
    return 0


def _guard(failures: List[BaseException], stop: Flag, target: Callable[..., None], *args: Any) -> None:
    """Run a source; if it fails (a bad replay line, a broken log) stop the whole run and let
    the CLI report the error, instead of serving silence after a traceback."""
    try:
        target(*args)
    except Exception as exc:
        failures.append(exc)
        stop.set()


def _render_loop(options: ListenOptions, renderer: Any, broadcast: Any, stack: ExitStack, stop: Flag) -> None:
    from resque_compat.listen.synth import BLOCK, SAMPLE_RATE
    from resque_compat.listen.wav import WavWriter

    writer = stack.enter_context(WavWriter(options.out)) if options.out else None
    total = None if options.seconds is None else int(round(options.seconds * SAMPLE_RATE))
    done = 0
    while total is None or done < total:
        due = renderer.start + (done + BLOCK) / SAMPLE_RATE + LATENCY
        if stop.wait(max(0.0, due - time.time())):
            break
        pcm = renderer.render_pcm16(BLOCK if total is None else min(BLOCK, total - done))
        done += len(pcm) // 4
        if writer is not None:
            writer.write(pcm)
        if broadcast is not None:
            broadcast.publish(pcm)


def _poll_loop(poller: Any, rate: float, sink: Callable[[Event], None], stop: Flag) -> None:
    import redis

    errors = getattr(poller, "errors", (redis.RedisError,))
    source = getattr(poller, "kind", "Redis")
    interval = 1.0 / rate
    next_poll = time.time()
    failing = False
    primed = False
    while not stop.is_set():
        try:
            events = poller.poll(time.time())
            if not primed:
                logger.info("listen: polling %s %g times a second; Ctrl-C to stop", source, rate)
                primed = True
        except errors as exc:
            if not failing:
                logger.warning("listen: cannot read %s (%s); retrying every %.2f s", source, exc, interval)
            failing, events = True, []
        else:
            if failing:
                logger.info("listen: %s answers again", source)
            failing = False
        for event in events:
            sink(event)
        next_poll = max(next_poll + interval, time.time())  # skip polls we are late for
        stop.wait(max(0.0, next_poll - time.time()))


def _paced(events: Iterator[Event], sink: Callable[[Event], None], stop: Flag) -> None:
    """Hand each (time-mapped) event over when the clock reaches its first moment."""
    for event in events:
        if stop.wait(max(0.0, event.t - event.span - time.time())):
            return
        sink(event)
    logger.info("listen: replay finished; still serving until stopped")
