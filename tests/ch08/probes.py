"""Chapter 08 probes: run beside the student's code, return plain data to the tests.

A probe is a function `name(impl, *args)`; `impl` is the student's chapter module. It may
build spies and callbacks (anything that has to run inside the student's process) and
returns numbers, strings, tensors, lists or dicts. It never holds an expected value: the
test compares. This file ships with the public tests.

The guard probes run the student's file in a process of their own, started from the
student's process, and report what they saw (exit status, whether a DataLoader was
iterated, the last lines of the error output). On Linux that process is a fork of the
student's process: torch is imported already, which saves the seconds a fresh interpreter
spends importing it, and the file is imported or run anew, so nothing of the copy already
imported carries over; under the `spawn` start method its DataLoader workers are forks as
well, started the way spawn starts them (`_spawn_by_fork`). Elsewhere (no fork on Windows,
fork unsafe with torch on macOS) it is a fresh interpreter, with spawn's own workers.
"""
import builtins
import io
import os
import select
import signal
import subprocess
import sys
import tempfile
import traceback
import types
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

try:
    from torch.utils.data._utils import signal_handling
except ImportError:  # pragma: no cover - a PyTorch without it
    signal_handling = None

TAIL_LINES, LINE_CHARS = 20, 300     # what comes back of a run's error output
SEARCH_BYTES = 1 << 20               # the head and the tail of it searched for markers


# --------------------------------------------------------------------------- data and loaders

def first_batch(impl, data, batch_size=None, shuffle=False):
    """The first batch of `data`: a loader as it is, or (with `batch_size`) a dataset in a
    DataLoader(data, batch_size=batch_size, shuffle=shuffle) built here."""
    loader = data if batch_size is None else DataLoader(data, batch_size=batch_size, shuffle=shuffle)
    return next(iter(loader))


def dataset_of_table(impl, table, index=None):
    """DiabetesDataset on a file holding `table` (written with np.savetxt, comma-separated,
    six decimals) in a fresh temporary folder: its len(), or with `index` dataset[index]."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "table.csv"
        np.savetxt(path, np.asarray(table), delimiter=",", fmt="%.6f")
        dataset = impl.DiabetesDataset(path)
        return len(dataset) if index is None else dataset[index]


def make_loader_keeping(impl, dataset, **kwargs):
    """make_loader(dataset, **kwargs) on the test's dataset: the loader (a handle for the
    test) and whether its .dataset is that very dataset object."""
    loader = impl.make_loader(dataset, **kwargs)
    return loader, getattr(loader, "dataset", None) is dataset


def train_and_weights(impl, model, loader, epochs, lr):
    """train_minibatch on `model` (a copy sent by the test): what it returned and the
    model's state_dict after training."""
    history = impl.train_minibatch(model, loader, epochs=epochs, lr=lr)
    return history, model.state_dict()


# --------------------------------------------------------------------------- the guard

# Makes any DataLoader iteration fail loudly (and leaves a mark that a student's
# `except BaseException` cannot take back), counts the DataLoaders built, then imports the
# file by path under its module name (not as "__main__"), as the grader does; once imported,
# writes to argv[4] the number of DataLoaders built and, one a line, "name TypeName" for
# every Dataset or DataLoader the module holds at its top level.
# argv: file, mark, module name, what was built.
IMPORT_SCRIPT = r"""
import importlib.util, sys
from torch.utils.data import DataLoader, Dataset

class TrainedAtImport(BaseException):
    pass

def refuse(self):
    open(sys.argv[2], "w").close()
    raise TrainedAtImport()

built = []
original_init = DataLoader.__init__

def counting_init(self, *args, **kwargs):
    built.append(1)
    original_init(self, *args, **kwargs)

DataLoader.__iter__ = refuse
DataLoader.__init__ = counting_init
spec = importlib.util.spec_from_file_location(sys.argv[3], sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
try:
    spec.loader.exec_module(module)
except TrainedAtImport:
    sys.exit(3)
held = [f"{name} {type(value).__name__}" for name, value in list(vars(module).items())
        if isinstance(value, (Dataset, DataLoader))]
with open(sys.argv[4], "w") as out:
    out.write("\n".join([str(len(built)), *held]))
"""

