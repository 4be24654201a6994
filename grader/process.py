"""Processes: one way to fork a pytest child, and what the parent needs to manage it.

Importing torch and starting pytest costs seconds; a child forked from a parent that has
done both once (`warm_up`) starts in milliseconds. Both `grader check` (`grader.check`)
and `grader grade` (`grader.scheduler`, `grader.manifest`) fork their pytest children
through `fork_child`, with the same argument list (`pytest_args`), and read why a child
died from the same `death_reason`. POSIX only: where `os.fork` is missing (Windows),
`grader check` runs pytest in a fresh interpreter instead (`grader.check`).
"""
from __future__ import annotations

import contextlib
import gc
import importlib
import importlib.abc
import importlib.machinery
import json
import linecache
import os
import signal
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Callable, Collection, Iterator, Sequence

from grader.paths import TESTS

# Plugins a chapter run needs, named explicitly because auto-loading is off in children.
PLUGINS = ("grader.plugin", "pytest_timeout")
# pytest's unraisable-exception plugin runs gc.collect() five times as each session ends, a
# third of a small chapter's run in a process holding torch; an exception raised in a
# __del__ is still printed, by Python's own hook. The others serve no chapter test (no
# tmp_path, monkeypatch, caplog, recwarn, doctest, unittest or subtests there; a warning
# or a log line is still printed, and captured with the test's output): each one costs
# every run its import, its registration and its hooks around every test, about 15% of
# a small chapter's run.
DISABLED = ("unraisableexception", "logging", "warnings", "junitxml", "pastebin", "doctest",
            "legacypath", "stepwise", "setuponly", "setupplan", "recwarn", "monkeypatch",
            "tmpdir", "python_path", "unittest", "subtests")
CHILD_FAILED = 70   # exit status of a child whose own set-up failed (EX_SOFTWARE)


EXIT_STUDENT_GONE = 86   # a judge's exit status when the student's process has gone away
EXIT_NO_STUDENT = 87     # ... when it never started (its sandbox failed): the grader's failure

def can_fork() -> bool:
    return hasattr(os, "fork")


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection inside: importing torch and its compiler stack makes
    a million objects that live as long as the process, and the collections their
    allocations set off walk them again and again (0.17 s of a 1.8 s warm-up)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _CollectorPausedLoader(importlib.machinery.SourceFileLoader):
    """Runs a module's code with the collector paused (`paused_gc`), and freezes the heap
    before the collector resumes: resumed first, it would at once walk every object the
    import made, in the collection their allocations had set due."""

    def exec_module(self, module: ModuleType) -> None:
        with paused_gc():
            super().exec_module(module)
            gc.freeze()


class _CollectorPausedImports(importlib.abc.MetaPathFinder):
    """First on `sys.meta_path`: the first import of each of `names` runs as
    `_CollectorPausedLoader` runs it; every other import passes by."""

    def __init__(self, names: Collection[str]) -> None:
        self.pending = set(names)

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.pending:
            return None
        self.pending.discard(fullname)
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is None:
                continue
            if type(spec.loader) is not importlib.machinery.SourceFileLoader:
                return None   # not a plain source module: imported as any other
            spec.loader = _CollectorPausedLoader(spec.loader.name, spec.loader.path)
            return spec
        return None


def collector_paused_for(*names: str) -> None:
    """Import each of `names` (a package, with all it imports), whenever that first happens
    in this process, with the collector paused, and freeze the heap after it.

    What `warm_up` does for the processes it forks, for one that imports these itself: a
    pytest started on its own (`grader check --no-fork`, Windows and macOS), or a `grader
    check` child whose tests step an optimizer, which imports torch's compiler stack. Their
    million objects live as long as the process; imported with the collector running, the
    collections their allocations set off walk them again and again, and after it every
    full collection walks them once more. `grader check 05 --impl solutions`, medians of
    paired runs (`benchmarks/README.md`): forked, 2.49 -> 2.26 s with `cli.exit_at_once`;
    `--no-fork`, 3.68 -> 2.44 s. A freeze keeps, for the rest of the process, the cyclic
    garbage of that moment and what is alive then and becomes cyclic garbage later: at most
    three times (one per name), in a test process, a bounded amount."""
    pending = [name for name in names if name not in sys.modules]
    if pending and not any(isinstance(f, _CollectorPausedImports) for f in sys.meta_path):
        sys.meta_path.insert(0, _CollectorPausedImports(pending))


