"""Run a chapter's tests in a child forked from this (already warm) process.

Importing torch and starting pytest costs seconds; a child forked from a parent that
has done both once starts in milliseconds. The child runs `pytest.main` with the
grading plugin and sends its `Results` back over a pipe, then exits; the parent reads
them, enforces a wall-clock limit and kills the child's whole process group.
"""
from __future__ import annotations

import gc
import json
import os
import select
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from grader.plugin import ROOT, Results

# Plugins a chapter run needs, named explicitly because auto-loading is off in children.
PLUGINS = ("grader.plugin", "pytest_timeout")


def warm_up(vision: bool = True) -> None:
    """Import what every child needs, then freeze the heap so children's GC skips it.

    `vision=False` leaves torchvision to the chapters that import it (one check of one
    chapter gains nothing from importing it up front).
    """
    import numpy  # noqa: F401
    import pytest  # noqa: F401
    import torch  # noqa: F401
    import torch._dynamo  # noqa: F401 - the first optimizer imports it: ~2 s in every child otherwise
    if vision:
        import torchvision  # noqa: F401
    import grader.plugin  # noqa: F401
    import pytest_timeout  # noqa: F401
    gc.collect()
    gc.freeze()


@dataclass
class RunOutcome:
    results: Results
    exit_code: int | None = None     # pytest's exit code, None if the child died first
    error: str = ""                   # why there are no results (timeout, crash, ...)
    wall: float = 0.0
    log: str = ""                     # the child's captured stdout/stderr (truncated)
    extra: dict = field(default_factory=dict)


def chapter_test_args(chapter: str, impl: str | Path, *, tests_dir: Path | None = None,
                      tasks: Sequence[str] = (), public_only: bool = False,
                      extra: Sequence[str] = ()) -> list[str]:
    tests_dir = tests_dir or ROOT / "tests"
    # `--opt=value` in one word: pytest finds its rootdir and ini file before plugins add
    # their options, and would take a separate value for a test path.
    args = [str(tests_dir / f"ch{chapter}"), f"--impl={impl}", "-q", "-p", "no:cacheprovider",
            f"--rootdir={tests_dir.parent}", "-o", "console_output_style=classic"]
    for task in tasks:
        args.append(f"--task={task}")
    if public_only:
        args += ["-m", "not hidden"]
    return args + list(extra)


def run_pytest(args: Sequence[str], *, timeout: float | None = None, cwd: str | Path | None = None,
               log_limit: int = 64_000, before: Callable[[], None] | None = None) -> RunOutcome:
    """Fork, run pytest with `args` in the child, return its results.

    `before` runs in the child first (the cohort grader applies its sandbox there).
    """
    start = time.perf_counter()
    read_fd, write_fd = os.pipe()
    log_r, log_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        status = 70
        try:
            os.close(read_fd)
            os.close(log_r)
            os.setpgid(0, 0)
            os.dup2(log_w, 1)
            os.dup2(log_w, 2)
            os.close(log_w)
            # A parent under pytest has swapped sys.stdout/err for its capture objects.
            sys.stdout = open(1, "w", encoding="utf-8", errors="replace", closefd=False)
            sys.stderr = open(2, "w", encoding="utf-8", errors="replace", closefd=False)
            if cwd is not None:
                os.chdir(cwd)
            if before is not None:
                before()
            status = _child_main(list(args), write_fd)
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:  # noqa: BLE001 - the child is exiting anyway
                    pass
            os._exit(status)

    os.close(write_fd)
    os.close(log_w)
    payload, log, timed_out = _collect(pid, read_fd, log_r, timeout, log_limit)
    _kill_group(pid)
    _, wait_status = os.waitpid(pid, 0)
    _kill_group(pid)
    wall = time.perf_counter() - start
    text = log.decode("utf-8", "replace")
    if timed_out:
        return RunOutcome(Results(), None, f"took longer than {timeout:g} s in all and was stopped",
                          wall, text)
    try:
        data = json.loads(payload.decode("utf-8"))
        return RunOutcome(Results.from_dict(data["results"]), data["exit_code"], "", wall, text)
    except (ValueError, KeyError):
        return RunOutcome(Results(), None, _death_reason(wait_status), wall, text)


def _child_main(args: list[str], write_fd: int) -> int:
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    import pytest

    from grader.plugin import RESULTS_KEY

    class Grab:
        results: dict | None = None

        @pytest.hookimpl(trylast=True)
        def pytest_sessionfinish(self, session: pytest.Session) -> None:
            Grab.results = session.config.stash[RESULTS_KEY].to_dict()

    plugin_args = []
    for name in PLUGINS:
        plugin_args += ["-p", name]
    code = pytest.main(plugin_args + args, plugins=[Grab()])
    payload = json.dumps({"exit_code": int(code), "results": Grab.results or {}}).encode()
    view = memoryview(payload)
    while view:
        n = os.write(write_fd, view)
        view = view[n:]
    os.close(write_fd)
    return 0


def _collect(pid: int, read_fd: int, log_fd: int, timeout: float | None,
             log_limit: int) -> tuple[bytes, bytes, bool]:
    deadline = None if timeout is None else time.monotonic() + timeout
    payload, log = bytearray(), bytearray()
    open_fds = {read_fd, log_fd}
    while open_fds:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        if wait == 0.0:
            for fd in open_fds:
                os.close(fd)
            return bytes(payload), bytes(log), True
        ready, _, _ = select.select(list(open_fds), [], [], wait)
        for fd in ready:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                open_fds.discard(fd)
                os.close(fd)
            elif fd == read_fd:
                payload += chunk
            elif len(log) < log_limit:
                log += chunk[: log_limit - len(log)]
    return bytes(payload), bytes(log), False


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _death_reason(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        if sig == signal.SIGSEGV:
            return "the test process crashed with a segmentation fault (SIGSEGV)"
        if sig == signal.SIGKILL:
            return "the test process was killed (SIGKILL), most likely for using too much memory"
        return f"the test process died from signal {name}"
    if os.WIFEXITED(status):
        return (f"the test process exited early with status {os.WEXITSTATUS(status)} before reporting "
                "results (does the code call sys.exit() or os._exit()?)")
    return "the test process ended without reporting results"
