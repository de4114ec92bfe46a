"""Every setting, read once into one frozen :class:`Settings`. The only reader of ``os.environ``.

Sources, highest first (Ruby's names, WIRE §6.2, plus our own where Ruby has none):

1. command-line options (``--fibers 100``);
2. ``KEY=VALUE`` words after the command (``resque-py work QUEUE=critical FIBERS=100``), the
   way ``rake resque:work`` is usually started;
3. environment variables of the same names;
4. defaults from :data:`SETTINGS`.

``QUEUES`` beats ``QUEUE`` within one source, as in Ruby.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, fields, replace
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

from resque_compat.common.setting_values import (
    PY_FAILURE_BACKENDS,
    FiberRange,
    choice,
    comma_list,
    duration,
    fibers,
    flag,
    host_port,
    http_timeouts,
    ruby_failure_backend,
    seconds,
    whole,
)
from resque_compat.errors import ConfigurationError
from resque_compat.wire.keys import DEFAULT_NAMESPACE

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+sentinel://")


def is_flag(setting: "Setting") -> bool:
    """An on/off setting: its command-line option takes no value (``--verbose``)."""
    return setting.parse is flag



@dataclass(frozen=True)
class Setting:
    """One row of the settings table: its env/word name, option, parser and help text."""

    env: str
    field: str
    parse: Callable[[str], Any]
    help: str
    option: str = ""
    metavar: str = "VALUE"
    #: The command whose ``--help`` and options show the row (``work`` or ``scheduler``).
    command: str = "work"


#: The table that drives parsing, ``--help`` and the README's settings list.
SETTINGS: Tuple[Setting, ...] = (
    Setting("QUEUE", "queues", comma_list, "Comma-separated queues in priority order; '*' and globs "
            "expand from the queues set, '!name' excludes. QUEUES beats QUEUE.", "--queue", "LIST"),
    Setting("FIBERS", "fibers", fibers, "Greenlet workers in this process; each is "
            "one Resque worker in resque-web. MIN..MAX (e.g. 10..200) autoscales: more while "
            "they are busy, the hub is responsive and DB_POOL has room; fewer when idle or lagging.",
            "--fibers", "N|MIN..MAX"),
    Setting("INTERVAL", "interval", seconds("INTERVAL"), "Seconds between polls of empty queues "
            "(Ruby's meaning). 0 = work until the queues are empty, then exit.", "--interval", "SECONDS"),
    Setting("MIN_INTERVAL", "min_interval", seconds("MIN_INTERVAL"), "Poll interval after a job "
            "(Resque 3.0 backoff; default INTERVAL).", "--min-interval", "SECONDS"),
    Setting("MAX_INTERVAL", "max_interval", seconds("MAX_INTERVAL"), "Largest poll interval "
            "(Resque 3.0 backoff; default INTERVAL).", "--max-interval", "SECONDS"),
    Setting("BACKOFF_INTERVAL", "backoff_interval", seconds("BACKOFF_INTERVAL"), "Added to the "
            "poll interval after each empty poll (Resque 3.0; default 0.1).", "--backoff-interval", "SECONDS"),
    Setting("POLL_INTERVAL", "poll_interval", seconds("POLL_INTERVAL"), "Cap on the idle poll "
            "interval (default 0.02): one poll serves every idle greenlet in one Redis round "
            "trip, so a new job starts within milliseconds. 0 = no cap (Ruby's timing exactly).",
            "--poll-interval", "SECONDS"),
    Setting("PIDFILE", "pidfile", str, "Write the process id to this file.", "--pidfile", "PATH"),
    Setting("VERBOSE", "verbose", flag, "Log one line per job (Ruby's VERBOSE).", "--verbose", "1"),
    Setting("LOGGING", "logging", flag, "Same as VERBOSE (Ruby's LOGGING).", "", "1"),
    Setting("VVERBOSE", "vverbose", flag, "Debug logging with times and pids (Ruby's VVERBOSE).", "--vverbose", "1"),
    Setting("LOG_FORMAT", "log_format", choice("LOG_FORMAT", ("text", "json")), "text "
            "(Resque's formatters) or json (one object per line).", "--log-format", "text|json"),
    Setting("REQUIRE", "require", comma_list, "Comma-separated modules or .py files that define the "
            "jobs (@job); also -r, repeatable.", "", "MODULES"),
    Setting("ALLOW_NO_JOBS", "allow_no_jobs", flag, "Start even when -r/REQUIRE registered no "
            "@job (for jobs that plugins register later); without it that is an error.",
            "--allow-no-jobs", "1"),
    Setting("RESQUE_HEARTBEAT_INTERVAL", "heartbeat_interval", seconds("RESQUE_HEARTBEAT_INTERVAL", 0.1),
            "Seconds between heartbeats of every slot (default 60, Ruby's).", "--heartbeat-interval", "SECONDS"),
    Setting("RESQUE_PRUNE_INTERVAL", "prune_interval", seconds("RESQUE_PRUNE_INTERVAL", 0.1),
            "Heartbeat age after which a worker counts as dead when we prune (default 5 x "
            "heartbeat interval, Ruby's 300).", "--prune-interval", "SECONDS"),
    Setting("RESQUE_TERM_TIMEOUT", "term_timeout", seconds("RESQUE_TERM_TIMEOUT"), "Seconds "
            "in-flight jobs get after TERM/INT before they are killed and recorded as failures "
            "(default 4.0).", "--term-timeout", "SECONDS"),
    Setting("REDIS_POOL", "redis_pool", whole("REDIS_POOL", 2), "Most Redis connections the "
            "process opens for jobs and bookkeeping (default min(FIBERS, 16) + 4); "
            "resque_compat.redis has a pool of its own of the same size.", "--redis-pool", "N"),
    Setting("JOB_REDIS_URL", "job_redis_url", str, "Redis of resque_compat.redis.client(), the "
            "auto-pipelined client for job bodies (default: REDIS_URL).", "--job-redis-url", "URL"),
    Setting("DATABASE_URL", "database_url", str, "mysql://user:pass@host:port/db for the "
            "shared MySQL pool (resque_compat.db); unset = no pool.", "--database-url", "URL"),
    Setting("DB_POOL", "db_pool", whole("DB_POOL", 1), "MySQL connections shared by all "
            "greenlets (default 20).", "--db-pool", "N"),
    Setting("DB_POOL_TIMEOUT", "db_pool_timeout", seconds("DB_POOL_TIMEOUT", 0.001), "Seconds a "
            "job waits for a free MySQL connection before failing (default 10).", "--db-pool-timeout", "SECONDS"),
    Setting("HTTP_TIMEOUT", "http_timeout", http_timeouts, "CONNECT,READ seconds for "
            "resque_compat.http (default 5,30).", "--http-timeout", "C,R"),
    Setting("DIRTY_EXIT", "dirty_exit", choice("DIRTY_EXIT", ("fail", "requeue")), "What our "
            "pruner does with a dead worker's job: fail = a Resque::DirtyExit failure entry "
            "(Ruby's behaviour, default); requeue = push it back to the head of its queue "
            "(at-least-once: it may run twice).", "--dirty-exit", "fail|requeue"),
    Setting("DIRTY_EXIT_MAX", "dirty_exit_max", whole("DIRTY_EXIT_MAX"), "With DIRTY_EXIT=requeue: "
            "a job that crashed its worker this many times within DIRTY_EXIT_WINDOW becomes a "
            "Resque::DirtyExit failure instead (default 3; 0 = requeue for ever).",
            "--dirty-exit-max", "N"),
    Setting("DIRTY_EXIT_WINDOW", "dirty_exit_window", duration("DIRTY_EXIT_WINDOW"), "How long "
            "crashes are remembered for DIRTY_EXIT_MAX: seconds, or 30m, 72h, 7d (default 72h).",
            "--dirty-exit-window", "DURATION"),
    Setting("JOB_TIMEOUT", "job_timeout", seconds("JOB_TIMEOUT"), "Default time limit of a job "
            "in seconds (0 = none; @job(timeout=...) overrides); a job over it is stopped and "
            "recorded as a failure.", "--job-timeout", "SECONDS"),
    Setting("HUB_BLOCK_THRESHOLD", "hub_block_threshold", seconds("HUB_BLOCK_THRESHOLD"), "Log the "
            "running jobs when the gevent hub is blocked this long (a CPU loop or C call; "
            "default 1.0, 0 = off).", "--hub-block-threshold", "SECONDS"),
    Setting("MAX_JOBS", "max_jobs", whole("MAX_JOBS"), "Stop taking jobs after this many, finish, "
            "unregister and exit with code 3 so a supervisor restarts us (0 = no limit).",
            "--max-jobs", "N"),
    Setting("MAX_MEMORY", "max_memory", whole("MAX_MEMORY"), "Same, once the process RSS passes "
            "this many MB (0 = no limit).", "--max-memory", "MB"),
    Setting("FAILURE_BACKEND", "failure_backend", ruby_failure_backend,
            "Where failures go, Ruby's variable: redis (the failed list, default) or "
            "redis_multi_queue (one failure list per queue, as Ruby names them). Ruby reads it "
            "too, so nothing else is accepted; see RESQUE_PY_FAILURE_BACKEND.",
            "--failure-backend", "NAME"),
    Setting("RESQUE_PY_FAILURE_BACKEND", "py_failure_backend",
            choice("RESQUE_PY_FAILURE_BACKEND", PY_FAILURE_BACKENDS),
            "Python workers' failure backend; wins over FAILURE_BACKEND: redis, "
            "redis_multi_queue, multiple (redis + FAILURE_CALLBACK) or "
            "multiple_with_retry_suppression (resque-retry's MultipleWithRetrySuppression: "
            "a failure being retried goes to failure-resque-retry:*, not failed).",
            "--py-failure-backend", "NAME"),
    Setting("FAILURE_CALLBACK", "failure_callback", str, "module:function called with each "
            "failure (dict) when RESQUE_PY_FAILURE_BACKEND=multiple (or "
            "multiple_with_retry_suppression), e.g. to report to Sentry.",
            "--failure-callback", "MOD:FUNC"),
    Setting("RUBY_JSON", "ruby_json", choice("RUBY_JSON", ("json", "oj")), "The JSON library "
            "of the Ruby apps on these queues: json (the json gem, default) or oj (MultiJson picks "
            "Oj when it is installed). Only floats differ: Oj writes 1e16 as 10000000000000000.0; "
            "bytes that Ruby hashes or compares (dequeue, loner and retry keys) must match.",
            "--ruby-json", "json|oj"),
    Setting("PROCESSES", "processes", whole("PROCESSES", 1), "Worker processes to fork (each with "
            "FIBERS greenlets) under one supervisor (default 1 = no supervisor).", "--processes", "N"),
    # Not a user setting (no command shows it): the pool supervisor passes it to its children.
    Setting("RESQUE_SUPERVISOR_FD", "supervisor_fd", whole("RESQUE_SUPERVISOR_FD"), "A pipe on "
            "which a recycling worker tells its pool supervisor to start its replacement now.", "",
            command="internal"),
    Setting("HOSTNAME", "hostname", str, "Host name in worker ids (default: the real one). For "
            "containers whose host name changes; Ruby prunes by it, see README.", "--hostname", "NAME"),
    Setting("STATSD", "statsd", host_port("STATSD"), "Send metrics to StatsD at HOST:PORT (UDP).",
            "--statsd", "HOST:PORT"),
    Setting("GRAPHITE", "graphite", host_port("GRAPHITE"), "Send metrics to Carbon (plaintext) at HOST:PORT.",
            "--graphite", "HOST:PORT"),
    Setting("METRICS_PORT", "metrics_port", whole("METRICS_PORT", 0, 65535), "Serve Prometheus /metrics and "
            "/healthz on this port (0 = off).", "--metrics-port", "PORT"),
    Setting("METRICS_PREFIX", "metrics_prefix", str, "First part of every StatsD/Graphite "
            "metric name (default resque).", "--metrics-prefix", "PREFIX"),
    Setting("METRICS_INTERVAL", "metrics_interval", seconds("METRICS_INTERVAL", 0.05), "Seconds "
            "between metric flushes and queue-length polls (default 5).", "--metrics-interval", "SECONDS"),
    Setting("METRICS_BIND", "metrics_bind", str, "Address the metrics port listens on (default "
            "0.0.0.0: every interface, for a Prometheus scraper elsewhere).", "--metrics-bind", "ADDRESS"),
    # resque-py scheduler, with resque-scheduler's names and defaults (WIRE §7.1).
    Setting("RESQUE_SCHEDULER_INTERVAL", "scheduler_interval", seconds("RESQUE_SCHEDULER_INTERVAL", 0.01),
            "Seconds between polls for due delayed jobs (default 5).", "--interval", "SECONDS",
            command="scheduler"),
    Setting("DELAYED_REQUEUE_BATCH_SIZE", "delayed_requeue_batch_size",
            whole("DELAYED_REQUEUE_BATCH_SIZE", 1), "Delayed jobs moved per atomic step (default 100).",
            "--batch-size", "N", command="scheduler"),
    Setting("RESQUE_SCHEDULER_MASTER_LOCK_PREFIX", "scheduler_lock_prefix", str, "Extra prefix "
            "of the leader lock key, as resque-scheduler's (default none).", "--lock-prefix", "PREFIX",
            command="scheduler"),
    Setting("RESQUE_SCHEDULER_LOCK_TIMEOUT", "scheduler_lock_timeout", whole("RESQUE_SCHEDULER_LOCK_TIMEOUT", 1),
            "Seconds the leader lock lives unless renewed (default 180, Ruby's).", "--lock-timeout",
            "SECONDS", command="scheduler"),
    # Recurring schedules (issue #13), resque-scheduler's names where it has them.
    Setting("DYNAMIC_SCHEDULE", "dynamic_schedule", flag, "Reload schedules changed with "
            "set_schedule/remove_schedule (Ruby or resque-py schedule) while running, as "
            "resque-scheduler's DYNAMIC_SCHEDULE (default off).", "--dynamic", "1", command="scheduler"),
    Setting("RAILS_ENV", "rails_env", str, "Environment for schedule entries' rails_env/env lists; an "
            "entry that lists others is skipped, and with RAILS_ENV unset every such entry is "
            "(Ruby's rule).", "--rails-env", "ENV", command="scheduler"),
    Setting("RESQUE_SCHEDULER_MISSED", "scheduler_missed", choice("RESQUE_SCHEDULER_MISSED", ("once", "skip")),
            "A slot no leader ran (kill -9, deploy): once = a new leader runs the latest missed "
            "slot once if it is at most lock timeout + 2 intervals old (default); skip = Ruby's "
            "behaviour, not run.", "--missed", "once|skip", command="scheduler"),
    Setting("TZ", "tz", str, "Zone of cron lines without a zone suffix, and of the "
            "delayed:last_enqueued_at times (default: the system's, as for Ruby).", "--tz", "ZONE",
            command="scheduler"),
)

_BY_ENV: Dict[str, Setting] = {s.env: s for s in SETTINGS}
_BY_ENV["QUEUES"] = _BY_ENV["QUEUE"]  # same setting; QUEUES wins, see _pick_queue_source
_BY_ENV["COUNT"] = _BY_ENV["PROCESSES"]  # rake resque:workers COUNT=2; PROCESSES beats it

#: Ruby's environment names with no setting of their own: None = accepted, and already what we
#: do; a text = refused with that advice (a Ruby habit should cost one line, not a search).
RUBY_ONLY: Dict[str, Optional[str]] = {
    # TERM/INT already give in-flight jobs RESQUE_TERM_TIMEOUT, then fail them (TERM_CHILD's meaning).
    "TERM_CHILD": None,
    # There is no forked child per job; atexit hooks always run when the process exits.
    "RUN_AT_EXIT_HOOKS": None,
    "BACKGROUND": "BACKGROUND is not supported: resque-py does not daemonize; run it under "
                  "systemd, supervisord or a container (or `nohup resque-py work ... &`), "
                  "with PIDFILE=path if you need the pid",
}


@dataclass(frozen=True)
class Settings:
    """Everything one process needs, fixed at start-up. Build it with :meth:`load`."""

    redis_url: str = DEFAULT_REDIS_URL
    namespace: str = DEFAULT_NAMESPACE
    queues: Tuple[str, ...] = ()
    fibers: int = 1
    #: FIBERS=MIN..MAX: the lower bound (``fibers`` is the upper); None = a fixed FIBERS.
    fibers_min: Optional[int] = None
    interval: float = 5.0
    min_interval: Optional[float] = None
    max_interval: Optional[float] = None
    backoff_interval: float = 0.1
    poll_interval: float = 0.02
    pidfile: Optional[str] = None
    verbose: bool = False
    logging: bool = False
    vverbose: bool = False
    log_format: str = "text"
    require: Tuple[str, ...] = ()
    allow_no_jobs: bool = False
    heartbeat_interval: float = 60.0
    prune_interval: Optional[float] = None
    term_timeout: float = 4.0
    redis_pool: Optional[int] = None
    job_redis_url: Optional[str] = None
    database_url: Optional[str] = None
    db_pool: int = 20
    db_pool_timeout: float = 10.0
    http_timeout: Tuple[float, float] = (5.0, 30.0)
    dirty_exit: str = "fail"
    dirty_exit_max: int = 3
    dirty_exit_window: float = 72 * 3600.0
    job_timeout: float = 0.0
    hub_block_threshold: float = 1.0
    max_jobs: int = 0
    max_memory: int = 0
    #: The backend Python workers use: RESQUE_PY_FAILURE_BACKEND if set, else FAILURE_BACKEND.
    failure_backend: str = "redis"
    py_failure_backend: Optional[str] = None
    failure_callback: Optional[str] = None
    ruby_json: str = "json"
    processes: int = 1
    supervisor_fd: int = 0
    hostname: Optional[str] = None
    statsd: Optional[str] = None
    graphite: Optional[str] = None
    metrics_port: int = 0
    metrics_prefix: str = "resque"
    metrics_interval: float = 5.0
    metrics_bind: str = "0.0.0.0"
    scheduler_interval: float = 5.0
    delayed_requeue_batch_size: int = 100
    scheduler_lock_prefix: str = ""
    scheduler_lock_timeout: int = 180
    dynamic_schedule: bool = False
    rails_env: Optional[str] = None
    scheduler_missed: str = "once"
    tz: Optional[str] = None

    # -- derived values (Ruby's defaults that depend on other settings) ------------------------
    @property
    def effective_min_interval(self) -> float:
        return self.interval if self.min_interval is None else self.min_interval

    @property
    def effective_max_interval(self) -> float:
        return self.interval if self.max_interval is None else self.max_interval

    @property
    def effective_prune_interval(self) -> float:
        return 5 * self.heartbeat_interval if self.prune_interval is None else self.prune_interval

    @property
    def effective_redis_pool(self) -> int:
        return self.redis_pool if self.redis_pool is not None else min(self.fibers, 16) + 4

    @property
    def effective_job_redis_url(self) -> str:
        """Where resque_compat.redis sends job bodies' commands: JOB_REDIS_URL, else REDIS_URL."""
        return self.job_redis_url or self.redis_url

    @property
    def metrics_enabled(self) -> bool:
        """--statsd, --graphite or --metrics-port: the worker records and reports metrics."""
        return bool(self.statsd or self.graphite or self.metrics_port)

    @property
    def autoscale(self) -> bool:
        """FIBERS=MIN..MAX with MIN < MAX: the runner adds and removes greenlet slots."""
        return self.fibers_min is not None and self.fibers_min < self.fibers

    @property
    def effective_fibers_min(self) -> int:
        return self.fibers if self.fibers_min is None else self.fibers_min

    @property
    def drain(self) -> bool:
        """``INTERVAL=0``: work until the queues are empty, then exit (WIRE §3.3)."""
        return self.interval == 0

    @property
    def log_level(self) -> str:
        if self.vverbose:
            return "vverbose"
        if self.verbose or self.logging:
            return "verbose"
        return "quiet"

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        words: Sequence[str] = (),
        options: Optional[Mapping[str, Any]] = None,
        environ: Optional[Mapping[str, str]] = None,
    ) -> "Settings":
        """Merge options > KEY=VALUE words > environment > defaults into one Settings.

        ``options`` maps field names to already-typed values (None = not given); ``environ``
        defaults to ``os.environ``. Raises ConfigurationError naming the bad setting.
        """
        environ = os.environ if environ is None else environ
        word_values = parse_words(words)
        values: Dict[str, Any] = {
            "redis_url": environ.get("REDIS_URL") or DEFAULT_REDIS_URL,
            "namespace": environ.get("RESQUE_NAMESPACE") or DEFAULT_NAMESPACE,
        }
        for source in (_from_environ(environ), word_values):
            values.update(source)
        for name, value in (options or {}).items():
            if value is None or value == ():
                continue
            values[name] = tuple(value) if isinstance(value, list) else value
        if values.get("py_failure_backend"):  # ours wins over Ruby's shared variable
            values["failure_backend"] = values["py_failure_backend"]
        if isinstance(values.get("fibers"), FiberRange):  # the source that won gives both bounds
            values["fibers_min"], values["fibers"] = values["fibers"].low, values["fibers"].high
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConfigurationError(f"unknown settings: {', '.join(sorted(unknown))}")
        return cls(**values).validated()

    def validated(self) -> "Settings":
        """Check values however they arrived (env, words, options or the API) against the table."""
        if not self.namespace:
            raise ConfigurationError("RESQUE_NAMESPACE must not be empty; Ruby's default is 'resque'")
        if not str(self.redis_url).startswith(_REDIS_SCHEMES):
            raise ConfigurationError(
                f"REDIS_URL (--redis) must start with {', '.join(_REDIS_SCHEMES)}, e.g. "
                f"REDIS_URL={DEFAULT_REDIS_URL} (got {self.redis_url!r})"
            )
        _check_redis_db(str(self.redis_url))
        if self.job_redis_url is not None:
            if not str(self.job_redis_url).startswith(_REDIS_SCHEMES):
                raise ConfigurationError(
                    f"JOB_REDIS_URL must start with {', '.join(_REDIS_SCHEMES)}, e.g. "
                    f"JOB_REDIS_URL={DEFAULT_REDIS_URL} (got {self.job_redis_url!r})")
            _check_redis_db(str(self.job_redis_url))
        for setting in SETTINGS:
            value = getattr(self, setting.field)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                setting.parse(repr(value))  # the same range check as a string from the env
        if self.fibers_min is not None and not 1 <= self.fibers_min <= self.fibers:
            raise ConfigurationError(f"FIBERS=MIN..MAX needs 1 <= MIN <= MAX (got {self.fibers_min}..{self.fibers})")
        if self.max_interval is not None and self.max_interval < self.effective_min_interval:
            raise ConfigurationError("MAX_INTERVAL must not be smaller than MIN_INTERVAL")
        return self

    def with_(self, **changes: Any) -> "Settings":
        return replace(self, **changes).validated()


