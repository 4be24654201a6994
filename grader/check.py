"""`grader check`: one chapter's tests against one implementation, as a per-task table.

This is the student's command, and it runs on their machine, where there is no adversary.
On Linux the tests run in a child forked from this (already warm) process, which sends its
results back over a pipe as JSON and exits (`run_pytest`). Where forking is missing (Windows)
or unsafe (macOS, whose system libraries may not survive a fork of a process that has loaded
torch), or when asked (`--no-fork`, PRACTICE_NO_FORK=1), pytest runs in a fresh interpreter
that writes its results to a JSON file (`run_pytest_subprocess`): portable, and slower by a
second interpreter's start (ch05 on the solutions: 2.44 s against 2.26 s forked, medians
here). Both give the same table. The cohort grader (`grader grade`) is the other
path: `grader.scheduler`.
"""
from __future__ import annotations

import importlib.util
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from grader import gpu
from grader.paths import EXERCISES, ROOT, SOLUTIONS, tests_dir as resolve_tests_dir
from grader.process import (can_fork, chapter_test_args, death_reason, fork_child, kill_group,
                            plugin_args, run_pytest_main, warm_up)
from grader.results import Outcome, RunResults, task_rows
from grader.syllabus import CHAPTERS, Chapter


@dataclass
class RunOutcome:
    results: RunResults
    exit_code: int | None = None     # pytest's exit code, None if the child died first
    error: str = ""                   # why there are no results (timeout, crash, ...)
    wall: float = 0.0
    log: str = ""                     # the child's captured stdout/stderr (truncated)


# --------------------------------------------------------------------------- running

def run_pytest(args: Sequence[str], *, timeout: float | None = None,
               log_limit: int = 64_000, split: tuple[Path, Path] | None = None) -> RunOutcome:
    """Fork, run pytest with `args` in the child, return its results.

    `split=(impl folder, tests root)`: the student's code runs in a second child, as in
    `grader grade` (without its sandbox), and the tests reach it through a socket."""
    start = time.perf_counter()
    student = 0
    keep_socket: set[int] = set()
    if split is not None:
        student, fd = _student_process(*split)
        args = [*args, f"--student-fd={fd}"]
        keep_socket = {fd}
    read_fd, write_fd = os.pipe()
    log_r, log_w = os.pipe()

    def child() -> int:
        from grader.plugin import RESULTS_KEY
        import pytest

        class Grab:
            results: dict | None = None

            @pytest.hookimpl(trylast=True)
            def pytest_sessionfinish(self, session: pytest.Session) -> None:
                Grab.results = session.config.stash[RESULTS_KEY].to_dict()

        code = run_pytest_main(args, [Grab()])
        _write_all(write_fd, json.dumps({"exit_code": code, "results": Grab.results or {}}).encode())
        os.close(write_fd)
        return 0

    pid = fork_child(child, keep={write_fd, *keep_socket}, output=log_w)
    os.close(write_fd)
    os.close(log_w)
    for fd in keep_socket:
        os.close(fd)
    try:
        payload, log, timed_out = _read_until(read_fd, log_r, timeout, log_limit)
    finally:
        kill_group(pid)
        _, wait_status = os.waitpid(pid, 0)
        kill_group(pid)
        if student:
            kill_group(student)
            os.waitpid(student, 0)
    wall = time.perf_counter() - start
    text = log.decode("utf-8", "replace")
    if timed_out:
        return RunOutcome(RunResults(), None, f"took longer than {timeout:g} s in all and was stopped",
                          wall, text)
    try:
        data = json.loads(payload.decode("utf-8"))
        return RunOutcome(RunResults.from_dict(data["results"]), data["exit_code"], "", wall, text)
    except (ValueError, KeyError):
        return RunOutcome(RunResults(), None, death_reason(wait_status), wall, text)


