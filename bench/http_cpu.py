"""CPU per GET: ``resque_compat.http.get`` against ``requests.Session.get`` (issue 4, target 0.4 ms).

``python bench/http_cpu.py [--calls 2000]`` starts the callback endpoint (no delay) in another
process, warms both clients up, then measures ``time.process_time()`` over sequential GETs,
three rounds each, keeping the best; prints both figures, their ratio and the machine.
"""
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import requests  # noqa: E402

from bench.run import machine  # noqa: E402
from resque_compat import http  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_per_call(call, url: str, calls: int) -> float:
    for _ in range(200):
        call(url)
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for _ in range(calls):
            call(url)
        best = min(best, (time.process_time() - started) / calls)
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    opts = parser.parse_args()
    endpoint = subprocess.Popen([sys.executable, os.path.join(ROOT, "examples", "callbacks", "endpoint.py"),
                                 "--port", "0", "--delay", "0"], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
    try:
        url = f"http://127.0.0.1:{int(endpoint.stdout.readline())}/callback"
        http.configure(10)
        session = requests.Session()
        ours = cpu_per_call(lambda u: http.get(u).raise_for_status(), url, opts.calls)
        theirs = cpu_per_call(lambda u: session.get(u, timeout=(5, 30)).raise_for_status(), url, opts.calls)
    finally:
        endpoint.terminate()
    print(f"machine: {machine()}")
    print(f"resque_compat.http.get: {ours:.3f} ms CPU per GET (target <= 0.4)")
    print(f"requests.Session.get:   {theirs:.3f} ms CPU per GET (baseline, same run)")
    print(f"ratio: {ours / theirs:.2f}x of requests")


if __name__ == "__main__":
    main()