def warm_up(vision: bool = True, *, children: int = 2) -> None:
    """Import what every child needs, then freeze the heap so children's GC skips it.

    `vision=False` leaves torchvision to the chapters whose tests import it. `children=1`
    (`grader check`: one run, forked once) leaves torch's compiler stack to the child, which
    imports it only if its tests step an optimizer (0.9 s, with the collector paused:
    `collector_paused_for`, which the plugin sets up; chapters 01-04 never do).

    The collector stays off throughout (`paused_gc`), and the heap is frozen without a
    collection: the imports' few MB of cyclic garbage stay, shared by every child, instead
    of leaving holes among the live objects for each child's new objects to fill. Measured
    on 100 ch05 submissions, `grader grade --jobs 2`: 14.0 s with the collector on and a
    collection before freezing, 13.6 s without either; `grader check 05`: 2.26 -> 2.07 s."""
    with paused_gc():
        _warm_up(vision, children)


def one_blas_thread() -> None:
    """numpy's OpenBLAS starts a thread per core as it loads, each busy-waiting for work a
    while (about 50 ms of CPU time each here: a tenth of a second off a 2-core start when
    the grader and its zygote load it at once; cores - 1 threads in each on a large
    machine). The processes that grade compute on one thread (torch's: `limit_threads`),
    so numpy's does too. Effective before numpy loads; a value already set stands."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _warm_up(vision: bool, children: int) -> None:
    one_blas_thread()
    import numpy  # noqa: F401
    import pytest  # noqa: F401
    import torch  # noqa: F401
    if children > 1:
        import torch._dynamo  # noqa: F401 - the first optimizer step imports it: ~1 s in every child otherwise
        first_calls()
    if vision:
        import torchvision  # noqa: F401
    import grader.plugin  # noqa: F401
    import grader.testing  # noqa: F401 - the chapters' tests import it
    import pytest_timeout  # noqa: F401
    # pytest's own plugins that a session imports as it starts (and what they import: pdb,
    # for --pdb; tomllib, for ini files): 10 ms in every child otherwise
    import _pytest._argcomplete  # noqa: F401
    import _pytest.tracemalloc  # noqa: F401
    import pdb  # noqa: F401
    import tomllib  # noqa: F401
    import faulthandler  # noqa: F401
    from _pytest.config import default_plugins
    for name in default_plugins:
        if name not in DISABLED:
            importlib.import_module(f"_pytest.{name}")
    import torch.utils.serialization.config  # noqa: F401 - what torch.load imports on its first call
    quick_lazy_device_stacks()
    # Source lines cached by the imports (~40,000 of them): every test session clears the
    # cache (`grader.guard`), and freeing frozen objects in a forked child copies their pages.
    linecache.clearcache()
    gc.freeze()


MADV_HUGEPAGE, MADV_COLLAPSE = 14, 25
HUGE_PAGE = 2 << 20


def huge_static_data(min_size: int = 16 << 20) -> int:
    """Back the large anonymous regions other than the heap with huge pages, in the process
    that is forked for every submission (the zygote), once it has imported what it needs.
    Returns the MB moved (0 where the kernel cannot: before Linux 6.1, say).

    They are the static data of libraries that torch loads (cuBLAS's 81 MB, Triton's 47 MB
    here) and a few large allocations, written as they load and little after: a fork
    copies one page-table entry per 2 MB of them instead of 512, and the child's exit
    frees as many, so each submission's process costs less to make and to end. Measured
    here, forking a warm zygote for a short training loop: the fork 5.5 -> 3.8 ms of CPU
    time, the child 70 -> 63 ms (fewer entries to copy and free, fewer TLB misses), for
    about 0.45 s of CPU time once. The zygote runs this on a thread of its own as the
    tests are collected (`grader.zygote`), so the start does not wait for it; a region
    whose pages a child shares by then stays as it was. The heap is left alone: the
    zygote writes to it as it serves, and a write after a fork splits a huge page again."""
    if not sys.platform.startswith("linux"):
        return 0
    import ctypes
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        madvise = libc.madvise
        madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        with open("/proc/self/maps") as f:
            maps = f.read().splitlines()
    except (OSError, AttributeError):
        return 0
    moved = 0
    for line in maps:
        fields = line.split()
        if fields[1] != "rw-p" or len(fields) > 5:   # private, writable, anonymous, unnamed
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        start = -(-start // HUGE_PAGE) * HUGE_PAGE
        end = end // HUGE_PAGE * HUGE_PAGE
        if end - start < min_size:
            continue
        if madvise(start, end - start, MADV_HUGEPAGE) == 0 and madvise(start, end - start, MADV_COLLAPSE) == 0:
            moved += end - start
        # else: not on this kernel (EINVAL), not for this region (one that asked for no huge
        # pages, say), or no huge page free now (EAGAIN, ENOMEM): it stays as it was
    return moved >> 20


def first_calls() -> None:
    """A step of autograd and of the optimizers the chapters use (SGD, Adam), so that what
    torch sets up on first use (the optimizers' wrappers around torch's compiler stack
    among it) is inherited by every forked child instead of made again in each: 9 ms of a
    child's first training loop here. The random state is left as it was."""
    import torch
    with torch.random.fork_rng(devices=[]):
        model = torch.nn.Linear(2, 1)
        x = torch.ones(3, 2)
        for optimizer in (torch.optim.SGD, torch.optim.Adam):
            opt = optimizer(model.parameters(), lr=0.01)
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), torch.zeros(3, 1)).backward()
            opt.step()
            opt.load_state_dict(opt.state_dict())


