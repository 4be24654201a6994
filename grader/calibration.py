"""How fast this machine runs the course's kind of work, to scale the default CPU limits.

The default limits (`grader.sandbox.Limits`) were set on the course's reference machine.
Before a cohort is graded, a fixed workload shaped like the chapters' tests (small
modules, autograd, an optimizer, one thread) is timed in CPU seconds, best of three; a
machine slower than the reference gets proportionally more CPU time, a faster one keeps
the defaults. CPU time, not wall time: a loaded machine measures the same as a quiet one.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

REFERENCE_SECONDS = 0.14    # the workload's CPU time on the reference machine (2 cores, x86_64)


@dataclass(frozen=True)
class Calibration:
    seconds: float          # CPU seconds of the workload here (best of three)
    factor: float           # >= 1: how much more CPU time limits get here (see `scale`)

    def describe(self) -> str:
        return (f"calibration: reference workload {self.seconds:.3f} s CPU here, "
                f"{REFERENCE_SECONDS:.3f} s on the reference machine: limits x{self.factor:.2f}")


def workload() -> None:
    """A ch05-sized training loop: a small network, autograd, SGD, 400 steps."""
    import torch
    torch.manual_seed(0)
    x = torch.linspace(0, 1, 64).unsqueeze(1)
    y = 3 * x + 1
    model = torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    loss_fn = torch.nn.MSELoss()
    for _ in range(400):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()


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


def scale(ratio: float) -> float:
    """Limits' factor for a measured speed ratio: 1 up to 1.5x slower (the measurement's own
    noise, and the margin the defaults already have), then in steps of 0.5, rounded up, so
    that two runs on one machine almost always agree."""
    if ratio < 1.5:
        return 1.0
    return math.ceil(ratio * 2) / 2
