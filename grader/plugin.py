"""pytest plugin: chooses the implementation under test and records graded results.

Loaded by `-p grader.plugin` (pyproject's addopts does it for a plain `pytest`).

* `--impl exercises|solutions|PATH` picks the folder the chapter modules come from.
* Every chapter test carries `@pytest.mark.task("ch05.forward")` and
  `@pytest.mark.points(n)`; the chapter marker (`ch05`) is added from the task, and
  tests in `test_hidden*.py` files are marked `hidden`. Unknown tasks fail collection.
* The `impl` fixture is the chapter module of the implementation under test.
* Results (task, points, outcome and an instructive one-line message per test) are
  kept on the config as a `grader.results.RunResults`, so `grader check`, `grader grade` and the
  project's own suite read them directly instead of parsing pytest's output.
"""
from __future__ import annotations

import importlib.util
import json
import os
import random
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from grader.process import EXIT_NO_STUDENT, EXIT_STUDENT_GONE, collector_paused_for

# Before `grader.remote` imports torch: in a pytest started on its own, torch, and torchvision
# and torch's compiler stack if the tests import them, are imported as a warm-up imports
# them (`grader.process.warm_up`), without collections walking their objects.
collector_paused_for("torch", "torchvision", "torch._dynamo")

from grader import remote  # noqa: E402
from grader.paths import EXERCISES, SOLUTIONS, datasets_dir as resolve_datasets_dir
from grader.remote import ImplImportError, StudentProcessGone
from grader.results import NO_GPU, Outcome, RunResults, TestResult, counts, judge_skip
from grader.syllabus import ALL_TASKS, CHAPTERS


RESULTS_KEY = pytest.StashKey[RunResults]()
MODULES_KEY = pytest.StashKey[dict]()


# --------------------------------------------------------------------------- options

def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("grader", "PyTorch Practice grading")
    group.addoption("--impl", default="exercises",
                    help="where chapter modules come from: exercises, solutions, or a folder "
                         "holding chNN_*.py files (default: exercises)")
    group.addoption("--task", action="append", default=[], metavar="TASK",
                    help="run only the tests of this task, e.g. ch05.forward (repeatable)")
    group.addoption("--hidden-task", action="append", default=[], metavar="TASK",
                    dest="hidden_task",
                    help="run the hidden tests of this task only (repeatable); public tests all run")
    group.addoption("--datasets", default=None, metavar="DIR",
                    help="folder with the bundled data sets (default: the repository's datasets/)")
    group.addoption("--results-json", default=None, metavar="FILE",
                    help="write the graded results to FILE as JSON")
    group.addoption("--cpu-timeout", type=float, default=0.0, metavar="S",
                    help="fail a test that uses more than S seconds of CPU time (0: no limit; "
                         "POSIX only). Unlike a wall-clock limit, machine load does not change it")
    group.addoption("--allow-network", action="store_true", default=False,
                    help="let tests open network connections (blocked by default)")
    group.addoption("--reference-cache", default=None, metavar="DIR",
                    help="(grader grade) keep the tests' student-independent reference runs in "
                         "DIR, shared by every submission of the run (grader.testing.reference)")
    group.addoption("--student-fd", type=int, default=-1, metavar="FD",
                    help="(grader grade) the socket to the student's process: student code runs "
                         "there, never in this process")


def impl_dir(config: pytest.Config) -> Path:
    value = config.getoption("impl")
    if value in ("exercises", "solutions"):
        return EXERCISES if value == "exercises" else SOLUTIONS
    return Path(value).expanduser().resolve()


def datasets_dir(config: pytest.Config) -> Path:
    return resolve_datasets_dir(config.getoption("datasets"))


# --------------------------------------------------------------------------- configure

def pytest_configure(config: pytest.Config) -> None:
    for number in CHAPTERS:
        config.addinivalue_line("markers", f"ch{number}: chapter {number} ({CHAPTERS[number].title})")
    config.addinivalue_line("markers", "task(name): the graded task a test belongs to, e.g. task('ch05.forward')")
    config.addinivalue_line("markers", "points(n): points the test is worth")
    config.addinivalue_line("markers", "hidden: instructor-only test; lives in a test_hidden*.py file")
    config.addinivalue_line("markers", "gpu: needs CUDA; skipped where there is none")
    config.stash[RESULTS_KEY] = RunResults(impl=str(impl_dir(config)), device=_device_name())
    config.stash[MODULES_KEY] = {}
    config.pluginmanager.register(_CollectionErrors(config), "grader-collection-errors")
    if not config.getoption("allow_network"):
        block_network()
    limit_threads()
    if config.getoption("reference_cache"):
        import grader.testing
        grader.testing.REFERENCE_CACHE = Path(config.getoption("reference_cache"))
        share_rewritten_tests(grader.testing.REFERENCE_CACHE / "bytecode")
    # A demonstration that runs when imported (ch08's unguarded main()) stays short under test
    # and finds the bundled data wherever the submission lives.
    os.environ.setdefault("PRACTICE_EPOCHS", "1")
    os.environ.setdefault("PRACTICE_DATASETS", str(datasets_dir(config)))