class _Stack:
    """A stack as (code, instruction offset) pairs, its lines (`traceback.format_stack()`'s,
    without the source text) made only when it is read: `''.join(stack)`, as torch prints it."""
    __slots__ = ("frames",)

    def __init__(self, frames: list) -> None:
        self.frames = frames

    def __iter__(self) -> Iterator[str]:
        for code, offset in self.frames:
            line = next((n for start, end, n in code.co_lines() if start <= offset < end), None)
            yield f'  File "{code.co_filename}", line {line}, in {code.co_name}\n'


class _QuickTraceback:
    @staticmethod
    def format_stack(f=None, limit=None) -> _Stack:
        """`traceback.format_stack()`, read later if ever (a frame's line number costs a scan
        of its code's line table: 1 ms of a judge's run under pytest's deep stacks)."""
        frame, frames = f or sys._getframe(1), []
        while frame is not None and (limit is None or len(frames) < limit):
            frames.append((frame.f_code, frame.f_lasti))
            frame = frame.f_back
        frames.reverse()
        return _Stack(frames)


def quick_lazy_device_stacks() -> None:
    """Every `torch.manual_seed` also seeds CUDA, XPU and MTIA; before a device is
    initialised each of them queues the call with `traceback.format_stack()`, which reads
    every frame's source line: 0.5 ms a seed under pytest's deep stacks, a chapter's tests
    call it 40 to 70 times. The stack is only printed if the queued call later fails on a
    real device; here it keeps each frame's code and position, and the lines (file, line,
    function, no source text) are made if it is printed. Nothing about the devices changes."""
    import torch
    for name in ("cuda", "xpu", "mtia"):
        module = getattr(torch, name, None)
        if module is not None and getattr(getattr(module, "traceback", None), "format_stack", None):
            module.traceback = _QuickTraceback


def forget_test_modules(tests_root: Path) -> None:
    """Drop modules imported from the instructor's tests folder (a parent that has them:
    `grader grade` run from inside the project's own test run). The zygote does it once,
    as it starts, so that what it forks imports its own copies under the same names; in
    every child instead, it would read the ~2,400 modules' namespaces each time, and the
    reference counts it touches would copy about 3,500 shared pages per judge.
    Read from each module's own namespace, not with getattr: a module-level __getattr__
    (torch has several) is never run."""
    roots = (str(tests_root.resolve()), str(TESTS.resolve()))
    for name, module in list(sys.modules.items()):
        try:
            namespace = module.__dict__ if type(module) is ModuleType else vars(module)
        except Exception:  # noqa: BLE001 - odd module objects are not ours
            continue
        if type(namespace) is not dict:
            continue
        places = namespace.get("__file__")
        places = [places] if type(places) is str else []
        path = namespace.get("__path__")
        if type(path) is list:
            places += path
        if any(type(p) is str and p.startswith(roots) for p in places):
            del sys.modules[name]


