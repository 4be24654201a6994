"""Run `grader grade` / `grader merge` from the project's warm test process.

A fresh `grader` process spends seconds importing torch; a child forked from this
process (which `chapter_runs` has already warmed up) starts at once. The child runs the
command-line entry point with its output sent to files and reports its exit status.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torchvision  # noqa: F401 - imported once here rather than in every forked run

import grader.guard  # noqa: F401 - the tamper audit's reference identities, taken now
from grader.paths import ROOT
from grader.process import fork_child
from grader.sandbox import UID_BASE, processes_of


@dataclass
class GradeRun:
    code: int
    stdout: str
    stderr: str
    wall: float

    def explain(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.stdout[-4000:]}\n--- stderr\n{self.stderr[-4000:]}"


def start_cli(args: list[str], tmp: Path, before=None) -> tuple[int, Path, Path, float]:
    """Start `grader ARGS` in a forked child (after calling `before()` there, if given);
    returns (pid, stdout file, stderr file, start time)."""
    stamp = time.monotonic_ns()
    out, err = tmp / f"cli-{stamp}.out", tmp / f"cli-{stamp}.err"
    start = time.monotonic()
    fd_out = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    fd_err = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def child() -> int:
        try:
            if before is not None:
                before()
            from grader.cli import main
            return main(args)
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 2

    try:
        pid = fork_child(child, output=fd_out, errors=fd_err)
    finally:
        os.close(fd_out)
        os.close(fd_err)
    return pid, out, err, start


def wait_cli(started: tuple[int, Path, Path, float], timeout: float = 600) -> GradeRun:
    pid, out, err, start = started
    deadline = start + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"grader took longer than {timeout} s:\n{err.read_text(errors='replace')[-3000:]}")
        time.sleep(0.05)
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
    return GradeRun(code, out.read_text(errors="replace"), err.read_text(errors="replace"),
                    time.monotonic() - start)


def run_cli(args: list[str], tmp: Path, timeout: float = 600, before=None) -> GradeRun:
    """`grader ARGS` in a forked child; killed (and the test failed) after `timeout` s."""
    return wait_cli(start_cli(args, tmp, before), timeout)


def results(out: Path, student: str) -> dict:
    return json.loads((out / student / "results.json").read_text(encoding="utf-8"))


def grader_processes(grace: float = 15.0) -> list[int]:
    """Processes of any uid the cohort grader hands out (none should outlive a run).

    A killed process that held torch's large heap takes a moment to finish exiting on a
    busy machine, so only what is still there after `grace` seconds counts as left behind.
    """
    if os.geteuid() != 0:
        return []
    deadline = time.monotonic() + grace
    while True:
        found = [pid for uid in range(UID_BASE, UID_BASE + 8) for pid in processes_of(uid)]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def tree_hash(*folders: Path) -> dict[str, int]:
    """path -> hash of content, for checking that files were left alone."""
    out = {}
    for folder in folders:
        for p in sorted(folder.rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts:
                out[str(p)] = hash(p.read_bytes())
    return out


def hidden_lines(chapter: str = "05") -> list[str]:
    from grader.manifest import source_lines
    return source_lines(ROOT / "tests" / f"ch{chapter}")
