"""The grading child's side: enter the sandbox, then run one chapter's tests under the guard.

Runs in a process forked by `grader.scheduler` (through `grader.process.fork_child`,
which has already reset signals, made a process group and wired stdout/stderr to the
log pipe). Nothing of the student's is imported before `sandbox.enter` has applied the
limits, namespaces and the switch to the slot's unprivileged uid.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from grader import sandbox
from grader.paths import TESTS
from grader.process import run_pytest_main


@dataclass(frozen=True)
class ChildPlan:
    """Everything the child needs, fixed before the fork."""
    args: list[str]                 # pytest arguments (without the plugin list)
    workspace: sandbox.Workspace
    limits: sandbox.Limits
    isolation: sandbox.Isolation
    hide: list[Path]
    datasets: Path
    tests_root: Path
    skip: frozenset[str]            # tests already graded by an earlier run
    result_fd: int
    ack_fd: int
    parent: int                     # the grader's pid, to die with it


def run(plan: ChildPlan) -> int:
    forget_test_modules(plan.tests_root)
    ws = plan.workspace
    sandbox.enter(ws, plan.limits, plan.isolation, plan.hide,
                  sandbox.child_env(ws, plan.datasets), plan.parent)
    from grader.guard import Guard
    run_pytest_main(plan.args, [Guard(plan.result_fd, plan.ack_fd, plan.skip)])
    return 0


def forget_test_modules(tests_root: Path) -> None:
    """Drop modules imported from the instructor's tests folder (when grading from inside
    the project's own test run): the sandbox imports its own copy under the same names."""
    roots = {str(tests_root.resolve()), str(TESTS.resolve())}
    for name, module in list(sys.modules.items()):
        try:
            places = [getattr(module, "__file__", None) or ""]
            path = getattr(module, "__path__", None)
            if isinstance(path, list):
                places += path
            if any(isinstance(p, str) and p.startswith(r) for r in roots for p in places):
                del sys.modules[name]
        except Exception:  # noqa: BLE001 - odd module objects are not ours
            continue
