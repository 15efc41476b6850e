"""Load test of `hub serving` for a chinese-electra module: N requests sent at once, latency percentiles;
or valid requests beside idle and slowloris connections held open (`--idle`, `--slowloris`).

    # against a running server
    python benchmarks/serving_load.py --url http://127.0.0.1:8866/predict/chinese-electra-small
    # or start one on loopback (python -m paddle_electra.hub serving start -m NAME), run, stop it;
    # --random-weights first writes full-size random weights (speed does not depend on their values)
    # and installs the module, both into temporary homes; --workers 2: the gunicorn server
    python benchmarks/serving_load.py --start --random-weights --module chinese-electra-small
    # hostile clients: 300 connections that never send a byte and 40 that send a request head one
    # line a second, each reopened when the server drops it, for 60 s; meanwhile --valid-clients
    # clients send {"data": [["你好"]]} one request after another (10 s timeout, as `curl -m 10`)
    python benchmarks/serving_load.py --start --random-weights --workers 2 --idle 300 --slowloris 40

Without --idle / --slowloris: first a sequential pass (one request at a time: the latency a lone
client sees), then `--requests` requests released together from `--concurrency` threads. A request
counts as an error unless it gets HTTP 200 and status "000". Prints a JSON summary and appends it to
--jsonl. Loopback only; every loop is bounded by a count or by --duration.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
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
    except urllib.error.HTTPError as e:
        err = f"HTTP {e.code}"
    except (OSError, ValueError, http.client.HTTPException) as e:
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


# --- hostile clients beside valid ones -----------------------------------------------------------------
class HeldConnections:
    """`idle` connections that never send a byte and `slow` ones that send a request head one header line
    every `interval` seconds and never finish it (slowloris), to host:port, from one thread. A connection
    the server closes (or answers) is counted and reopened at once, so that as many are held all along."""

    def __init__(self, host, port, path, idle, slow, interval):
        self.addr, self.interval = (host, port), interval
        self.head = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n".encode()
        self.kinds = ["idle"] * idle + ["slow"] * slow
        self.socks = [None] * len(self.kinds)
        self.next_line = [0.0] * len(self.kinds)
        self.lines = [0] * len(self.kinds)
        self.counts = {k: {"opened": 0, "closed_by_server": 0, "answered_by_server": 0, "refused": 0}
                       for k in ("idle", "slow")}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="held-connections", daemon=True)

    def _open(self, i):
        kind = self.kinds[i]
        try:
            s = socket.create_connection(self.addr, timeout=5)
        except OSError:
            self.counts[kind]["refused"] += 1
            self.socks[i] = None
            return
        s.setblocking(False)
        self.socks[i], self.lines[i] = s, 0
        self.next_line[i] = time.monotonic()
        self.counts[kind]["opened"] += 1

    def _dropped(self, i, answered):
        kind = self.kinds[i]
        self.counts[kind]["answered_by_server" if answered else "closed_by_server"] += 1
        try:
            self.socks[i].close()
        except OSError:
            pass
        self._open(i)

    def start(self):
        for i in range(len(self.kinds)):
            self._open(i)
        self._thread.start()

    def held(self):
        return sum(s is not None for s in self.socks)

    def _loop(self):
        while not self._stop.wait(0.05):
            now = time.monotonic()
            for i, s in enumerate(self.socks):
                if s is None:
                    self._open(i)
                    continue
                try:
                    data = s.recv(65536)
                    self._dropped(i, answered=bool(data))  # b"": the server closed it
                    continue
                except BlockingIOError:
                    pass
                except OSError:  # reset
                    self._dropped(i, answered=False)
                    continue
                if self.kinds[i] == "slow" and now >= self.next_line[i]:
                    line = self.head if self.lines[i] == 0 else b"X-Padding-%d: %s\r\n" % (self.lines[i], b"x" * 20)
                    try:
                        s.send(line)
                    except BlockingIOError:
                        pass
                    except OSError:
                        self._dropped(i, answered=False)
                        continue
                    self.lines[i] += 1
                    self.next_line[i] = now + self.interval

    def stop(self):
        self._stop.set()
        self._thread.join(10)
        for s in self.socks:
            if s is not None:
                s.close()


def raise_fd_limit(needed):
    """The soft limit of open files raised to `needed` (at most the hard limit); -> (old, new) soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        return soft, new
    return soft, soft