# --------------------------------------------------------------------------- arguments

def plugin_args() -> list[str]:
    """The plugins as a command line names them (`python -m pytest ...`)."""
    args = []
    for name in PLUGINS:
        args += ["-p", name]
    return args + disabled_args()


def disabled_args() -> list[str]:
    args = []
    for name in DISABLED:
        args += ["-p", f"no:{name}"]
    return args


def chapter_test_args(chapter: str, impl: str | Path, *, tests_dir: Path | None = None,
                      tasks: Sequence[str] = (), public_only: bool = False,
                      hidden_tasks: Sequence[str] = (), extra: Sequence[str] = ()) -> list[str]:
    """pytest's arguments for one chapter's tests against `impl` (without `plugin_args`)."""
    tests_dir = tests_dir or TESTS
    # `--opt=value` in one word: pytest finds its rootdir and ini file before plugins add
    # their options, and would take a separate value for a test path.
    args = [str(tests_dir / f"ch{chapter}"), f"--impl={impl}", "-q", "-p", "no:cacheprovider",
            f"--rootdir={tests_dir.parent}", "-o", "console_output_style=classic"]
    for task in tasks:
        args.append(f"--task={task}")
    for task in hidden_tasks:
        args.append(f"--hidden-task={task}")
    if public_only:
        args += ["-m", "not hidden"]
    return args + list(extra)


def run_pytest_main(args: Sequence[str], plugins: Sequence[object] = ()) -> int:
    """In a child: pytest with exactly the grading plugins (no auto-loading).

    The plugins go in as modules, registered after `plugins` as `-p` would register them:
    each `-p NAME` reads the entry points of every installed distribution first, 6 ms of
    every session."""
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    import pytest
    modules = [importlib.import_module(name) for name in PLUGINS]
    return int(pytest.main(disabled_args() + list(args), plugins=[*plugins, *modules]))


# --------------------------------------------------------------------------- forking

def fork_child(body: Callable[[], int | None], *, keep: Collection[int] = (),
               output: int | None = None, errors: int | None = None) -> int:
    """Fork; the child runs `body` and exits with its status (CHILD_FAILED if it raised).

    In the child, before `body`, what `become_child` does. Returns the child's pid in the
    parent."""
    pid = fork_only()
    if pid:
        return pid
    status = CHILD_FAILED
    try:
        become_child(keep=keep, output=output, errors=errors)
        status = body() or 0
    except BaseException:  # noqa: BLE001 - reported on the child's output
        try:
            os.write(2, ("grader: the test process failed to start: " + traceback.format_exc()).encode())
        except BaseException:  # noqa: BLE001
            pass
    finally:
        flush_output()
        os._exit(status)


def flush_output() -> None:
    """Write what sys.stdout and sys.stderr hold (before a fork, a descriptor's switch or
    an `os._exit`); a stream that cannot be written is passed over."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed or broken stream: nothing to keep
            pass


def slot_cpus(slots: int) -> tuple[int, ...]:
    """The CPU each of `slots` grading slots runs on (`run_on`), one of this process's CPUs
    each, or () when there are fewer CPUs than slots (the kernel places every process).

    A judged chapter's two processes take turns: the judge asks, the student's process
    answers, 80 times for a ch05 submission. Each turn wakes the other process; on another
    core that costs more (a round trip of a small message between two processes took 58 us
    of CPU time on two cores of this virtual machine, 6 us on one), and the kernel moves
    the pair between the cores as they run. On a core of their own, the grading phase of
    100 ch05 submissions on 2 cores took 4.4% less time in 12 alternated rounds (medians
    8.73 s against 9.13 s; 10 of 12 rounds faster), and 2.7% less in another 10 (8.98 s
    against 9.22 s; 7 of 10 faster)."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):   # (no affinity outside Linux)
        return ()
    return tuple(allowed[-slots:]) if 0 < slots <= len(allowed) else ()


