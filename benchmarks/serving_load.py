"""Load test of `hub serving` for a chinese-electra module: N requests sent at once, latency percentiles.

    # against a running server
    python benchmarks/serving_load.py --url http://127.0.0.1:8866/predict/chinese-electra-small
    # or start one on loopback (python -m paddle_electra.hub serving start -m NAME), run, stop it;
    # --random-weights first writes full-size random weights (speed does not depend on their values)
    # and installs the module, both into temporary homes
    python benchmarks/serving_load.py --start --random-weights --module chinese-electra-small

First a sequential pass (one request at a time: the latency a lone client sees), then `--requests`
requests released together from `--concurrency` threads. A request counts as an error unless it gets
HTTP 200 and status "000". Prints a JSON summary and appends it to --jsonl.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXTS = ["这家酒店的位置很好，离地铁站只有五分钟，房间也很干净。",
         "快递太慢了，等了一个星期才到，包装还破了。",
         "屏幕显示效果不错，电池续航比我想象的要长，总体满意。",
         "服务员态度冷淡，点的菜上错了两次，不会再来了。"]


def post(url: str, body: dict, timeout: float):
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            ok = r.status == 200 and json.loads(r.read()).get("status") == "000"
            err = None if ok else "bad status"
    except (OSError, ValueError) as e:
        err = f"{type(e).__name__}: {e}"
    return time.perf_counter() - t, err


def percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def summarize(latencies, errors, wall):
    s = sorted(latencies)
    ms = lambda x: round(1000 * x, 1)
    return {"requests": len(latencies), "errors": len(errors), "p50_ms": ms(percentile(s, 50)),
            "p90_ms": ms(percentile(s, 90)), "p99_ms": ms(percentile(s, 99)), "max_ms": ms(s[-1]),
            "mean_ms": ms(sum(s) / len(s)), "wall_s": round(wall, 2), "throughput_rps": round(len(s) / wall, 1)}


def run_load(url, n, concurrency, texts_per_request, timeout, sequential):
    bodies = [{"data": [[TEXTS[(i + j) % len(TEXTS)]] for j in range(texts_per_request)]} for i in range(n)]
    for b in bodies[:3]:  # warm-up: the first request builds the server's fast path
        post(url, b, timeout)
    seq_lat, seq_err = [], []
    t0 = time.perf_counter()
    for b in bodies[:sequential]:
        lat, err = post(url, b, timeout)
        seq_lat.append(lat)
        if err:
            seq_err.append(err)
    seq = summarize(seq_lat, seq_err, time.perf_counter() - t0) if sequential else None

    latencies, errors, lock = [], [], threading.Lock()
    barrier = threading.Barrier(concurrency)
    queue = list(range(n))

    def worker():
        barrier.wait()  # release every thread at once
        while True:
            with lock:
                if not queue:
                    return
                i = queue.pop()
            lat, err = post(url, bodies[i], timeout)
            with lock:
                latencies.append(lat)
                if err:
                    errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    load = summarize(latencies, errors, time.perf_counter() - t0)
    load["concurrency"] = concurrency
    load["error_examples"] = sorted(set(errors))[:5]
    return seq, load


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup_random(module, workdir, env):
    """Full-size random weights in a temporary PADDLE_ELECTRA_HOME, the module installed in a temporary HUB_HOME."""
    env["PADDLE_ELECTRA_HOME"] = os.path.join(workdir, "electra_home")
    env["HUB_HOME"] = os.path.join(workdir, "hub_home")
    os.makedirs(env["HUB_HOME"], exist_ok=True)
    subprocess.run([sys.executable, "-m", "paddle_electra.cli", "init", module, "--output",
                    os.path.join(env["PADDLE_ELECTRA_HOME"], module)], env=env, check=True)
    hub = os.path.join(os.path.dirname(sys.executable), "hub")
    subprocess.run([hub, "install", os.path.join(ROOT, "hub_modules", module.replace("-", "_"))],
                   env=env, check=True, stdout=subprocess.DEVNULL)


def start_server(module, port, env, log_path, timeout=300, config=None):
    """`hub serving start -m module -p port`, or `-c config` (which names the port) when given."""
    log = open(log_path, "w")
    what = ["-c", config] if config else ["-m", module, "-p", str(port)]
    proc = subprocess.Popen([sys.executable, "-m", "paddle_electra.hub", "serving", "start", *what],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}); see {log_path}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
            return proc
        except OSError:
            time.sleep(0.5)
    stop_server(proc)
    raise RuntimeError(f"server not up after {timeout}s; see {log_path}")


def stop_server(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(20)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", help="POST url of a running server (default: the one --start launches)")
    p.add_argument("--start", action="store_true", help="start `hub serving` on 127.0.0.1 for the run")
    p.add_argument("--module", default="chinese-electra-small")
    p.add_argument("--random-weights", action="store_true",
                   help="with --start: random full-size weights and the module installed, in temporary homes")
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=200)
    p.add_argument("--texts-per-request", type=int, default=1)
    p.add_argument("--sequential", type=int, default=50, help="requests of the one-at-a-time pass (0: skip)")
    p.add_argument("--timeout", type=float, default=300.0, help="per request, seconds")
    p.add_argument("--jsonl", help="append the summary to this JSON-lines file")
    args = p.parse_args(argv)
    if not args.url and not args.start:
        p.error("give --url of a running server, or --start")

    proc, workdir = None, None
    env = dict(os.environ)
    try:
        url = args.url
        if args.start:
            workdir = tempfile.mkdtemp(prefix="serving-load-")
            if args.random_weights:
                setup_random(args.module, workdir, env)
            port = free_port()
            print(f"starting the server on 127.0.0.1:{port} (log: {workdir}/server.log)", file=sys.stderr)
            proc = start_server(args.module, port, env, os.path.join(workdir, "server.log"))
            url = url or f"http://127.0.0.1:{port}/predict/{args.module}"
        seq, load = run_load(url, args.requests, args.concurrency, args.texts_per_request, args.timeout,
                             args.sequential)
    finally:
        if proc is not None:
            stop_server(proc)
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    summary = {"benchmark": "serving_load", "module": args.module, "url": url, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
               "texts_per_request": args.texts_per_request, "cpu_cores": len(os.sched_getaffinity(0)),
               "random_weights": args.random_weights, "sequential": seq, "load": load}
    print(json.dumps(summary, ensure_ascii=False, indent=2))
    if args.jsonl:
        with open(args.jsonl, "a", encoding="utf-8") as f:
            f.write(json.dumps(summary, ensure_ascii=False) + "\n")
    return 1 if load["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