def _check_redis_db(url: str) -> None:
    """redis-py reads ``redis://host/abc`` as DB 0 without a word; Ruby's redis gem refuses it."""
    if not url.startswith(("redis://", "rediss://")):
        return  # unix:// takes ?db=, redis+sentinel:// is checked by its own parser
    path = url.split("://", 1)[1].split("?", 1)[0].split("#", 1)[0].partition("/")[2]
    if path and not path.isdigit():
        raise ConfigurationError(
            f"the Redis URL's path must be a DB number, e.g. redis://127.0.0.1:6379/0 "
            f"(got {path!r}); check --redis / REDIS_URL")


def parse_words(words: Sequence[str]) -> Dict[str, Any]:
    """``["QUEUE=critical", "FIBERS=100"]`` -> typed field values. Unknown names are errors."""
    raw: Dict[str, str] = {}
    for word in words:
        name, sep, value = word.partition("=")
        if not sep or not name:
            raise ConfigurationError(
                f"unexpected argument {word!r}: settings are given as KEY=VALUE, e.g. QUEUE=critical FIBERS=100"
            )
        if name in RUBY_ONLY:
            _ruby_only(name, value)
            continue
        if name not in _BY_ENV and name not in ("REDIS_URL", "RESQUE_NAMESPACE"):
            raise ConfigurationError(unknown_setting_message(name))
        raw[name] = value
    return _typed(raw)


