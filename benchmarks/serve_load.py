"""`pipesql serve` under load: many concurrent clients plus half-open connections, against a
baseline of the same requests from a single client, measured in the same run.

The server runs as its own process (``python -m pipesql serve --model tiny``, CPU). First the
baseline: one client sends R chat completions one after another. Then the load: C clients send
R each at once while H extra connections each send half a request and stall (a slowloris); every
time the server closes one, it is opened again, so H stay half-open for the whole run. Every
request must complete with 200 or the script fails.

    python benchmarks/serve_load.py                               # 50 clients, 40 half-open
    python benchmarks/serve_load.py --clients 50 --half-open 40 --requests 4 --max-tokens 8

Prints p50/p99 latency and throughput for both, the load's figures as ratios to the baseline,
how often the server dropped a half-open connection, and the server's resident memory. Last,
the sandbox's bounds through the live server: a 1 GB value and a 10-million-row sorted result
sent to ``/tools/execute_pipe_sql`` (10 s tool limit), each with its answer time and the
server's peak memory growth.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

HALF_REQUEST = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: 4096\r\n\r\n{\"messages\": [")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


ATTACKS = {
    "1 GB value": "FROM singer |> SELECT zeroblob(1000000000) AS z",
    "printf 900 MB": "FROM singer |> SELECT printf('%.*c', 900000000, 'x') AS s",
    "10M rows, first 20": "WITH RECURSIVE n AS (SELECT 1 AS i UNION ALL SELECT i + 1 FROM n WHERE i < 10000000) FROM n",
    "10M rows, sorted": ("WITH RECURSIVE n AS (SELECT 1 AS i UNION ALL SELECT i + 1 FROM n WHERE i < 10000000) "
                         "FROM n |> ORDER BY i DESC"),
    # issue #21: work inside one SQLite step
    "trim, 20,001-character set": ("FROM singer |> LIMIT 1 |> SELECT length(trim(replace(hex(zeroblob(100000)), '0', "
                                   "'a'), hex(zeroblob(10000)) || 'a')) AS t"),
    "printf, BLOB format": "FROM singer |> SELECT length(printf(CAST('%.*c' AS BLOB), 900000000, 'x')) AS p",
    "instr x 6, back to back": ("FROM singer |> LIMIT 1 |> SELECT " + " + ".join(
        ["instr(hex(zeroblob(131071)) || '1', hex(zeroblob(65535)) || '1')"] * 6) + " AS i"),
}


def build_db_dir(root: Path) -> Path:
    import sqlite3

    (root / "music").mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(root / "music" / "music.sqlite")
    conn.executescript("CREATE TABLE IF NOT EXISTS singer (singer_id INTEGER PRIMARY KEY, name TEXT);"
                       "INSERT OR REPLACE INTO singer VALUES (1, 'Ada'), (2, 'Bea');")
    conn.commit()
    conn.close()
    return root


def start_server(port: int, read_timeout_s: float, max_batch: int, db_dir: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "pipesql", "serve", "--model", "tiny", "--device", "cpu", "--backend",
               "transformers", "--port", str(port), "--read-timeout-s", str(read_timeout_s),
               "--max-batch", str(max_batch), "--batch-wait-ms", "20", "--db-dir", str(db_dir)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited: {process.stderr.read().decode()[-2000:]}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.5)
    raise SystemExit("the server did not start within 300 s")


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+) kB", text).group(1)) / 1024


def attack(port: int, pipe_sql: str) -> tuple[float, str]:
    body = json.dumps({"db_id": "music", "arguments": {"sql": pipe_sql}}).encode()
    start = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("POST", "/tools/execute_pipe_sql", body=body, headers={"Content-Type": "application/json"})
        output = json.loads(connection.getresponse().read())["output"]
    finally:
        connection.close()
    return time.perf_counter() - start, output.splitlines()[-1][:90]


def ask(port: int, index: int, max_tokens: int) -> tuple[int, float]:
    body = json.dumps({"messages": [{"role": "user", "content": f"How many singers are older than {index}?"}],
                       "max_tokens": max_tokens}).encode()
    start = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        connection.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.status, time.perf_counter() - start
    finally:
        connection.close()


def run_clients(port: int, clients: int, requests: int, max_tokens: int) -> tuple[list[int], list[float], float]:
    statuses: list[int] = []
    latencies: list[float] = []
    lock = threading.Lock()

    def client(number: int) -> None:
        for turn in range(requests):
            try:
                status, seconds = ask(port, number * requests + turn, max_tokens)
            except OSError:
                status, seconds = 0, float("nan")
            with lock:
                statuses.append(status)
                latencies.append(seconds)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses, latencies, time.perf_counter() - start


class HalfOpen:
    """``count`` connections that each send half a request and stall; reopened when closed."""

    def __init__(self, port: int, count: int):
        self.port, self.count = port, count
        self.closed_by_server = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _open(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.sendall(HALF_REQUEST)
        sock.setblocking(False)
        return sock

    def _run(self) -> None:
        socks = [self._open() for _ in range(self.count)]
        while not self._stop.wait(0.2):
            for index, sock in enumerate(socks):
                try:
                    if sock.recv(1) == b"":
                        raise ConnectionResetError
                except BlockingIOError:
                    continue  # still open, still waiting
                except OSError:
                    pass
                sock.close()
                self.closed_by_server += 1
                socks[index] = self._open()
        for sock in socks:
            sock.close()

    def __enter__(self) -> "HalfOpen":
        self._thread.start()
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--half-open", type=int, default=40)
    parser.add_argument("--requests", type=int, default=2, help="requests per client")
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--read-timeout-s", type=float, default=5.0)
    args = parser.parse_args()

    import tempfile

    port = free_port()
    server = start_server(port, args.read_timeout_s, args.max_batch, build_db_dir(Path(tempfile.mkdtemp())))
    attacks = []
    try:
        ask(port, 0, args.max_tokens)  # warm-up: first-call allocations are not the server's cost
        rss_start = rss_mb(server.pid)
        base_statuses, base_latencies, base_seconds = run_clients(port, 1, args.requests * 5, args.max_tokens)
        with HalfOpen(port, args.half_open) as half_open:
            statuses, latencies, seconds = run_clients(port, args.clients, args.requests, args.max_tokens)
            time.sleep(args.read_timeout_s + 1)  # long enough for the server to drop the stalled ones
        rss_end = rss_mb(server.pid)
        for name, pipe_sql in ATTACKS.items():
            before = rss_mb(server.pid, "VmHWM")
            answer_seconds, answer = attack(port, pipe_sql)
            attacks.append((name, answer_seconds, rss_mb(server.pid, "VmHWM") - before, answer))
    finally:
        server.terminate()
        server.wait(timeout=30)

    rows = [("1 client", base_statuses, base_latencies, base_seconds),
            (f"{args.clients} clients + {args.half_open} half-open", statuses, latencies, seconds)]
    print(f"tiny model on CPU, {args.max_tokens} new tokens per request, max batch {args.max_batch}, "
          f"read timeout {args.read_timeout_s:g} s, {os.cpu_count()} CPUs")
    print(f"{'load':>28} {'requests':>9} {'ok':>5} {'p50 s':>7} {'p99 s':>7} {'req/s':>7} {'req/s vs 1 client':>18}")
    base_rate = len(base_statuses) / base_seconds
    for name, got, lat, secs in rows:
        rate = len(got) / secs
        print(f"{name:>28} {len(got):>9} {got.count(200):>5} {percentile(lat, 0.5):>7.3f} {percentile(lat, 0.99):>7.3f} "
              f"{rate:>7.2f} {rate / base_rate:>17.2f}x")
    print(f"half-open connections dropped by the server's read deadline: {half_open.closed_by_server}")
    print(f"server RSS: {rss_start:.0f} MB after warm-up, {rss_end:.0f} MB after the load")
    print("sandbox bounds through the server (tool limit 10 s): seconds, growth of the server's peak RSS, answer")
    for name, seconds, growth, answer in attacks:
        print(f"  {name:>20} {seconds:>6.2f} s {growth:>+6.0f} MB  {answer}")
    failed = [s for s in base_statuses + statuses if s != 200]
    if failed:
        raise SystemExit(f"{len(failed)} requests did not complete with 200: {sorted(set(failed))}")


if __name__ == "__main__":
    main()
