"""When a pretraining run stops other than at --max-steps: SIGTERM (preemption, the launcher), the
--max-minutes budget, and the --step-timeout watchdog for a lost peer; and the exit codes that say so."""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from typing import List, Optional

PREEMPTED_EXIT = 128 + signal.SIGTERM  # stopped by SIGTERM after saving: run the same command to resume
LOST_PEER_EXIT = 75  # --step-timeout passed with no step finished


@contextlib.contextmanager
def on_sigterm():
    """Within: SIGTERM (preemption, or the launcher stopping the job) is noted in the yielded list
    instead of killing the process, so that the loop saves a checkpoint and stops at the step's end."""
    got: List[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
    try:
        yield got
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_request(signalled, t_start: float, max_minutes: float, world: int) -> Optional[str]:
    """"sigterm", "max_minutes" or None, the same on every process (each step, when there are
    several, the flags are all-reduced, so that a SIGTERM to one host stops all at the same step)."""
    flags = [float(bool(signalled)), float(bool(max_minutes) and (time.time() - t_start) / 60 >= max_minutes)]
    if world > 1:
        import paddle
        import paddle.distributed as dist
        t = paddle.to_tensor(flags)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        flags = t.numpy().tolist()
    return "sigterm" if flags[0] else "max_minutes" if flags[1] else None


class Watchdog:
    """Ends the process (exit code LOST_PEER_EXIT) when no step finished for `timeout` seconds: a
    collective waiting for a process or host that is gone would otherwise wait forever (gloo has no
    timeout on CPU). `timeout` 0 = off."""

    def __init__(self, timeout: float, rank: int):
        self.timeout, self.rank = timeout, rank
        self._last = time.monotonic()
        self._done = threading.Event()

    def beat(self):
        self._last = time.monotonic()

    def __enter__(self):
        if self.timeout > 0:
            threading.Thread(target=self._watch, name="step-watchdog", daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._done.set()

    def _watch(self):
        while not self._done.wait(min(5.0, self.timeout / 4)):
            idle = time.monotonic() - self._last
            if idle > self.timeout:
                print(f"rank {self.rank}: no step finished for {idle:.0f} s (--step-timeout {self.timeout:g}): a "
                      f"process or host of the job is lost or stuck; exiting. The same command resumes from the "
                      f"newest checkpoint.", file=sys.stderr, flush=True)
                os._exit(LOST_PEER_EXIT)
