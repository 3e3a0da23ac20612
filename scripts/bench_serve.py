"""Throughput of ``nmt-serve`` under 1, 8 and 32 concurrent clients vs ``nmt-translate`` on the same sentences.

    NMT_DATA_DIR=../shared/data .venv/bin/python scripts/bench_serve.py --checkpoint runs/x/checkpoints/best.pt \\
        [--threads 2] [--clients 1 8 32] [--sentences 1000] [--per-request 1]

Starts the real ``nmt-serve`` on a free loopback port and sends the first --sentences lines of Multi30k
test_2016_flickr (de, or the checkpoint's source language) as requests of --per-request sentences from N concurrent
clients (threads with keep-alive connections, each taking the next request as soon as its last one is answered).
Reported per level: sentences/s over the whole run (first request sent to last answer), and the request latency
(median and 90th percentile). "latency, 1 sentence" is the median latency at one client with one sentence per request
(an idle service: the --batch-wait-ms wait plus one translation). Then ``nmt-translate`` translates the same
sentences from a file with the same thread count; its figure is the decoding time it reports itself (model loading
excluded). Every service output is checked against the CLI's (they must be equal). "CPU s" is the CPU time of the
service process during the run (Linux), and of the whole ``nmt-translate`` process (start-up and loading
included): less sensitive than wall time to other load on the machine. Run on an idle machine.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def read_source(n: int, lang: str) -> list[str]:
    root = Path(os.environ.get("NMT_DATA_DIR", REPO / "data"))
    with gzip.open(root / "multi30k" / f"test_2016_flickr.{lang}.gz", "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f][:n]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, int]:
    port = free_port()
    cmd = [BIN / "nmt-serve", "-c", args.checkpoint, "--port", str(port), "--device", args.device, "--quiet"]
    cmd += ["--threads", str(args.threads), "--max-sentence-pieces", "100000", "--batch-wait-ms", str(args.wait_ms)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"nmt-serve exited: {proc.stderr.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc, port
        except OSError:
            time.sleep(0.3)
    proc.kill()
    sys.exit("nmt-serve did not start within 300 s")


def run_clients(port: int, requests: list[list[str]], clients: int) -> tuple[float, list[float], list[list[str]]]:
    """Send every request from ``clients`` threads; returns wall seconds, per-request latencies and the outputs."""
    outputs: list[list[str]] = [[] for _ in requests]
    latencies: list[float] = [0.0] * len(requests)
    lock = threading.Lock()
    todo = iter(range(len(requests)))

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        while True:
            with lock:
                k = next(todo, None)
            if k is None:
                break
            body = json.dumps({"sentences": requests[k]})
            start = time.perf_counter()
            conn.request("POST", "/translate", body, {"Content-Type": "application/json"})
            answer = conn.getresponse()
            data = json.loads(answer.read())
            latencies[k] = time.perf_counter() - start
            if answer.status != 200:
                raise SystemExit(f"request {k}: HTTP {answer.status}: {data}")
            outputs[k] = [t["text"] for t in data["translations"]]
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, latencies, outputs


def run_cli(args: argparse.Namespace, lines: list[str]) -> tuple[float, float, list[str]]:
    """``nmt-translate`` on a file: (decoding seconds it reports, CPU seconds of the process, outputs)."""
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in.txt", Path(tmp) / "out.txt"
        src.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        cmd = [BIN / "nmt-translate", "-c", args.checkpoint, "-i", src, "-o", out, "--device", args.device]
        cmd += ["--threads", str(args.threads)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        seconds = float(re.search(r"sentences in ([0-9.]+) s", proc.stderr).group(1))
        return seconds, cpu, out.read_text(encoding="utf-8").split("\n")[:-1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--sentences", type=int, default=1000)
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--per-request", type=int, default=1, help="sentences per request")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the service and the CLI")
    p.add_argument("--device", default="cpu")
    p.add_argument("--wait-ms", type=float, default=5.0, help="the service's --batch-wait-ms")
    p.add_argument("--lang", default="de", help="source language file of test_2016_flickr")
    args = p.parse_args()

    lines = read_source(args.sentences, args.lang)
    requests = [lines[k : k + args.per_request] for k in range(0, len(lines), args.per_request)]
    proc, port = start_server(args)
    rows = []
    try:
        run_clients(port, requests[:8], 4)  # warm-up
        single = run_clients(port, [[line] for line in lines[:50]], 1)[1]
        for n in args.clients:
            cpu = cpu_seconds(proc.pid)
            wall, lat, outputs = run_clients(port, requests, n)
            cpu = cpu_seconds(proc.pid) - cpu
            flat = [o for out in outputs for o in out]
            rows.append((n, len(lines) / wall, cpu, statistics.median(lat), _p90(lat), flat))
    finally:
        proc.terminate()
        proc.wait(30)
    cli_seconds, cli_cpu, cli_out = run_cli(args, lines)
    cli_rate = len(lines) / cli_seconds

    print(f"checkpoint {args.checkpoint}; {len(lines)} sentences, {args.per_request} per request; ", end="")
    print(f"{args.threads} torch thread(s), {args.device}; batch wait {args.wait_ms} ms")
    print("| run | clients | sentences/s | vs nmt-translate | CPU s | latency p50 | latency p90 | outputs = CLI |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    print(f"| nmt-translate (file) | - | {cli_rate:.1f} | 1.00 | {cli_cpu:.1f} (all) | - | - | - |")
    for n, rate, cpu, p50, p90, outputs in rows:
        same = sum(a == b for a, b in zip(outputs, cli_out))
        print(
            f"| nmt-serve | {n} | {rate:.1f} | {rate / cli_rate:.2f} | {cpu:.1f} | {1000 * p50:.0f} ms "
            f"| {1000 * p90:.0f} ms | {same}/{len(lines)} |"
        )
    print(f"latency, 1 sentence (idle service, median of 50): {1000 * statistics.median(single):.0f} ms")


def _p90(values: list[float]) -> float:
    return sorted(values)[max(0, int(0.9 * len(values)) - 1)]


if __name__ == "__main__":
    main()
