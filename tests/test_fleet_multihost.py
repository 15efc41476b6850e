"""Pretraining on two hosts for real: two network namespaces joined by a veth pair stand for two
machines with their own addresses and interfaces; on each one `paddle.distributed.launch --nnodes 2
--master <host 1>:<port>` starts one process (gloo on CPU). Checked: both hosts train, the
parameters are identical on both ranks, the loss curve equals a one-host run with the same global
batch; a worker or a whole host lost mid-run stops the job on every rank within a bound, and the
same launch commands resume from the newest checkpoint to the same loss curve; SIGTERM to one
host's launcher (preemption) saves a checkpoint on every rank first.

Needs root and `ip` (iproute2): skipped with the reason otherwise. The addresses are from
198.18.0.0/15 (RFC 2544, benchmarking) and exist only inside the test's namespaces."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from test_pretraining_trainer import PY, ROOT, _args, _env, _losses, _run, _tiny_configs, data_dir  # noqa: F401

SCRIPT = os.path.join(ROOT, "pretrain", "run_pretraining.py")
ADDRS = ("198.18.0.1", "198.18.0.2")
LOSS_RTOL = 1e-4  # as test_two_processes_match_one_process_with_doubled_batch
DETECT_BOUND_S = 30.0  # a lost worker or host must stop the job on every rank within this


class Hosts:
    def __init__(self, tag):
        self.ns = (f"pe{tag}h1", f"pe{tag}h2")
        self.dev = (f"pe{tag}v1", f"pe{tag}v2")

    def pids(self, i):
        r = subprocess.run(["ip", "netns", "pids", self.ns[i]], capture_output=True, text=True)
        return [int(p) for p in r.stdout.split()]

    def kill_all(self, i, sig=signal.SIGKILL):
        for pid in self.pids(i):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass


def _ip(*args):
    subprocess.run(["ip"] + list(args), check=True, capture_output=True, text=True, timeout=30)


@pytest.fixture
def hosts():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if shutil.which("ip") is None:
        pytest.skip("no `ip` command (iproute2)")
    h = Hosts(os.getpid() % 100000)
    made = []
    try:
        try:
            for ns in h.ns:
                _ip("netns", "add", ns)
                made.append(ns)
            _ip("link", "add", h.dev[0], "type", "veth", "peer", "name", h.dev[1])
            for ns, dev, addr in zip(h.ns, h.dev, ADDRS):
                _ip("link", "set", dev, "netns", ns)
                _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
                _ip("-n", ns, "link", "set", dev, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except subprocess.CalledProcessError as e:
            pytest.skip(f"cannot make network namespaces here: {' '.join(e.cmd)}: {e.stderr.strip()}")
        yield h
    finally:
        for i, ns in enumerate(made):
            h.kill_all(i)
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


_PORTS = iter(range(29500 + os.getpid() % 1000, 65000, 7))


def _launch(h, i, port, args, log_dir):
    env = _env()
    env.pop("GLOO_SOCKET_IFNAME", None)  # the trainer finds the interface from the launcher's address
    cmd = ["ip", "netns", "exec", h.ns[i], PY, "-m", "paddle.distributed.launch", "--nnodes", "2",
           "--master", f"{ADDRS[0]}:{port}", "--rank", str(i), "--host", ADDRS[i], "--nproc_per_node", "1",
           "--log_dir", os.path.join(log_dir, f"host{i + 1}"), SCRIPT] + args
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait(procs, timeout):
    """Wait for all launchers; (exit codes, their outputs, seconds)."""
    t0 = time.time()
    outs = []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=max(1.0, timeout - (time.time() - t0)))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError(f"the launchers did not end within {timeout} s")
        outs.append(out)
    return [p.returncode for p in procs], outs, time.time() - t0


def _worker_log(log_dir, i):
    with open(os.path.join(log_dir, f"host{i + 1}", "workerlog.0"), errors="replace") as f:
        return f.read()


def _two_hosts(h, args, log_dir, timeout=240):
    port = next(_PORTS)
    procs = [_launch(h, i, port, args, log_dir) for i in range(2)]
    codes, outs, _ = _wait(procs, timeout)
    assert codes == [0, 0], "\n".join(o[-2500:] for o in outs) + _worker_log(log_dir, 0)[-2500:] + \
        _worker_log(log_dir, 1)[-2500:]
    return outs


def _state(out, step):
    with open(os.path.join(out, "checkpoints", f"checkpoint-{step:08d}", "trainer_state.json")) as f:
        return json.load(f)


def _assert_same_curve(got, want, steps):
    assert sorted(got) == list(range(1, steps + 1)), sorted(got)
    worst = max(abs(got[s] - want[s]) / abs(want[s]) for s in range(1, steps + 1))
    assert worst <= LOSS_RTOL, {s: (got[s], want[s]) for s in range(1, steps + 1)}
    return worst


def test_two_hosts_train_like_one_host(hosts, data_dir, tmp_path):  # noqa: F811
    disc, gen = _tiny_configs(str(tmp_path), dropout=0.0)
    steps = 6
    two = str(tmp_path / "two")
    t0 = time.time()
    _two_hosts(hosts, _args(data_dir, two, disc, gen, steps, 2, save=3), str(tmp_path / "logs"))
    seconds = time.time() - t0
    for i in range(2):  # both hosts trained, each on its own half of the examples
        assert f"rank {i}/2 reads examples" in _worker_log(str(tmp_path / "logs"), i)
    for step in (3, steps):
        state = _state(two, step)
        assert state["world_size"] == 2 and len(set(state["param_checksums"])) == 1, state["param_checksums"]
    one = str(tmp_path / "one")  # one host, one process, the same global batch and example ranges
    _run(_args(data_dir, one, disc, gen, steps, 4, save=3) + ["--data-ranges", "2"])
    worst = _assert_same_curve(_losses(two), _losses(one), steps)
    print(f"two hosts vs one host: max relative loss difference {worst:.2e} over {steps} steps; "
          f"two-host run {seconds:.1f} s")


def _wait_for_step(out, step, procs, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(p.poll() is not None for p in procs):
            raise AssertionError("a launcher ended early: " + " | ".join(p.communicate()[0][-2000:] for p in procs))
        if os.path.exists(os.path.join(out, "metrics.jsonl")) and max(_losses(out) or {0: 0}) >= step:
            return
        time.sleep(0.05)
    raise AssertionError(f"step {step} not reached in {timeout} s")


def _worker_pid(h, i):
    for pid in h.pids(i):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if any(c.endswith(b"run_pretraining.py") for c in cmd) and b"paddle.distributed.launch" not in cmd:
            return pid
    raise AssertionError(f"no worker process on host {i + 1}")


@pytest.mark.parametrize("lost", [pytest.param("worker process", marks=pytest.mark.slow),
                                  pytest.param("whole host", marks=pytest.mark.slow)])
def test_a_lost_worker_stops_every_rank_and_the_same_commands_resume(hosts, data_dir, tmp_path, lost):  # noqa: F811
    disc, gen = _tiny_configs(str(tmp_path), dropout=0.0)
    steps = 24
    out, logs = str(tmp_path / "run"), str(tmp_path / "logs")
    args = _args(data_dir, out, disc, gen, steps, 2, save=4)
    port = next(_PORTS)
    procs = [_launch(hosts, i, port, args, logs) for i in range(2)]
    _wait_for_step(out, 9, procs)  # checkpoints 4 and 8 are written
    t_kill = time.time()
    if lost == "worker process":
        os.kill(_worker_pid(hosts, 1), signal.SIGKILL)
    else:  # every process of host 2: its launcher and its worker
        hosts.kill_all(1)
    codes, outs, _ = _wait(procs, 120)
    detect = time.time() - t_kill
    killed_at = max(_losses(out))
    assert killed_at < steps, "the run finished before the kill"
    assert codes[0] != 0 and detect <= DETECT_BOUND_S, (codes, detect)
    print(f"{lost} killed at step {killed_at}: every launcher ended {detect:.1f} s later (exit codes {codes})")

    _two_hosts(hosts, args, logs)  # the same commands again
    assert "resumed from" in _worker_log(logs, 0)
    one = str(tmp_path / "one")
    _run(_args(data_dir, one, disc, gen, steps, 4, save=steps) + ["--data-ranges", "2"])
    worst = _assert_same_curve(_losses(out), _losses(one), steps)
    print(f"resumed run vs uninterrupted one-host run: max relative loss difference {worst:.2e}")


@pytest.mark.slow  # kept out of the default run's 10 minutes (make test-all runs it)
def test_sigterm_to_one_hosts_launcher_saves_on_every_rank(hosts, data_dir, tmp_path):  # noqa: F811
    disc, gen = _tiny_configs(str(tmp_path), dropout=0.0)
    steps = 400
    out, logs = str(tmp_path / "run"), str(tmp_path / "logs")
    args = _args(data_dir, out, disc, gen, steps, 2, save=1000)
    port = next(_PORTS)
    procs = [_launch(hosts, i, port, args, logs) for i in range(2)]
    _wait_for_step(out, 3, procs)
    t_term = time.time()
    launcher2 = [pid for pid in hosts.pids(1) if pid != _worker_pid(hosts, 1)]
    for pid in launcher2:  # preemption of host 2: its launcher is told to stop
        os.kill(pid, signal.SIGTERM)
    codes, outs, _ = _wait(procs, 120)
    stop = time.time() - t_term
    stopped = max(_losses(out))
    assert stopped < steps
    state = _state(out, stopped)  # saved at the step the job stopped at, not at --save-steps
    assert len(set(state["param_checksums"])) == 1
    log1 = _worker_log(logs, 0)
    assert f"stopped at step {stopped} (SIGTERM" in log1, log1[-3000:]
    assert all(c != 0 for c in codes), codes  # not finished: neither launcher reports success
    print(f"SIGTERM to host 2's launcher: checkpoint {stopped} on both ranks, launchers ended {stop:.1f} s later "
          f"(exit codes {codes})")


@pytest.mark.slow
def test_a_host_that_vanishes_is_detected_by_the_step_timeout(hosts, data_dir, tmp_path):  # noqa: F811
    disc, gen = _tiny_configs(str(tmp_path), dropout=0.0)
    out, logs = str(tmp_path / "run"), str(tmp_path / "logs")
    timeout = 10
    args = _args(data_dir, out, disc, gen, 100000, 2, save=1000) + ["--step-timeout", str(timeout)]
    port = next(_PORTS)
    procs = [_launch(hosts, i, port, args, logs) for i in range(2)]
    _wait_for_step(out, 3, procs)
    t_cut = time.time()
    _ip("-n", hosts.ns[1], "link", "set", hosts.dev[1], "down")  # the cable is cut: no reset, no FIN
    codes, outs, _ = _wait(procs, 120)
    detect = time.time() - t_cut
    assert timeout <= detect <= timeout + 15 and all(c != 0 for c in codes), (codes, detect)
    assert "no step finished for" in _worker_log(logs, 0)
    print(f"link cut: --step-timeout {timeout} ended every launcher {detect:.1f} s later (exit codes {codes})")


@pytest.mark.slow
def test_a_launcher_killed_alone_leaves_its_worker_training(hosts, data_dir, tmp_path):  # noqa: F811
    """SIGKILL to host 2's launcher only: its worker is not stopped (nothing tells it), so the job
    goes on and finishes; host 1's launcher reports success."""
    disc, gen = _tiny_configs(str(tmp_path), dropout=0.0)
    steps = 40
    out, logs = str(tmp_path / "run"), str(tmp_path / "logs")
    port = next(_PORTS)
    procs = [_launch(hosts, i, port, _args(data_dir, out, disc, gen, steps, 2, save=4), logs) for i in range(2)]
    _wait_for_step(out, 5, procs)
    worker = _worker_pid(hosts, 1)
    for pid in hosts.pids(1):
        if pid != worker:
            os.kill(pid, signal.SIGKILL)
    codes, _, _ = _wait(procs, 120)
    assert codes[0] == 0 and max(_losses(out)) == steps, codes
    print(f"launcher of host 2 SIGKILLed at step >= 5: the job finished all {steps} steps (exit codes {codes})")
