"""Run a worker inside the test process: ``Runner(settings).run()`` on the real Redis, without a
``resque-py work`` subprocess (issue 11). Used for everything about a job's outcome: failure
entries, stats, hooks, retries, ActiveJob, bad payloads. What needs a real process (signals,
titles seen by ``ps``, kill -9, the pool) keeps using ``start_worker`` in conftest.py.

With INTERVAL=0 ``run()`` drains the queues and returns, so a test awaits the run itself and
never sleeps. The jobs report to the test's Redis DB through ``tests.jobs.control()``.
"""
from __future__ import annotations

import importlib
import io
import logging
import os
import socket
import sys
from typing import Dict, Optional, Sequence

import gevent
from setproctitle import getproctitle, setproctitle

from resque_compat import client, db, http, log
from resque_compat.runtime.runner import Runner
from resque_compat.settings import Settings

HOST = socket.gethostname()


class InProcessRun:
    """One finished in-process run: its exit code, log text and the pid in its worker ids."""

    def __init__(self, code: int, output: str, runner: Runner) -> None:
        self.code = code
        self.output = output
        self.runner = runner
        self.pid = os.getpid()


def run_worker(redis_url: str, words: Sequence[str], env: Optional[Dict[str, str]] = None,
               jobs: Sequence[str] = ("tests.jobs",)) -> InProcessRun:
    """``resque-py work -r <jobs> WORDS...`` in this process, as the CLI builds it: settings from
    the words over ``env``, the job modules imported, the log at the settings' level."""
    environ = {"REDIS_URL": redis_url, "HUB_BLOCK_THRESHOLD": "0", **(env or {})}
    settings = Settings.load(words, environ=environ)
    # Job modules report through a control client they build from REDIS_URL on first use:
    # point them at this test's DB for the run (a subprocess gets it in its environment).
    for name in jobs:
        importlib.import_module(name)
    saved_url = os.environ.get("REDIS_URL")
    os.environ["REDIS_URL"] = redis_url
    _drop_control_clients()
    logger, buffer = log.logger, io.StringIO()
    saved = logger.handlers[:], logger.level, logger.propagate
    root = logging.getLogger()
    saved_root = root.handlers[:], root.level
    title = getproctitle()
    log.setup(settings.log_level, settings.log_format, stream=buffer)
    # A greenlet that dies prints its traceback through the hub, to stderr in a subprocess:
    # keep it in the output too, so "Traceback" checks mean what they did there.
    hub = gevent.get_hub()
    saved_stream = hub.__dict__.get("exception_stream")
    hub.exception_stream = buffer
    # A Runner sizes the process-wide HTTP and MySQL pools and sets the default client (for
    # FIBERS jobs); a subprocess threw that away on exit, so put it back as it was.
    shared = (http._settings, db._config, db._stats, client._default)
    runner = None
    try:
        runner = Runner(settings, hostname=HOST)
        code = runner.run(signals=False)
    finally:
        logger.handlers[:] = saved[0]
        logger.setLevel(saved[1])
        logger.propagate = saved[2]
        root.handlers[:], root.level = saved_root[0], saved_root[1]
        setproctitle(title)
        if saved_stream is None:
            del hub.exception_stream  # back to the class default, sys.stderr
        else:
            hub.exception_stream = saved_stream
        if runner is not None:  # each run has its own pool: do not leak its sockets
            runner.store.redis.connection_pool.disconnect()
        _drop_control_clients()
        http.configure(*shared[0])
        db.close()
        db._config, db._stats = shared[1], shared[2]
        client.set_default(shared[3])
        if saved_url is None:
            del os.environ["REDIS_URL"]
        else:
            os.environ["REDIS_URL"] = saved_url
    return InProcessRun(code, buffer.getvalue(), runner)


def _drop_control_clients() -> None:
    """Close the job modules' control clients, so the next use builds one from REDIS_URL."""
    for name, module in list(sys.modules.items()):
        client = getattr(module, "_client", None) if name.startswith("tests.") else None
        if client is not None:
            client.close()
            module._client = None
