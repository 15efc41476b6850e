"""Several training processes (data parallel, paddle.distributed fleet in collective mode; gloo on
CPU, NCCL on GPU): what pretraining and fine-tuning share.

- `add_launch_arguments` / `relaunch`: `paddle-electra pretrain|finetune --nproc-per-node N` re-runs
  the same command in N processes through paddle.distributed.launch, with launch_worker.py as the
  per-process script (the launcher runs a file, not a module);
- `process_env`: this process's place in the job (the launcher's environment);
- `init_collective`: fleet.init, with gloo bound to the interface of the launcher's address on CPU.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import List, Tuple

WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launch_worker.py")


def add_launch_arguments(p):
    g = p.add_argument_group("processes (paddle.distributed.launch)")
    g.add_argument("--nproc-per-node", type=int, default=1,
                   help="start this many training processes on this machine through paddle.distributed.launch "
                        "(one per core is fastest on CPU)")
    g.add_argument("--launch-log-dir", help="the launcher's per-process logs (workerlog.<rank>)")


def launched() -> bool:
    """True in a process that paddle.distributed.launch started."""
    return "PADDLE_TRAINER_ID" in os.environ


def process_env() -> Tuple[int, int]:
    """(processes in the job, this one's rank): (1, 0) outside the launcher."""
    return int(os.environ.get("PADDLE_TRAINERS_NUM", "1")), int(os.environ.get("PADDLE_TRAINER_ID", "0"))


def relaunch(command: str, cli_argv: List[str], nproc: int, log_dir: str) -> int:
    """Run `paddle-electra COMMAND CLI_ARGV` (without the launch flags) in `nproc` processes; the
    launcher's exit code (it stops every process when one fails). On failure the failed processes'
    errors are printed last, so that the job ends with them."""
    launch_only = argparse.ArgumentParser(add_help=False)
    add_launch_arguments(launch_only)
    _, argv = launch_only.parse_known_args(cli_argv)
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc),
           "--log_dir", log_dir, WORKER_SCRIPT, command, *argv]
    print("$ " + " ".join(cmd), flush=True)
    code = subprocess.run(cmd).returncode
    if code:
        print(worker_errors(command, log_dir, nproc), end="", file=sys.stderr, flush=True)
    return code


def worker_errors(command: str, log_dir: str, nproc: int, lines: int = 15) -> str:
    """What the failed processes said: each one's `paddle-electra COMMAND: error: ...` line (the
    others then fail only because a peer is gone), else the end of every log holding a traceback."""
    logs = {}
    for rank in range(nproc):
        path = os.path.join(log_dir, f"workerlog.{rank}")
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                logs[path] = f.read().splitlines()
        except OSError:
            pass
    said = [f"{path}: {l}" for path, ls in logs.items() for l in ls if l.startswith(f"paddle-electra {command}: error:")]
    if said:
        return "\n".join(said) + "\n"
    return "".join(f"--- {path}, last lines:\n" + "\n".join(ls[-lines:]) + "\n"
                   for path, ls in logs.items() if any("Traceback" in l for l in ls))


def set_gloo_interface():
    """gloo (CPU collectives) binds the address the host name resolves to, often 127.0.0.1, which
    other hosts cannot reach; unless GLOO_SOCKET_IFNAME is set, point it at the interface holding the
    address the launcher gave this process (PADDLE_CURRENT_ENDPOINT)."""
    ip = os.environ.get("PADDLE_CURRENT_ENDPOINT", "").rpartition(":")[0]
    if os.environ.get("GLOO_SOCKET_IFNAME") or not ip or ip.startswith("127."):
        return
    import psutil
    for name, addrs in psutil.net_if_addrs().items():
        if any(a.address == ip for a in addrs):
            os.environ["GLOO_SOCKET_IFNAME"] = name
            return


def init_collective(device: str, strategy=None):
    """fleet.init(is_collective=True) once per process (gloo on CPU, NCCL on GPU)."""
    import paddle.distributed as dist
    from paddle.distributed import fleet
    if dist.is_initialized():
        return
    if device == "cpu":
        set_gloo_interface()
    fleet.init(is_collective=True, strategy=strategy)