# Runs like a student on Windows or macOS typing `python ch08_....py`: the `spawn` start
# method, so every DataLoader worker starts afresh and executes the file again before it
# can unpickle the dataset; the file executed as __main__. The first DataLoader iterated
# with workers delivers one batch (the workers have started, executed the file and sent
# it), then the run stops: the guard is what is checked, not the training, which the
# tests of ch08.train check. Written to argv[2]: the DataLoaders iterated, their largest
# num_workers, and whether the run stopped at that batch (1) or the file ran to its end (0).
SPAWN_SCRIPT = r"""
import multiprocessing, runpy, sys
multiprocessing.set_start_method("spawn", force=True)
from torch.utils.data import DataLoader

class FirstBatchArrived(BaseException):
    pass

workers, reported = [], []
original_iter = DataLoader.__iter__

def report(stopped):
    if not reported:
        reported.append(stopped)
        with open(sys.argv[2], "w") as out:
            out.write(f"{len(workers)} {max(workers, default=0)} {stopped}")

def first_batch_then_stop(self):
    workers.append(self.num_workers)
    iterator = original_iter(self)
    if self.num_workers > 0:
        next(iterator)
        getattr(iterator, "_shutdown_workers", lambda: None)()
        report(1)
        raise FirstBatchArrived()
    return iterator

DataLoader.__iter__ = first_batch_then_stop
try:
    runpy.run_path(sys.argv[1], run_name="__main__")
except FirstBatchArrived:
    pass
except SystemExit as exc:
    if exc.code in (None, 0):
        report(0)
    raise
else:
    report(0)
"""


def import_in_own_process(impl, datasets_dir, timeout):
    """Import the student's file in a process of its own where iterating a DataLoader is
    refused. Returns timed_out, returncode (None after a time-out), trained_at_import (a
    DataLoader was iterated during the import), loaders_built (DataLoaders built during the
    import, None if it did not finish), held (["name TypeName", ...]: the Datasets and
    DataLoaders at the module's top level) and stderr_tail (its last lines)."""
    with tempfile.TemporaryDirectory() as folder:
        mark, built = Path(folder) / "trained", Path(folder) / "built"
        run = _run(IMPORT_SCRIPT, [impl.__file__, str(mark), impl.__name__, str(built)], datasets_dir,
                   Path(folder), timeout, markers=())
        run["trained_at_import"] = mark.exists()
        lines = built.read_text().splitlines() if built.is_file() else []
        run["loaders_built"] = int(lines[0]) if lines else None
        run["held"] = lines[1:]
        return run


def run_as_script_under_spawn(impl, datasets_dir, timeout, markers=()):
    """Run the student's file as a script (`__main__`) with the `spawn` start method, whose
    workers execute the file again, until the first batch of a DataLoader with workers
    arrives. Returns timed_out, returncode (None after a time-out), finished (the run got
    that batch, or the file ran to its end), first_batch (it got that batch), loaders
    (DataLoaders iterated), workers (their largest num_workers), stderr_tail (the last lines
    of the error output) and stderr_has (for each of `markers`, whether the error output
    contains it)."""
    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder) / "loaders"
        run = _run(SPAWN_SCRIPT, [impl.__file__, str(result)], datasets_dir, Path(folder), timeout,
                   markers=markers, spawn_by_fork=True)
        fields = result.read_text().split() if result.is_file() else []
        run["finished"] = len(fields) == 3
        run["loaders"], run["workers"], run["first_batch"] = \
            (int(fields[0]), int(fields[1]), fields[2] == "1") if len(fields) == 3 else (0, 0, False)
        return run


