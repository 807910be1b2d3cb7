"""Latency of `fsbir serve` under concurrency: p50/p99 of sketch+text searches for 1, 10, 50 and
200 concurrent clients, the share answered 503 (past the latency budget), and /healthz's worst latency
while it is loaded.

    python bench/serve_load.py --index runs/quickstart/index [--requests 200] [--max-wait-ms 2000] [--servers 2]

Each level starts its clients together (a crowd arriving at once, the hard case for a queue).

The server is a separate `fsbir serve` process on 127.0.0.1 (as a user runs it); clients are
threads of this process with their own HTTP connections.
"""
from __future__ import annotations

import argparse
import io
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from fsbir.pipelines.web_config import WebConfig
from fsbir.sketchgen.strokes import render_strokes


def drawing_png() -> bytes:
    strokes = [[[10, 90, 110, 0, 10], [0, 0, 100, 100, 0]], [[30, 80], [40, 40]]]
    buf = io.BytesIO()
    Image.fromarray(render_strokes(strokes, 256, 3)).save(buf, "PNG")
    return buf.getvalue()


def load(bases: list[str], clients: int, requests: int) -> dict:
    """Each client sends requests // clients searches back to back, client i to server i mod N;
    the first server's /healthz is polled meanwhile."""
    base = bases[0]
    sketch = drawing_png()
    latencies: list[float] = []
    codes: list[int] = []
    health: list[float] = []
    lock = threading.Lock()
    done = threading.Event()

    def client(n: int, server: str) -> None:
        with httpx.Client(timeout=120) as c:
            for _ in range(n):
                t = time.perf_counter()
                r = c.post(f"{server}/api/search", files={"sketch": ("s.png", sketch, "image/png")},
                           data={"text": "a long ivory trouser", "k": "10"})
                with lock:
                    latencies.append(time.perf_counter() - t)
                    codes.append(r.status_code)

    def poll_health() -> None:
        with httpx.Client(timeout=30) as c:
            while not done.is_set():
                t = time.perf_counter()
                c.get(f"{base}/healthz")
                health.append(time.perf_counter() - t)
                time.sleep(0.05)

    per_client = max(1, requests // clients)
    threads = [threading.Thread(target=client, args=(per_client, bases[i % len(bases)])) for i in range(clients)]
    poller = threading.Thread(target=poll_health)
    start = time.perf_counter()
    poller.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    done.set()
    poller.join()
    ok = [lat for lat, code in zip(latencies, codes) if code == 200]
    return {
        "clients": clients, "requests": len(codes), "ok": len(ok), "busy_503": codes.count(503),
        "p50_ms": 1000 * float(np.percentile(ok, 50)) if ok else float("nan"),
        "p99_ms": 1000 * float(np.percentile(ok, 99)) if ok else float("nan"),
        "throughput": len(ok) / wall,
        "healthz_max_ms": 1000 * max(health) if health else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", required=True, help="An index folder written by `fsbir index`.")
    parser.add_argument("--requests", type=int, default=200, help="Searches per concurrency level.")
    parser.add_argument("--max-wait-ms", type=int, default=WebConfig.__dataclass_fields__["max_wait_ms"].default)
    parser.add_argument("--max-batch", type=int, default=WebConfig.__dataclass_fields__["max_batch"].default)
    parser.add_argument("--clients", default="1,10,50,200")
    parser.add_argument("--servers", type=int, default=1,
                        help="Server processes over the same index (clients spread over them, as behind a proxy).")
    args = parser.parse_args()

    servers, bases = [], []
    for _ in range(args.servers):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        servers.append(subprocess.Popen([sys.executable, "-m", "fsbir", "serve", args.index, "--port", str(port),
                                         "--max-wait-ms", str(args.max_wait_ms), "--max-batch", str(args.max_batch)],
                                        stdout=subprocess.DEVNULL))
        bases.append(f"http://127.0.0.1:{port}")
    deadline = time.time() + 180
    for server, base in zip(servers, bases):
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.HTTPError:
                if server.poll() is not None or time.time() > deadline:
                    sys.exit("a server did not start")
                time.sleep(0.3)
    load(bases, len(bases), 10)  # warm-up
    table = Table(title=f"fsbir serve under load ({args.index}, {args.servers} server process(es), "
                        f"max_wait_ms {args.max_wait_ms}, max_batch {args.max_batch})")
    for col in ("clients", "requests", "ok", "503", "p50 ms", "p99 ms", "searches/s", "healthz max ms"):
        table.add_column(col, justify="right")
    for clients in (int(c) for c in args.clients.split(",")):
        r = load(bases, clients, args.requests)
        table.add_row(str(r["clients"]), str(r["requests"]), str(r["ok"]), str(r["busy_503"]), f"{r['p50_ms']:.1f}",
                      f"{r['p99_ms']:.1f}", f"{r['throughput']:.1f}", f"{r['healthz_max_ms']:.1f}")
    for server in servers:
        server.terminate()
        server.wait(timeout=30)
    Console().print(table)


if __name__ == "__main__":
    main()
