"""Run `grader grade` / `grader merge` from the project's warm test process.

A fresh `grader` process spends seconds importing torch; a child forked from this
process (which `chapter_runs` has already warmed up) starts at once. The child runs the
command-line entry point with its output sent to files and reports its exit status.

Waiting is event-driven (a pidfd for a process's exit, inotify for files appearing), with
a generous upper bound: a busy machine only makes the wait longer, never wrong.
"""
from __future__ import annotations

import ctypes
import json
import os
import pickle
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, TypeVar

import torchvision  # noqa: F401 - imported once here rather than in every forked run
from filelock import FileLock

import grader.guard  # noqa: F401 - the tamper audit's reference identities, taken now
import grader.accounting as accounting
import grader.sandbox as sandbox
from grader.paths import ROOT
from grader.process import fork_child

T = TypeVar("T")
UIDS_PER_RUN = 8  # the cohort grader's slots never reach this far above UID_BASE in these tests


@dataclass
class GradeRun:
    code: int
    stdout: str
    stderr: str
    wall: float

    def explain(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.stdout[-4000:]}\n--- stderr\n{self.stderr[-4000:]}"


def start_cli(args: list[str], tmp: Path, before=None, calibrate: bool = False) -> tuple[int, Path, Path, float]:
    """Start `grader ARGS` in a forked child (after calling `before()` there, if given);
    returns (pid, stdout file, stderr file, start time).

    Where this process is not root (a CI runner's ordinary user), `grader grade` runs with
    `--unsafe-limited`, as an instructor without root would: the tests of what the full
    sandbox adds are marked root-only.

    A `grader grade` given no CPU limits gets the default ones, given explicitly, unless
    `calibrate`: so it does not time the machine first (`grader.calibration`: 0.7 s of wall
    and 0.9 s of CPU time in a run of two submissions, measured here; 26 of the suite's
    runs skip it). The demo cohort's run calibrates, as an instructor's does, and so do
    the runs that give a limit of their own."""
    if args[:1] == ["grade"] and os.geteuid() != 0 and "--unsafe-limited" not in args and "--help" not in args:
        args = [*args, "--unsafe-limited"]
    if args[:1] == ["grade"] and not calibrate and not {"--timeout", "--cpu", "--help"} & set(args):
        from grader.sandbox import Limits
        args = [*args, "--timeout", f"{Limits.test_cpu:g}", "--cpu", f"{Limits.cpu:g}"]
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
    """The finished run of `start_cli`; killed (and the test failed) `timeout` s after its start."""
    pid, out, err, start = started
    if not wait_exit(pid, start + timeout - time.monotonic()):
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError(f"grader took longer than {timeout} s:\n{err.read_text(errors='replace')[-3000:]}")
    _, status = os.waitpid(pid, 0)
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
    return GradeRun(code, out.read_text(errors="replace"), err.read_text(errors="replace"),
                    time.monotonic() - start)


def run_cli(args: list[str], tmp: Path, timeout: float = 600, before=None, calibrate: bool = False) -> GradeRun:
    """`grader ARGS` in a forked child; killed (and the test failed) after `timeout` s."""
    return wait_cli(start_cli(args, tmp, before, calibrate), timeout)