def share_rewritten_tests(folder: Path) -> None:
    """(A judge of `grader grade`) keep the test modules pytest rewrites (for its assert
    messages) as bytecode in `folder`, inside the run's private cache, for the next judges:
    one rewrite per run instead of one per submission, whatever PYTHONDONTWRITEBYTECODE
    says, and nothing written beside the instructor's tests."""
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
    except OSError:
        return  # not shared: each judge rewrites, as it would anyway
    sys.pycache_prefix = str(folder)
    sys.dont_write_bytecode = False


def limit_threads() -> None:
    """One intra-op thread by default: reproducible timings, and parallel graders don't
    oversubscribe the cores. PRACTICE_THREADS overrides it."""
    import torch
    torch.set_num_threads(max(1, int(os.environ.get("PRACTICE_THREADS", "1"))))


def _device_name() -> str:
    try:
        import torch
        return "cuda" if torch.cuda.is_available() else "cpu"
    except Exception:  # pragma: no cover - torch is a hard dependency
        return "cpu"


class NetworkBlocked(OSError):
    pass


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def block_network() -> None:
    """Refuse every non-local socket connection: the course runs offline."""

    def guard(sock: socket.socket, address: Any) -> None:
        if sock.family == getattr(socket, "AF_UNIX", None):
            return
        raise NetworkBlocked(f"network access is blocked during tests (tried to connect to {address!r}); "
                             "everything the course needs is in datasets/")

    def connect(self, address):  # noqa: ANN001
        guard(self, address)
        return _real_connect(self, address)

    def connect_ex(self, address):  # noqa: ANN001
        guard(self, address)
        return _real_connect_ex(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]


def pytest_unconfigure(config: pytest.Config) -> None:
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]


# --------------------------------------------------------------------------- collection

def _chapter_dir(path: Path) -> str | None:
    """'05' for tests/ch05/test_x.py, else None."""
    parent = path.parent.name
    if parent.startswith("ch") and parent[2:] in CHAPTERS:
        return parent[2:]
    return None


def task_of(item: pytest.Item) -> str | None:
    mark = item.get_closest_marker("task")
    return str(mark.args[0]) if mark and mark.args else None


def points_of(item: pytest.Item) -> float:
    mark = item.get_closest_marker("points")
    return float(mark.args[0]) if mark and mark.args else 0.0


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    problems = []
    for item in items:
        chapter = _chapter_dir(Path(str(item.path)))
        if chapter is None:
            continue
        task = task_of(item)
        if task not in ALL_TASKS:
            problems.append(f"{item.nodeid}: task {task!r} is not a task of the syllabus "
                            f"(known for ch{chapter}: {', '.join(CHAPTERS[chapter].task_ids())})")
            continue
        if not task.startswith(f"ch{chapter}."):
            problems.append(f"{item.nodeid}: task {task} belongs to another chapter than ch{chapter}")
        if points_of(item) <= 0:
            problems.append(f"{item.nodeid}: needs @pytest.mark.points(n) with n > 0")
        hidden_file = Path(str(item.path)).name.startswith("test_hidden")
        if item.get_closest_marker("hidden") and not hidden_file:
            problems.append(f"{item.nodeid}: hidden tests must live in a test_hidden*.py file")
        item.add_marker(f"ch{chapter}")
        if hidden_file:
            item.add_marker("hidden")
    if problems:
        raise pytest.UsageError("badly marked chapter tests:\n  " + "\n  ".join(problems))

    wanted = set(config.getoption("task"))
    if wanted:
        unknown = wanted - ALL_TASKS
        if unknown:
            raise pytest.UsageError(f"unknown task(s): {', '.join(sorted(unknown))}")
        keep = [i for i in items if task_of(i) in wanted]
        drop = [i for i in items if task_of(i) not in wanted]
        if drop:
            config.hook.pytest_deselected(items=drop)
        items[:] = keep

    hidden_wanted = set(config.getoption("hidden_task"))
    if hidden_wanted:
        drop = [i for i in items if i.get_closest_marker("hidden") and task_of(i) not in hidden_wanted]
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = [i for i in items if i not in drop]

    if not torch_cuda_available():
        for item in items:
            if item.get_closest_marker("gpu"):
                item.add_marker(pytest.mark.skip(reason=NO_GPU))


