"""Which time limit a running submission has exceeded, if any: the rule, apart from the loop.

Pure: it is given the CPU and wall-clock seconds the scheduler measured and says whether to
stop the child and why, so the policy reads (and is tested) on its own. CPU time is the
limit; wall-clock time only backs it up (see `grader.sandbox.Limits`), and a submission
graded again alone gets SOLO_FACTOR times the wall-clock backstops.
"""
from __future__ import annotations

from dataclasses import dataclass

from grader.sandbox import Limits

SOLO_FACTOR = 3.0   # wall-clock backstops when graded again alone: load from outside the
                    # grader remains, so more room (CPU limits are unchanged)


@dataclass(frozen=True)
class Stop:
    """Why the parent stopped a child: a time limit, measured from outside the child."""
    kind: str       # "test-cpu" | "test-wall" (the test in flight) | "cpu" | "wall" (the submission)
    reason: str
    load: float     # the 1-minute load average when it was hit

    @property
    def backstop(self) -> bool:
        """A wall-clock limit: machine load may have caused it."""
        return self.kind in ("test-wall", "wall")


def exceeded(limits: Limits, *, solo: bool, submission_cpu: float, test_cpu: float | None,
             test_wall: float, past_deadline: bool) -> tuple[str, str] | None:
    """(kind, reason) of the first limit exceeded, or None. `test_cpu` is None between tests."""
    factor = SOLO_FACTOR if solo else 1.0
    if submission_cpu > limits.cpu:
        return "cpu", f"used up its {limits.cpu:g} s of CPU time"
    if test_cpu is not None and test_cpu > limits.test_cpu_hard:
        return "test-cpu", (f"timed out: the test used more than {limits.test_cpu:g} s of CPU time: "
                            "is there an infinite loop, or far more work than the task needs?")
    if test_cpu is not None and test_wall > limits.test_wall * factor:
        return "test-wall", (f"stopped after {limits.test_wall * factor:g} s of waiting (wall clock) while "
                             f"using {test_cpu:.1f} s of CPU time: is the code sleeping or waiting for input?")
    if past_deadline:
        return "wall", f"stopped after the submission's wall-clock backstop of {limits.wall_backstop * factor:g} s"
    return None


def budget(limits: Limits) -> str:
    return (f"limits: {limits.test_cpu:g} s of CPU time per test, {limits.cpu:g} s per submission, "
            f"{limits.wall_backstop:g} s wall clock")