def run_on(cpu: int | None, everywhere: Collection[int] = ()) -> None:
    """Keep this process on `cpu`; None: on `everywhere` (if given), else as it is. A CPU
    that cannot be had (taken out of the machine's set since) leaves it as it is: where a
    process runs is speed, never a grade."""
    where = {cpu} if cpu is not None else set(everywhere)
    if not where or not hasattr(os, "sched_setaffinity"):
        return
    try:
        os.sched_setaffinity(0, where)
    except OSError:
        pass


def fork_only() -> int:
    """`os.fork()`, with this process's buffered output written first (else both copies
    would write it)."""
    flush_output()
    return os.fork()


def become_child(*, keep: Collection[int] = (), output: int | None = None,
                 errors: int | None = None) -> None:
    """In a freshly forked child: default handlers for SIGCHLD, SIGINT and SIGTERM, a
    process group of its own (so the parent can kill everything it starts), stdin from
    /dev/null, stdout and stderr to `output` (or /dev/null; stderr to `errors` if given),
    and every other descriptor closed except `keep`."""
    try:
        signal.set_wakeup_fd(-1)
    except ValueError:  # not the main thread
        pass
    for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    os.setpgid(0, 0)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull if output is None else output, 1)
    os.dup2(devnull if output is None and errors is None else
            output if errors is None else errors, 2)
    close_fds_except(set(keep))
    # A parent under pytest has swapped sys.stdout/err for its capture objects.
    sys.stdout = open(1, "w", encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115


def reaped() -> Iterator[tuple[int, int, float]]:
    """This process's children that have ended, reaped now: (pid, wait status, CPU seconds
    of the child and of what it waited for)."""
    while True:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, status, usage.ru_utime + usage.ru_stime


def exit_event(pid: int, status: int, cpu: float) -> bytes:
    """A child's end, as the zygote tells the grader (`grader.zygote`)."""
    return json.dumps({"pid": pid, "status": status, "cpu": cpu}).encode()


def close_fds_except(keep: set[int]) -> None:
    """Close every descriptor above 2 that is not in `keep`."""
    try:
        open_fds = sorted(int(name) for name in os.listdir("/proc/self/fd"))
    except OSError:  # no /proc: close the whole range around the kept ones
        top = max(keep | {2}) + 1
        for fd in range(3, top):
            if fd not in keep:
                try:
                    os.close(fd)
                except OSError:
                    pass
        os.closerange(top, 1 << 16)
        return
    for fd in open_fds:
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def death_reason(status: int, fsize_mb: int | None = None) -> str:
    """Why a test process ended without reporting all its results, for a student."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGSEGV:
            return "the test process crashed with a segmentation fault (SIGSEGV)"
        if sig == signal.SIGXFSZ:
            limit = f" larger than {fsize_mb} MB" if fsize_mb else " larger than allowed"
            return f"the code wrote a file{limit}"
        if sig == signal.SIGKILL:
            return "the test process was killed (SIGKILL), most likely for using too much memory"
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"the test process died from signal {name}"
    if os.WIFEXITED(status):
        return (f"the test process exited with status {os.WEXITSTATUS(status)} before reporting "
                "results: does the code call sys.exit() or os._exit()?")
    return "the test process ended without reporting results"


# --------------------------------------------------------------------------- output

class LogBuffer:
    """Keeps the first and the last bytes of a stream of any length."""

    def __init__(self, head: int = 16 << 10, tail: int = 16 << 10) -> None:
        self.head_limit, self.tail_limit = head, tail
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > 2 * self.tail_limit:
                del self.tail[: len(self.tail) - self.tail_limit]

    def text(self) -> str:
        tail = bytes(self.tail[-self.tail_limit:])
        dropped = self.total - len(self.head) - len(tail)
        middle = f"\n[... {dropped} bytes of output not kept ...]\n".encode() if dropped > 0 else b""
        return (bytes(self.head) + middle + tail).decode("utf-8", "replace")