def user_setting_names() -> Tuple[str, ...]:
    """Every name a user may set (internal ones, passed between our own processes, left out)."""
    internal = {s.env for s in SETTINGS if s.command == "internal"}
    return tuple(sorted({*_BY_ENV, *RUBY_ONLY, "REDIS_URL", "RESQUE_NAMESPACE"} - internal))


def unknown_setting_message(name: str) -> str:
    """'unknown setting' with the closest known names, or the list when nothing is close."""
    names = user_setting_names()
    close = difflib.get_close_matches(name.upper(), names, n=3, cutoff=0.6)
    if close:
        return (f"unknown setting {name!r}; did you mean {' or '.join(close)}? "
                "(resque-py work --help lists every setting)")
    return f"unknown setting {name!r}; known: {', '.join(names)} (see resque-py work --help)"


def _ruby_only(name: str, value: str) -> None:
    advice = RUBY_ONLY[name]
    if advice is not None and flag(value):
        raise ConfigurationError(advice)


def _from_environ(environ: Mapping[str, str]) -> Dict[str, Any]:
    for name in RUBY_ONLY:
        if environ.get(name, "") != "":
            _ruby_only(name, environ[name])
    raw = {name: environ[name] for name in _BY_ENV if environ.get(name, "") != ""}
    return _typed(raw)


