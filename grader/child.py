"""The grading children's side: the student's process, and the judge that runs the tests.

Runs in processes forked by the zygote (through `grader.process.fork_child`, which has
already reset signals, made a process group and wired stdout/stderr to the log pipe).

* A chapter with a `probes.py` is judged (`grader.remote`): two processes joined by a
  socket. `serve_student` enters the sandbox and then serves requests with the student's
  code; the judge runs pytest on the instructor's tests and never imports or runs
  anything of the student's, so nothing the student's code does can reach a verdict.
  The judge is forked by the chapter's judge server after collection
  (`grader.judgeserver`), or where there is none by the zygote (`run_judge`).
* Otherwise `run` enters the sandbox and runs the chapter's tests under the guard, in one
  process with the student's code.

Nothing of the student's is imported before `sandbox.enter` has applied the limits,
namespaces and the switch to the slot's unprivileged uid.
"""
from __future__ import annotations

import os
import socket
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from grader import sandbox
from grader.process import run_on, run_pytest_main


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
    cpu: int | None = None          # the CPU its slot runs on (`process.slot_cpus`), if any


def plan_to_dict(args: list[str], ws: sandbox.Workspace, limits: sandbox.Limits,
                 isolation: sandbox.Isolation, hide: list[Path], datasets: Path, tests_root: Path,
                 skip: frozenset[str], cpu: int | None = None) -> dict:
    """A plan as plain data, to send to the zygote (the descriptors travel separately)."""
    return {"args": list(args), "workspace": [str(ws.path), ws.uid, ws.gid],
            "limits": asdict(limits), "isolation": asdict(isolation), "hide": [str(p) for p in hide],
            "datasets": str(datasets), "tests_root": str(tests_root), "skip": sorted(skip), "cpu": cpu}


def plan_from_dict(d: dict, result_fd: int, ack_fd: int, parent: int) -> ChildPlan:
    path, uid, gid = d["workspace"]
    isolation = dict(d["isolation"])
    isolation["reopen"] = [(top, list(paths)) for top, paths in isolation.get("reopen", [])]
    return ChildPlan(list(d["args"]), sandbox.Workspace(Path(path), int(uid), int(gid)),
                     sandbox.Limits(**d["limits"]), sandbox.Isolation(**isolation),
                     [Path(p) for p in d["hide"]], Path(d["datasets"]), Path(d["tests_root"]),
                     frozenset(d["skip"]), result_fd, ack_fd, parent, d.get("cpu"))


def run(plan: ChildPlan) -> int:
    run_on(plan.cpu)
    sandbox.set_thread_name("student")   # (as `ps` and `top` show it)
    # pytest (and print) write through copies of fds 1 and 2: student code that closes the
    # standard descriptors must not take the test session down with it.
    sys.stdout = open(os.dup(1), "w", encoding="utf-8", errors="replace")  # noqa: SIM115
    sys.stderr = open(os.dup(2), "w", encoding="utf-8", errors="replace")  # noqa: SIM115
    ws = plan.workspace
    sandbox.enter(ws, plan.limits, plan.isolation, plan.hide,
                  sandbox.child_env(ws, plan.datasets), plan.parent)
    from grader.guard import Guard
    run_pytest_main(plan.args, [Guard(plan.result_fd, plan.ack_fd, plan.skip)])
    return 0


def serve_student(plan: ChildPlan, sock_fd: int) -> int:
    """The student's process of a judged chapter: sandbox first, then serve the judge.
    Its output is line-buffered: the process is killed, not asked to exit, once the judge
    is done, and what the student's code printed must be in the log by then."""
    run_on(plan.cpu)   # its judge's CPU
    sandbox.set_thread_name("student")
    sys.stdout = open(os.dup(1), "w", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115
    sys.stderr = open(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115
    ws = plan.workspace
    sandbox.enter(ws, plan.limits, plan.isolation, plan.hide,
                  sandbox.child_env(ws, plan.datasets, {"PRACTICE_EPOCHS": "1"}), plan.parent)
    from grader import plugin, remote
    if not (plan.isolation.root and plan.isolation.network_namespace):
        plugin.block_network()
    plugin.limit_threads()
    loader = remote.ModuleLoader(ws.student, ws.tests)
    # The socket is moved to a high descriptor: student code that closes or reuses low
    # ones (1, 2, 3...) does not cut the line by accident.
    high = os.dup2(sock_fd, 1000) if sock_fd != 1000 else sock_fd
    if high != sock_fd:
        os.close(sock_fd)
    return remote.serve(socket.socket(fileno=high), remote.Server(loader.module, loader.probes))


class _HeldProgress:
    """The fallback judge's terminal, held as a judge server's is (`hold_progress`)."""

    def pytest_sessionstart(self, session) -> None:   # (the terminal reporter exists by now)
        from grader.judgeserver import hold_progress
        hold_progress(session.config)


def run_judge(plan: ChildPlan, sock_fd: int) -> int:
    """The judge of a judged chapter: the instructor's tests, with the student's code behind
    `--student-fd`. It runs with the grader's identity, outside the sandbox, reading only
    plain data from the student's process (`grader.remote`)."""
    run_on(plan.cpu)   # its student's CPU
    sandbox.set_thread_name("judge")
    # No --basetemp: pytest's tmpdir plugin is off in every chapter run (process.DISABLED), so
    # a judge makes no temporary folder, and a killed one leaves none behind.
    from grader.guard import Guard
    run_pytest_main([*plan.args, f"--student-fd={sock_fd}"],
                    [Guard(plan.result_fd, plan.ack_fd, plan.skip), _HeldProgress()])
    return 0