def run_held(url, idle, slow, interval, duration, clients, timeout):
    """Valid requests ({"data": [["你好"]]}, one after another from `clients` threads, for `duration`
    seconds) while `idle` + `slow` hostile connections are held; a request that fails counts with the
    time it took (a timeout: `timeout` seconds)."""
    from urllib.parse import urlsplit
    u = urlsplit(url)
    old, new = raise_fd_limit(idle + slow + clients + 256)
    if new != old:
        print(f"raised the open-file limit from {old} to {new} for {idle + slow} held connections", file=sys.stderr)
    body = {"data": [["你好"]]}
    for _ in range(3):  # warm-up: the first request builds the server's fast path
        post(url, body, 120)
    held = HeldConnections(u.hostname, u.port, u.path, idle, slow, interval)
    held.start()
    latencies, errors, lock = [], [], threading.Lock()
    end = time.monotonic() + duration

    def client():
        while time.monotonic() < end:
            lat, err = post(url, body, timeout)
            with lock:
                latencies.append(lat)
                if err:
                    errors.append(err)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    held_at_end = held.held()
    held.stop()
    valid = summarize(latencies, errors, wall)
    valid["clients"] = clients
    valid["error_examples"] = sorted(set(errors))[:5]
    return {"valid": valid, "idle": idle, "slowloris": slow, "slowloris_line_interval_s": interval,
            "duration_s": duration, "held_at_end": held_at_end, "hostile": held.counts,
            "open_file_limit": new}


def cpu_model():
    """'AMD EPYC (family 26 model 2)': the model name, and the family and model numbers (a virtual
    machine's name may not tell the generation)."""
    try:
        with open("/proc/cpuinfo") as f:
            info = dict(line.split(":", 1) for line in f.read().split("\n\n")[0].splitlines() if ":" in line)
    except OSError:
        return ""
    info = {k.strip(): v.strip() for k, v in info.items()}
    return f"{info.get('model name', '')} (family {info.get('cpu family', '?')} model {info.get('model', '?')})"


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
                    os.path.join(env["PADDLE_ELECTRA_HOME"], module)], env=env, check=True, stdout=sys.stderr)
    hub = os.path.join(os.path.dirname(sys.executable), "hub")
    subprocess.run([hub, "install", os.path.join(ROOT, "hub_modules", module.replace("-", "_"))],
                   env=env, check=True, stdout=subprocess.DEVNULL)


def start_server(module, port, env, log_path, timeout=300, config=None, extra=()):
    """`hub serving start -m module -p port`, or `-c config` (which names the port) when given."""
    log = open(log_path, "w")
    what = ["-c", config] if config else ["-m", module, "-p", str(port)]
    proc = subprocess.Popen([sys.executable, "-m", "paddle_electra.hub", "serving", "start", *what, *extra],
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
    p.add_argument("--timeout", type=float, default=None,
                   help="per request, seconds (default 300; 10 with --idle / --slowloris, as `curl -m 10`)")
    p.add_argument("--jsonl", help="append the summary to this JSON-lines file")
    p.add_argument("--workers", type=int, default=1,
                   help="with --start: gunicorn worker processes (1: the one-process server)")
    p.add_argument("--idle", type=int, default=0, help="connections held open that never send a byte")
    p.add_argument("--slowloris", type=int, default=0,
                   help="connections held open that send a request head one line at a time, never ending it")
    p.add_argument("--line-interval", type=float, default=1.0, help="seconds between a slowloris client's lines")
    p.add_argument("--duration", type=float, default=60.0,
                   help="with --idle / --slowloris: seconds of valid requests while they are held")
    p.add_argument("--valid-clients", type=int, default=2,
                   help="with --idle / --slowloris: clients sending valid requests one after another")
    args = p.parse_args(argv)
    if not args.url and not args.start:
        p.error("give --url of a running server, or --start")
    held = args.idle or args.slowloris
    timeout = args.timeout or (10.0 if held else 300.0)

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
            extra = ["--workers", str(args.workers)] if args.workers > 1 else []
            proc = start_server(args.module, port, env, os.path.join(workdir, "server.log"), extra=extra)
            url = url or f"http://127.0.0.1:{port}/predict/{args.module}"
        if held:
            result = run_held(url, args.idle, args.slowloris, args.line_interval, args.duration,
                              args.valid_clients, timeout)
        else:
            seq, load = run_load(url, args.requests, args.concurrency, args.texts_per_request, timeout,
                                 args.sequential)
            result = {"texts_per_request": args.texts_per_request, "sequential": seq, "load": load}
    finally:
        if proc is not None:
            stop_server(proc)
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    summary = {"benchmark": "serving_load", "module": args.module, "url": url, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
               "server": (f"{args.workers} gunicorn workers" if args.workers > 1 else "one process") if args.start
               else "given by --url", "cpu": cpu_model(), "cpu_cores": len(os.sched_getaffinity(0)),
               "random_weights": args.random_weights, **result}
    print(json.dumps(summary, ensure_ascii=False, indent=2))
    if args.jsonl:
        with open(args.jsonl, "a", encoding="utf-8") as f:
            f.write(json.dumps(summary, ensure_ascii=False) + "\n")
    return 1 if (result["valid"] if held else result["load"])["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