def _run(script, argv, datasets_dir, folder, timeout, markers, spawn_by_fork=False):
    """Run `script` as `python -c script *argv` would, in `folder`, in a process of its own
    (see the module's docstring); observe how it ended and what it wrote to stderr."""
    env = {"PRACTICE_DATASETS": str(datasets_dir), "PRACTICE_EPOCHS": "1",
           "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    err = folder / "stderr"
    if sys.platform.startswith("linux"):
        returncode = _forked(script, argv, env, folder, err, timeout, spawn_by_fork)
    else:
        with open(err, "wb") as ferr:
            try:
                returncode = subprocess.run([sys.executable, "-c", script, *argv], cwd=folder,
                                            env={**os.environ, **env}, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=ferr,
                                            timeout=timeout).returncode
            except subprocess.TimeoutExpired:
                returncode = None
    head, tail = _ends(err)
    lines = [line[:LINE_CHARS] for line in tail.decode("utf-8", "replace").strip().splitlines()]
    text = (head + b"\n" + tail).decode("utf-8", "replace")
    return {"timed_out": returncode is None, "returncode": returncode,
            "stderr_tail": lines[-TAIL_LINES:], "stderr_has": {m: m in text for m in markers}}


def _ends(path):
    """The first and the last SEARCH_BYTES of a file (the tail is the whole of a small one)."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(0)
        head = f.read(SEARCH_BYTES) if size > SEARCH_BYTES else b""
        f.seek(max(0, size - SEARCH_BYTES))
        return head, f.read()


def _forked(script, argv, env, folder, err, timeout, spawn_by_fork):
    """`_run` in a fork; the child holds a pipe open until it exits, so its end is an event
    to wait for (with `timeout` as the bound), not something to poll. Returns the exit
    status (minus the signal's number when killed), None after a time-out."""
    done_read, done_write = os.pipe()
    with open(err, "wb") as ferr:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        pid = os.fork()
        if pid == 0:
            os.close(done_read)
            _child(script, argv, env, folder, ferr.fileno(), done_write if spawn_by_fork else None)
    os.close(done_write)
    try:
        finished = select.select([done_read], [], [], timeout)[0]
    finally:
        os.close(done_read)
    try:
        os.killpg(pid, signal.SIGKILL)  # its workers, if any are left; the group's leader is not reaped yet
    except (ProcessLookupError, PermissionError):
        pass
    _, status = os.waitpid(pid, 0)
    if not finished:
        return None
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)


def _child(script, argv, env, folder, err_fd, done_fd):
    """The forked process: set up like `python -c script *argv` in `folder` with `env`,
    run `script`, exit with the interpreter's status. Never returns into the caller."""
    status = 1
    try:
        os.setpgid(0, 0)  # the process and its workers can be killed as one group
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.dup2(err_fd, 2)
        sys.stdout = open(1, "w", encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
        try:
            signal.set_wakeup_fd(-1)
        except ValueError:
            pass
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGALRM, signal.SIGPROF):
            signal.signal(sig, signal.SIG_DFL)
        # as in a fresh interpreter, the first DataLoader with workers installs its SIGCHLD
        # handler, which reports a worker's death at once (instead of after a 5 s time-out)
        if hasattr(signal_handling, "_SIGCHLD_handler_set"):
            signal_handling._SIGCHLD_handler_set = False
        signal.setitimer(signal.ITIMER_PROF, 0)
        os.chdir(folder)
        os.environ.update(env)
        torch.set_num_threads(1)
        sys.argv = ["-c", *argv]
        sys.dont_write_bytecode = True
        if done_fd is not None:
            _spawn_by_fork(done_fd)
        exec(compile(script, "<probe>", "exec"), {"__name__": "__main__", "__builtins__": builtins})
        status = 0
    except SystemExit as exc:
        status = _exit_status(exc)
    except BaseException:  # noqa: BLE001 - reported like an uncaught exception
        traceback.print_exc()
    finally:
        _flush_and_exit(status)


def _exit_status(exc):
    """What the interpreter makes of sys.exit(code): None is 0, a number is itself, anything
    else is printed to stderr and is 1."""
    if exc.code is None or isinstance(exc.code, int):
        return exc.code or 0
    print(exc.code, file=sys.stderr)
    return 1


def _flush_and_exit(status):
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001 - exiting anyway
            pass
    os._exit(status)


def _spawn_by_fork(done_fd):
    """In the forked process: workers of the `spawn` start method come from fork too, yet
    start the way spawn's do. The parent runs spawn's preparation (which refuses to start
    a process while the current one is still bootstrapping) and pickles the preparation data
    and the process object as spawn does; the worker forgets the parent's __main__, as a
    fresh interpreter has none, and runs spawn's own bootstrap, which executes the file
    again as __mp_main__, module-level code and all, before it unpickles the process. Only
    the import of torch, done already, is saved."""
    from multiprocessing import context, popen_fork, popen_spawn_posix, process, reduction
    from multiprocessing import resource_tracker, spawn, util

    inherited = {"done": done_fd}   # the forked process's end of `_forked`'s pipe, closed in workers

    class Popen(popen_fork.Popen):
        method = "spawn"
        DupFd = popen_spawn_posix._DupFd   # descriptors reach the worker through the fork

        def duplicate_for_child(self, fd):
            return fd

        def _launch(self, process_obj):
            resource_tracker.getfd()
            prep_data = spawn.get_preparation_data(process_obj._name)
            data = io.BytesIO()
            context.set_spawning_popen(self)
            try:
                reduction.dump(prep_data, data)
                reduction.dump(process_obj, data)
            finally:
                context.set_spawning_popen(None)
            parent_r, child_w = os.pipe()
            child_r, parent_w = os.pipe()
            self.pid = os.fork()
            if self.pid == 0:
                code = 1
                try:
                    for fd in (parent_r, parent_w, inherited.pop("done", None)):
                        if fd is not None:
                            os.close(fd)
                    sys.modules["__main__"] = types.ModuleType("__main__")
                    process._children = set()
                    code = spawn._main(child_r, os.dup(child_r))
                except SystemExit as exc:
                    code = _exit_status(exc)
                except BaseException:  # noqa: BLE001 - a fresh interpreter prints it and exits with 1
                    traceback.print_exc()
                finally:
                    _flush_and_exit(code)
            os.close(child_w)
            os.close(child_r)
            self.sentinel = parent_r
            self.finalizer = util.Finalize(self, util.close_fds, (parent_r, parent_w))
            with open(parent_w, "wb", closefd=False) as pipe:
                pipe.write(data.getbuffer())

    context.SpawnProcess._Popen = staticmethod(Popen)