def _student_process(impl: Path, tests_root: Path) -> tuple[int, int]:
    """Fork the student's side (`grader.remote.serve`); returns its pid and the judge's end."""
    import socket

    from grader import remote
    judge_end, student_end = socket.socketpair()

    def serve() -> int:
        from grader import plugin
        from grader.paths import datasets_dir
        os.environ.setdefault("PRACTICE_EPOCHS", "1")  # as the plugin sets them for the tests
        os.environ.setdefault("PRACTICE_DATASETS", str(datasets_dir(None)))
        plugin.block_network()
        plugin.limit_threads()
        loader = remote.ModuleLoader(impl, tests_root)
        return remote.serve(student_end, remote.Server(loader.module, loader.probes))

    pid = fork_child(serve, keep={student_end.fileno()}, output=sys.stderr.fileno())
    student_end.close()
    return pid, judge_end.detach()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_until(read_fd: int, log_fd: int, timeout: float | None,
                log_limit: int) -> tuple[bytes, bytes, bool]:
    """Read the results and the log until both close (or the time is up)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    payload, log = bytearray(), bytearray()
    open_fds = {read_fd, log_fd}
    try:
        while open_fds:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if wait == 0.0:
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
    finally:
        for fd in open_fds:
            os.close(fd)
    return bytes(payload), bytes(log), False


# pytest's own exit statuses (0 passed ... 5 no tests collected): it ended normally.
PYTEST_EXIT_CODES = range(6)


def run_pytest_subprocess(args: Sequence[str], *, timeout: float | None = None,
                          log_limit: int = 64_000) -> RunOutcome:
    """Run pytest with `args` in a fresh interpreter, return its results.

    The portable path: only `subprocess`, a temporary folder and a timeout, so it behaves
    the same on Windows, macOS and Linux. The results come back through the plugin's
    `--results-json` file, and the output goes to a file rather than a pipe, so a chatty
    test can never block on a pipe nobody is reading."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="grader-check-", ignore_cleanup_errors=True) as tmp:
        results_file = Path(tmp) / "results.json"
        command = [sys.executable, "-m", "pytest", *plugin_args(), *args,
                   f"--results-json={results_file}"]
        with open(Path(tmp) / "output.log", "w+b") as log:
            code, timed_out = _wait_for(command, log, timeout)
            log.seek(0)
            text = log.read(log_limit).decode("utf-8", "replace")
        wall = time.perf_counter() - start
        if timed_out:
            return RunOutcome(RunResults(), None, f"took longer than {timeout:g} s in all and was stopped",
                              wall, text)
        if results_file.is_file():
            data = json.loads(results_file.read_text(encoding="utf-8"))
            return RunOutcome(RunResults.from_dict(data), code, "", wall, text)
    if code in PYTEST_EXIT_CODES:  # pytest stopped before its session finished (a usage error)
        return RunOutcome(RunResults(), code, "", wall, text)
    return RunOutcome(RunResults(), None, _exit_reason(code), wall, text)


def _wait_for(command: list[str], log, timeout: float | None) -> tuple[int | None, bool]:
    """Run `command` with its output to `log`; kill it when the time is up.
    Returns (exit status, timed out)."""
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            env=_child_env())
    try:
        return proc.wait(timeout=timeout), False
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None, True
    except BaseException:  # Ctrl-C: leave no test process behind
        proc.kill()
        proc.wait()
        raise


def _child_env() -> dict[str, str]:
    """This process's environment, for a pytest that loads exactly the grading plugins and
    imports this copy of `grader` (the one beside tests/ and exercises/) whatever the
    current folder; UTF-8 output, so a message with a non-ASCII character cannot crash a
    Windows console."""
    env = dict(os.environ)
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def _exit_reason(code: int | None) -> str:
    """Why a test process ended without reporting results, without POSIX-only calls."""
    if code is not None and code < 0:  # POSIX: killed by signal -code
        return f"the test process was stopped by signal {-code} before reporting results"
    return (f"the test process exited with status {code} before reporting results: does the code "
            "call sys.exit() or os._exit(), or crash Python?")


def fork_wanted(no_fork: bool = False) -> bool:
    """Fork only on Linux, and not when asked not to (`--no-fork`, PRACTICE_NO_FORK=1).

    Windows has no fork; on macOS a forked copy of a process that has loaded torch can hang
    or crash in Apple's libraries (Python itself stopped forking there by default)."""
    if no_fork or os.environ.get("PRACTICE_NO_FORK", "").strip() not in ("", "0"):
        return False
    return can_fork() and sys.platform.startswith("linux")


# --------------------------------------------------------------------------- the table

PUBLIC_ONLY_NOTE = "public tests only: the hidden tests run when your work is graded"


def format_check(chapter: Chapter, outcome: RunOutcome, verbose: bool = False,
                 chapter_tests: Path | None = None) -> str:
    """The per-task table and what to fix. `chapter_tests` (the chapter's test folder) lets
    the table say when only public tests exist, as in a student release, so the points are
    not mistaken for the grade."""
    results = outcome.results
    lines = [f"ch{chapter.number} {chapter.title} ({chapter.filename}, device {results.device})", ""]
    if outcome.error:
        lines.append(f"error: {outcome.error}")
        if verbose and outcome.log:
            lines += ["", outcome.log[-4000:]]
        return "\n".join(lines)
    rows = []
    for row in task_rows(chapter.number, results.tests):
        if row.failed:
            status = f"FAIL ({row.failed} of {row.total} tests)"
        elif row.skipped == row.total:
            status = "skipped"
        else:
            status = "ok" + (f" ({row.skipped} skipped)" if row.skipped else "")
        rows.append((row.task, row.earned, row.possible, status))
    width = max([len("task")] + [len(r[0]) for r in rows])
    lines.append(f"  {'task':{width}}  {'points':>9}  status")
    for task, earned, possible, status in rows:
        lines.append(f"  {task:{width}}  {earned:>4g} / {possible:<3g}  {status}")
    lines.append(f"  {'total':{width}}  {results.score:>4g} / {results.max_score:<3g}")
    if chapter_tests is not None and results.tests and hidden_tests_absent(results, chapter_tests):
        lines.append(f"\n{PUBLIC_ONLY_NOTE}")
    for err in results.collection_errors:
        lines.append(f"\nerror collecting tests: {err}")
    if not results.tests and not results.collection_errors:
        lines.append("\nno tests ran")
    failures = [t for t in results.tests if t.failed]
    if failures:
        lines += ["", "What to fix:"]
        seen = set()
        for t in failures:
            key = (t.task, t.message)
            if key in seen and not verbose:
                continue  # one import error or stub fails every test the same way
            seen.add(key)
            lines.append(f"  [{t.task}] {t.name}: {t.message}")
            if verbose and t.details:
                lines += ["", _indent(t.details), ""]
        if not verbose:
            lines.append("\n(-v shows the tracebacks)")
    return "\n".join(lines)