def torch_cuda_available() -> bool:
    return _device_name() == "cuda"


# --------------------------------------------------------------------------- fixtures

def load_chapter_module(config: pytest.Config, number: str):
    """Import (once per session) the chapter module of the implementation under test, into
    this process (chapters without a probes.py, whose tests call student code directly)."""
    cache = config.stash[MODULES_KEY]
    if number not in cache:
        chapter = CHAPTERS[number]
        try:
            cache[number] = remote.import_chapter(impl_dir(config), chapter.filename, chapter.module)
        except ImplImportError as exc:
            cache[number] = exc
    module = cache[number]
    if isinstance(module, ImplImportError):
        raise module
    return module


CONNECTION_KEY = pytest.StashKey[remote.Connection]()


def judged(path: Path) -> bool:
    """A chapter whose tests run the student's code through probes (it has a probes.py):
    in `grader grade`, in a process of its own."""
    return (path.parent / "probes.py").is_file()


def student_connection(config: pytest.Config, tests_root: Path) -> remote.Connection:
    """The judge's connection to the student's code: the socket of --student-fd, else the
    student's side in this very process (through the same encoding)."""
    if CONNECTION_KEY not in config.stash:
        fd = config.getoption("student_fd")
        if fd >= 0:
            conn: remote.Connection = remote.SocketConnection(socket.socket(fileno=fd))
        else:
            loader = remote.ModuleLoader(impl_dir(config), tests_root)
            conn = remote.LocalConnection(remote.Server(loader.module, loader.probes, local=True))
        config.stash[CONNECTION_KEY] = conn
    return config.stash[CONNECTION_KEY]


def _chapter_of(request: pytest.FixtureRequest) -> str:
    task = task_of(request.node)
    chapter = task.split(".")[0][2:] if task else _chapter_dir(Path(str(request.node.path)))
    if chapter is None:
        raise pytest.UsageError(f"{request.node.nodeid}: the impl fixture needs a task marker")
    return chapter


@pytest.fixture
def student(request: pytest.FixtureRequest):
    """The student's side for this test (`remote.Student`): `.module`, `.probes`, `.seed(n)`.
    Each test starts the student's side afresh: objects of earlier tests are dropped and
    the student's generators seeded with 0."""
    path = Path(str(request.node.path))
    conn = student_connection(request.config, path.parent.parent)
    side = remote.Student(conn, _chapter_of(request))
    socket_mode = request.config.getoption("student_fd") >= 0
    side.begin(cpu=request.config.getoption("cpu_timeout") if socket_mode else 0.0)
    return side


@pytest.fixture
def probes(student):
    """The chapter's probes (tests/chNN/probes.py), run beside the student's code:
    `probes.name(*args)` calls `name(impl, *args)` there and returns plain data."""
    return student.probes


@pytest.fixture
def impl(request: pytest.FixtureRequest):
    """The chapter module under test (from --impl), for the chapter of the requesting test.
    In a chapter with a probes.py, a `remote.Remote` handle on it (see `student`)."""
    if judged(Path(str(request.node.path))):
        return request.getfixturevalue("student").module
    return load_chapter_module(request.config, _chapter_of(request))


@pytest.fixture
def device():
    """CUDA when available, else CPU."""
    import torch
    return torch.device(_device_name())


@pytest.fixture(name="datasets_dir")
def datasets_dir_fixture(request: pytest.FixtureRequest) -> Path:
    """The folder with the bundled data sets."""
    return datasets_dir(request.config)


@pytest.fixture(autouse=True)
def _fixed_seed():
    """Every test starts from the same random state, so runs are reproducible."""
    random.seed(0)
    try:
        import numpy as np
        np.random.seed(0)
    except ImportError:  # pragma: no cover
        pass
    import torch
    torch.manual_seed(0)
    yield


# --------------------------------------------------------------------------- results

def _student_frame(tb, path: Path | None = None) -> str:
    """' (at ch05_x.py:12 in forward)' for the innermost frame in a chapter module."""
    found = ""
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        name = Path(filename).name
        if (path is not None and Path(filename) == path) or (
                name.startswith("ch") and name.endswith(".py") and "tests" not in Path(filename).parts):
            found = f" (at {name}:{tb.tb_lineno} in {tb.tb_frame.f_code.co_name})"
        tb = tb.tb_next
    return found