def results(out: Path, student: str) -> dict:
    return json.loads((out / student / "results.json").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- waiting for events

def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when `pid` exits; None if it is already gone."""
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None


def wait_exit(pid: int, timeout: float) -> bool:
    """Whether `pid` exited (a zombie counts) within `timeout` s; it is not reaped."""
    fd = _pidfd(pid)
    if fd is None:
        return True
    try:
        return bool(select.select([fd], [], [], max(timeout, 0))[0])
    finally:
        os.close(fd)


def wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """The processes of `pids` still running after waiting up to `timeout` s for them all to exit.

    A killed process that held torch's large heap takes a moment to finish exiting on a busy
    machine; its pidfd says exactly when it has, so nothing waits longer than needed."""
    fds = {pid: fd for pid in pids if (fd := _pidfd(pid)) is not None}
    deadline = time.monotonic() + timeout
    try:
        poller = select.poll()
        for fd in fds.values():
            poller.register(fd, select.POLLIN)
        running = dict(fds)
        while running:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for fd, _ in poller.poll(left * 1000):
                poller.unregister(fd)
                running = {p: f for p, f in running.items() if f != fd}
        return sorted(running)
    finally:
        for fd in fds.values():
            os.close(fd)


_IN_CLOSE_WRITE, _IN_MOVED_TO, _IN_CREATE = 0x8, 0x80, 0x100


def wait_until(ready: Callable[[], bool], folder: Path, timeout: float) -> bool:
    """Wait (up to `timeout` s) until `ready()`, re-checking whenever an entry of `folder` is
    created, written or moved in (inotify); returns `ready()`'s last answer.

    The watch starts before the first check, so a change between the two is never missed."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1 failed")
    try:
        if libc.inotify_add_watch(fd, os.fsencode(folder), _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE) < 0:
            raise OSError(ctypes.get_errno(), f"cannot watch {folder}")
        deadline = time.monotonic() + timeout
        while not ready():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if select.select([fd], [], [], left)[0]:
                _drain(fd)
        return True
    finally:
        os.close(fd)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 65536):
            pass
    except BlockingIOError:
        pass


# --------------------------------------------------------------------------- processes and files

def run_uids() -> range:
    """The uids this test process's graders hand out: tests/project/conftest.py gives every
    test process a uid range of its own, so another grader on the machine never counts.
    Read at call time, from the module the grader itself reads it from."""
    return range(sandbox.UID_BASE, sandbox.UID_BASE + UIDS_PER_RUN)


def blas_thread_counts(script: str, env: dict[str, str] | None = None) -> dict[str | None, int]:
    """The thread count `script` prints last, run in a fresh interpreter with
    OPENBLAS_NUM_THREADS unset (None) and set to "2" (the control: numpy's BLAS threads,
    when asked for, start and show)."""
    counts: dict[str | None, int] = {}
    for asked in (None, "2"):
        child_env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
        child_env.update(env or {})
        if asked:
            child_env["OPENBLAS_NUM_THREADS"] = asked
        run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=child_env,
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        counts[asked] = int(run.stdout.split()[-1])
    return counts


def grader_processes(grace: float = 15.0) -> list[int]:
    """Processes of this run's grader uids still running after up to `grace` s.

    Killed processes are waited for by pidfd (not by sleeping); whatever is found is looked
    for again, so a process started meanwhile (a fork bomb's latest child) counts too."""
    if os.geteuid() != 0:
        return []
    deadline = time.monotonic() + grace
    while True:
        found = [pid for uid in run_uids() for pid in accounting.processes_of(uid)]
        left = deadline - time.monotonic()
        if not found or left <= 0:
            return found
        wait_gone(found, left)


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


# --------------------------------------------------------------------------- sharing between workers

def shared_by_workers(tmp_path_factory, name: str, build: Callable[[object], T]) -> T:
    """`build(tmp_path_factory)`, computed once per test run and shared by all its xdist workers.

    A module-scoped fixture runs once per worker, and grading a cohort takes half a minute:
    the first worker to ask grades under a file lock and stores the (picklable) result in
    the folder every worker of one run shares; the others wait for the lock and load it.
    A build that raises stores nothing (the next worker to ask tries again). Without xdist
    the run's own temporary folder is used, so nothing outlives the run."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    store = root / f"shared-{name}.pickle"
    with FileLock(root / f"shared-{name}.lock", timeout=900):
        if store.is_file():
            return pickle.loads(store.read_bytes())
        value = build(tmp_path_factory)
        part = store.with_suffix(".part")
        part.write_bytes(pickle.dumps(value))
        os.replace(part, store)
        return value