def hidden_tests_absent(results: RunResults, chapter_tests: Path) -> bool:
    """No hidden test ran and none exists: a student release, not a deselection."""
    return (not any(t.hidden for t in results.tests)
            and not any(chapter_tests.glob("test_hidden*.py")))


def _indent(text: str, prefix: str = "      ") -> str:
    return "\n".join(prefix + ln for ln in text.splitlines())


def passed(outcome: RunOutcome) -> bool:
    """Exit 0 only when tests ran and every one that counts passed."""
    results = outcome.results
    ran = [t for t in results.tests if t.outcome != Outcome.SKIPPED]
    return (not outcome.error and not results.collection_errors and bool(ran)
            and all(t.outcome == Outcome.PASSED for t in ran))


# --------------------------------------------------------------------------- the command

def cmd_check(args) -> int:
    from grader.cli import chapter_or_exit

    require_python()
    chapter = chapter_or_exit(args.chapter)
    tests_dir = resolve_tests_dir(args.tests)
    if not (tests_dir / f"ch{chapter}").is_dir():
        ready = sorted(p.name[2:] for p in tests_dir.glob("ch[0-9][0-9]") if p.is_dir())
        sys.exit(f"grader: chapter {chapter} has no tests yet in {tests_dir}; "
                 f"chapters with tests: {', '.join(ready) or 'none'}")
    impl = args.impl
    if impl not in ("exercises", "solutions"):
        impl = str(Path(impl).resolve())
        if not Path(impl).is_dir():
            sys.exit(f"grader: --impl {args.impl}: no such folder")
    elif not (EXERCISES if impl == "exercises" else SOLUTIONS).is_dir():
        sys.exit(f"grader: --impl {impl}: there is no {impl}/ folder here")
    require_packages()
    _tolerant_stdout()
    extra = ["--datasets", args.datasets] if args.datasets else []
    pytest_args = chapter_test_args(chapter, impl, tests_dir=tests_dir, tasks=args.task,
                                    public_only=args.public, extra=extra)
    forking = fork_wanted(getattr(args, "no_fork", False))
    split_wanted = bool(getattr(args, "split", False))
    if forking:
        warm_up(vision=False, children=2 if split_wanted else 1)
    if getattr(args, "require_gpu", False):
        require_gpu(forking)
    if forking:
        split = None
        if split_wanted:
            folder = {"exercises": EXERCISES, "solutions": SOLUTIONS}.get(impl, Path(impl))
            split = (folder, tests_dir)
        outcome = run_pytest(pytest_args, timeout=args.timeout, split=split)
    else:
        outcome = run_pytest_subprocess(pytest_args, timeout=args.timeout)
    print(format_check(CHAPTERS[chapter], outcome, verbose=args.verbose,
                       chapter_tests=tests_dir / f"ch{chapter}"))
    return 0 if passed(outcome) else 1


def require_gpu(forking: bool) -> None:
    """--require-gpu: CUDA started where the tests will run (a child of this warm process, or
    a fresh interpreter), or one line and exit 1 before any test runs."""
    report = gpu.probe_forked() if forking else gpu.probe_subprocess()
    if not report.ok:
        sys.exit(f"grader: --require-gpu: {report.error}")
    print(report.describe())


PYTHON_NEEDED = (3, 10)


def require_python() -> None:
    """One line instead of a traceback on a Python the course does not support (macOS
    still ships 3.9)."""
    if sys.version_info < PYTHON_NEEDED:
        sys.exit(f"grader: the course needs Python {PYTHON_NEEDED[0]}.{PYTHON_NEEDED[1]} or newer, "
                 f"this is {sys.version.split()[0]}: install one from https://www.python.org/downloads/ "
                 "and run `make setup` (or `python3 bootstrap.py`) with it")


def require_packages() -> None:
    """One line, not an import error from deep inside pytest, when the check runs in a Python
    where the course is not installed (most often: not the .venv's)."""
    missing = [name for name in ("torch", "pytest", "pytest_timeout")
               if importlib.util.find_spec(name) is None]
    if missing:
        sys.exit(f"grader: {', '.join(missing)} not installed in {sys.executable}: run `make setup` "
                 "and use the .venv's Python (`make check ch=05`, or .venv/bin/python -m grader check 05; "
                 r"on Windows .venv\Scripts\python -m grader check 05)")


def _tolerant_stdout() -> None:
    """A Windows console or pipe in a legacy code page cannot print every character of a
    message; replace what it cannot print rather than crash after the tests ran."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="replace")
        except (AttributeError, ValueError):
            pass