def friendly_message(excinfo: pytest.ExceptionInfo | None, longrepr_text: str) -> str:
    """One instructive message for a failed test, without a traceback."""
    if excinfo is None:
        lines = [ln for ln in longrepr_text.strip().splitlines() if ln.strip()]
        return lines[-1] if lines else "failed"
    exc = excinfo.value
    if isinstance(exc, ImplImportError):
        return str(exc)
    where = exc.where if isinstance(exc, remote.RemoteError) else _student_frame(excinfo.tb)
    if isinstance(exc, StudentProcessGone):
        return "the process running your code ended during this test"
    if isinstance(exc, remote.ReplyError):
        return str(exc)
    if isinstance(exc, NotImplementedError):
        what = str(exc) or "a TODO"
        return f"not implemented yet: {what}{where}"
    if isinstance(exc, AssertionError):
        text = str(exc)
        head = text.split("\nassert ")[0].strip() if "\nassert " in text else text.strip()
        if head.startswith("assert "):  # a bare assert: pytest's explanation is all there is
            head = head.splitlines()[0]
        return head or "assertion failed"
    if type(exc).__name__ == "Failed" and str(exc).startswith("Timeout"):
        return (f"timed out ({str(exc).split(chr(10))[0].strip()}): is there an infinite loop, "
                "or far more work than the task needs?")
    if isinstance(exc, pytest.skip.Exception):
        return str(exc)
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    name = exc.remote_type if isinstance(exc, remote.RemoteError) else type(exc).__name__
    return f"{name}: {first}{where}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if call.excinfo is not None and isinstance(call.excinfo.value, StudentProcessGone) \
            and item.config.getoption("student_fd") >= 0:
        # The judge has no student left to ask: end without a verdict for this test; the
        # grader reads why the student's process ended and runs the rest in a fresh pair
        # (or, if it never started, marks the chapter for a regrade).
        sys.stdout.flush()
        sys.stderr.flush()
        never = isinstance(call.excinfo.value, remote.StudentNeverStarted)
        os._exit(EXIT_NO_STUDENT if never else EXIT_STUDENT_GONE)
    task = task_of(item)
    if task is None:
        return
    results = item.config.stash[RESULTS_KEY]
    entry = item.stash.get(_ENTRY_KEY, None)
    if entry is None:
        entry = TestResult(nodeid=item.nodeid, name=item.name, task=task, points=points_of(item),
                           hidden=item.get_closest_marker("hidden") is not None,
                           gpu=item.get_closest_marker("gpu") is not None,
                           outcome=Outcome.PASSED, message="")
        entry.counted = counts(entry.gpu, results.device)
        item.stash[_ENTRY_KEY] = entry
        results.tests.append(entry)
    entry.duration += report.duration
    if report.skipped and entry.outcome == Outcome.PASSED:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else "skipped"
        entry.outcome, entry.message = judge_skip(entry.counted, reason)
    elif report.failed and entry.outcome in (Outcome.PASSED, Outcome.SKIPPED):
        entry.outcome = Outcome.FAILED if report.when == "call" else Outcome.ERROR
        entry.details = report.longreprtext
        entry.message = friendly_message(call.excinfo, report.longreprtext)


_ENTRY_KEY = pytest.StashKey[TestResult]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """--cpu-timeout: a CPU-time alarm (ITIMER_PROF) around each test's setup, call and
    teardown. The grader also enforces the limit from outside, for code that disarms it."""
    limit = item.config.getoption("cpu_timeout")
    if item.config.getoption("student_fd") >= 0:
        limit = 0.0  # the judge: the student's process keeps the alarm (`remote.Server`)
    if not limit or not hasattr(signal, "ITIMER_PROF"):
        yield
        return

    def expired(signum, frame) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0)
        pytest.fail(f"Timeout: the test used more than {limit:g} s of CPU time", pytrace=False)

    previous = signal.signal(signal.SIGPROF, expired)
    signal.setitimer(signal.ITIMER_PROF, limit)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


class _CollectionErrors:
    """Keeps test files that failed to import on the config's results."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            last = report.longreprtext.strip().splitlines()[-1:] or ["collection failed"]
            self.config.stash[RESULTS_KEY].collection_errors.append(f"{report.nodeid}: {last[0]}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    results = session.config.stash[RESULTS_KEY]
    results.exitstatus = int(exitstatus)
    path = session.config.getoption("results_json")
    if path:
        tmp = Path(path).with_suffix(".tmp")
        tmp.write_text(json.dumps(results.to_dict(), indent=1))
        os.replace(tmp, path)


def results_of(config: pytest.Config) -> RunResults:
    return config.stash[RESULTS_KEY]

