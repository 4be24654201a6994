"""How fast this machine runs the course's kind of work, to scale the default CPU limits.

The default limits (`grader.sandbox.Limits`) were set on the course's reference machine.
Before a cohort is graded, a fixed workload shaped like the chapters' tests (small
modules, autograd, an SGD update, one thread) is timed in CPU seconds, best of three; a
machine slower than the reference gets proportionally more CPU time, a faster one keeps
the defaults. CPU time, not wall time: a loaded machine measures the same as a quiet one.
"""
from __future__ import annotations

import gc
import json
import math
import os
import time
from dataclasses import asdict, dataclass

# The workload's CPU time on the reference machine (2 cores, x86_64): 0.14 s for the earlier
# workload (the same network, 400 steps of torch.optim.SGD), times what this one takes beside
# it (1.014: medians of 6 alternated runs, 0.0593 s against 0.0585 s), so that a machine gets
# the factor it got before.
REFERENCE_SECONDS = 0.142


@dataclass(frozen=True)
class Calibration:
    seconds: float          # CPU seconds of the workload here (best of three)
    factor: float           # >= 1: how much more CPU time limits get here (see `scale`)

    def describe(self) -> str:
        return (f"calibration: reference workload {self.seconds:.3f} s CPU here, "
                f"{REFERENCE_SECONDS:.3f} s on the reference machine: limits x{self.factor:.2f}")


def workload() -> None:
    """A ch05-sized training loop: a small network, autograd and an SGD update, 600 steps.
    The update is written out: torch.optim's first step imports torch's compiler stack (a
    second), which the calibration would otherwise wait for (`Beside`)."""
    import torch
    torch.manual_seed(0)
    x = torch.linspace(0, 1, 64).unsqueeze(1)
    y = 3 * x + 1
    model = torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    loss_fn = torch.nn.MSELoss()
    params = list(model.parameters())
    for _ in range(600):
        for p in params:
            p.grad = None
        loss = loss_fn(model(x), y)
        loss.backward()
        with torch.no_grad():
            for p in params:
                p.add_(p.grad, alpha=-0.05)


def calibrate(repeats: int = 3) -> Calibration:
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # as in every test process
    try:
        workload()             # first-call costs (dispatch tables, allocator) are not the machine's speed
        best = float("inf")
        for _ in range(repeats):
            start = time.process_time()
            workload()
            best = min(best, time.process_time() - start)
    finally:
        torch.set_num_threads(threads)
    return Calibration(round(best, 4), scale(best / REFERENCE_SECONDS))


class Beside:
    """`calibrate()` in a child forked now, while this process goes on (the zygote: importing
    what the tests need, on the other core). Needs only torch imported."""

    def __init__(self) -> None:
        from grader.process import fork_child
        self.read_fd, write_fd = os.pipe()
        try:
            self.pid = fork_child(lambda: _report(write_fd), keep={write_fd})
        finally:
            os.close(write_fd)

    def result(self) -> Calibration:
        chunks = []
        try:
            while chunk := os.read(self.read_fd, 4096):
                chunks.append(chunk)
        finally:
            os.close(self.read_fd)
            _, status = os.waitpid(self.pid, 0)
        if not chunks or status != 0:
            raise RuntimeError(f"the calibration process failed (wait status {status})")
        return Calibration(**json.loads(b"".join(chunks)))


def _report(fd: int) -> int:
    from grader.sandbox import die_with_parent
    die_with_parent()  # a process group of its own: the zygote's end would not take it down
    gc.enable()  # forked while the zygote imports with the collector off: measured as tests run
    os.write(fd, json.dumps(asdict(calibrate())).encode())
    return 0


def scale(ratio: float) -> float:
    """Limits' factor for a measured speed ratio: 1 up to 1.5x slower (the measurement's own
    noise, and the margin the defaults already have), then in steps of 0.5, rounded up, so
    that two runs on one machine almost always agree."""
    if ratio < 1.5:
        return 1.0
    return math.ceil(ratio * 2) / 2
