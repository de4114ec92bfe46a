"""The floor: the benchmark's job bodies run on bare greenlets, with no queue at all.

``python bench/floor.py CLASS N FIBERS URL`` runs N calls of the job body on a gevent pool of
FIBERS greenlets, configured like the worker (same HTTP and MySQL pools), and exits; the
parent reads CPU time from the process's rusage and the rest from BENCH_OUT. The worker's own
cost per job is then (worker CPU - floor CPU) / N.
"""
from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gevent.pool import Pool  # noqa: E402

from bench import jobs  # noqa: E402
from resque_compat import db, http  # noqa: E402


def main() -> None:
    class_name, count, fibers, url = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    http.configure(fibers)
    db.configure(os.environ.get("DATABASE_URL") or None, int(os.environ.get("DB_POOL", "20")))
    body = jobs.BODIES[class_name]
    pool = Pool(fibers)
    for _ in range(count):
        pool.spawn(body, time.time(), url)
    pool.join()


if __name__ == "__main__":
    main()