def _typed(raw: Dict[str, str]) -> Dict[str, Any]:
    if "QUEUES" in raw:  # QUEUES beats QUEUE (Ruby: ENV['QUEUES'] || ENV['QUEUE'])
        raw = {k: v for k, v in raw.items() if k != "QUEUE"}
    if "PROCESSES" in raw:  # our name beats Ruby's COUNT within one source
        raw = {k: v for k, v in raw.items() if k != "COUNT"}
    out: Dict[str, Any] = {}
    for name, value in raw.items():
        if name == "REDIS_URL":
            out["redis_url"] = value
        elif name == "RESQUE_NAMESPACE":
            out["namespace"] = value
        else:
            setting = _BY_ENV[name]
            out[setting.field] = setting.parse(value)
    return out


def setting_for(field_name: str) -> Setting:
    for s in SETTINGS:
        if s.field == field_name:
            return s
    raise KeyError(field_name)


def rails_environment(environ: Optional[Mapping[str, str]] = None) -> str:
    """``Resque.info[:environment]``: RAILS_ENV, else RACK_ENV, else development."""
    environ = os.environ if environ is None else environ
    return environ.get("RAILS_ENV") or environ.get("RACK_ENV") or "development"


#: The Redis DB the ``resque_testing`` pytest fixture may empty (resque_compat.testing).
TESTING_URL = "RESQUE_TESTING_URL"


def testing_redis_url(environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """RESQUE_TESTING_URL, for ``resque_compat.testing``'s fixture; None when unset."""
    environ = os.environ if environ is None else environ
    return environ.get(TESTING_URL) or None


def connection_settings(options: Optional[Mapping[str, Any]] = None,
                        environ: Optional[Mapping[str, str]] = None) -> Settings:
    """Settings for client commands (enqueue, info, failed, ...): only REDIS_URL, JOB_REDIS_URL
    (resque_compat.redis outside a worker), RESQUE_NAMESPACE, FAILURE_BACKEND,
    RESQUE_PY_FAILURE_BACKEND (which failure lists the admin commands read, as the workers
    write them) and RUBY_JSON (how floats are written) are read, so another worker setting in
    the environment cannot break them."""
    environ = os.environ if environ is None else environ
    wanted = {k: environ[k] for k in ("REDIS_URL", "JOB_REDIS_URL", "RESQUE_NAMESPACE", "FAILURE_BACKEND",
                                        "RESQUE_PY_FAILURE_BACKEND", "RUBY_JSON")
              if k in environ}
    return Settings.load((), options, wanted)
