"""Chapter 08, public tests: shapes, basic behaviour, and importing without training."""
import os
import select
import signal
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler

N_ROWS, N_FEATURES = 532, 7


@pytest.fixture
def diabetes_path(datasets_dir):
    return datasets_dir / "diabetes.csv.gz"


@pytest.mark.task("ch08.dataset")
@pytest.mark.points(2)
def test_dataset_length_and_sample_shapes(impl, diabetes_path):
    dataset = impl.DiabetesDataset(diabetes_path)
    assert len(dataset) == N_ROWS, \
        f"len(dataset) is {len(dataset)}, expected {N_ROWS} (one sample per row of the file)"
    sample = dataset[0]
    assert isinstance(sample, tuple) and len(sample) == 2, \
        "dataset[i] should return a tuple (features, label)"
    x, y = sample
    assert isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor), \
        f"dataset[i] returned ({type(x).__name__}, {type(y).__name__}): return tensors " \
        "(torch.from_numpy in __init__), not numpy arrays"
    assert x.shape == (N_FEATURES,), f"the features of one sample have shape {list(x.shape)}, expected [{N_FEATURES}]"
    assert y.shape == (1,), f"the label of one sample has shape {list(y.shape)}, expected [1]"


@pytest.mark.task("ch08.loader")
@pytest.mark.points(2)
def test_loader_defaults_follow_the_lecture(impl, diabetes_path):
    dataset = impl.DiabetesDataset(diabetes_path)
    loader = impl.make_loader(dataset)
    assert isinstance(loader, DataLoader), f"make_loader returned {type(loader).__name__}, expected a DataLoader"
    assert loader.batch_size == 32, f"the default batch size is {loader.batch_size}, expected 32"
    assert isinstance(loader.sampler, RandomSampler), "by default the loader should shuffle (shuffle=True)"
    assert loader.num_workers == 2, f"the default num_workers is {loader.num_workers}, expected 2"


@pytest.mark.task("ch08.loader")
@pytest.mark.points(1)
def test_loader_batch_shapes(impl, diabetes_path):
    dataset = impl.DiabetesDataset(diabetes_path)
    inputs, labels = next(iter(impl.make_loader(dataset, batch_size=16, shuffle=False, num_workers=0)))
    assert inputs.shape == (16, N_FEATURES) and labels.shape == (16, 1), \
        f"a batch of 16 has shapes {list(inputs.shape)} and {list(labels.shape)}, " \
        f"expected [16, {N_FEATURES}] and [16, 1]"


@pytest.mark.task("ch08.train")
@pytest.mark.points(2)
def test_train_returns_one_float_per_epoch(impl, diabetes_path):
    dataset = impl.DiabetesDataset(diabetes_path)
    loader = impl.make_loader(dataset, batch_size=64, shuffle=False, num_workers=0)
    model = nn.Sequential(nn.Linear(N_FEATURES, 1), nn.Sigmoid())
    history = impl.train_minibatch(model, loader, epochs=3, lr=0.01)
    assert isinstance(history, list) and len(history) == 3, \
        f"train_minibatch(epochs=3) should return a list of 3 numbers, got {type(history).__name__}" \
        + (f" of length {len(history)}" if hasattr(history, "__len__") else "")
    assert all(isinstance(v, float) for v in history), \
        "train_minibatch should return Python floats: add up loss.item(), not the loss tensor"


# Runs in a process of its own (see run_probe): makes any DataLoader iteration fail loudly,
# then imports the student's file by path under its module name (not as "__main__"), as the
# grader does.
IMPORT_PROBE = r"""
import importlib.util, sys
from torch.utils.data import DataLoader

class TrainedAtImport(BaseException):
    pass

def refuse(self):
    raise TrainedAtImport()

DataLoader.__iter__ = refuse
spec = importlib.util.spec_from_file_location("ch08_dataset_dataloader", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
try:
    spec.loader.exec_module(module)
except TrainedAtImport:
    sys.exit(3)
print("imported without training")
"""


def probe_env(datasets_dir):
    return {**os.environ, "PRACTICE_DATASETS": str(datasets_dir), "PRACTICE_EPOCHS": "1",
            "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def run_probe(code, path, datasets_dir, cwd, timeout):
    """Run the probe `code` as `python -c code path` would, in a process of its own.

    On Linux the process is a fork of this one: torch is imported already, which saves the
    seconds a fresh interpreter spends importing it, and the probe imports or runs the file
    anew, so nothing of this process's copy of the module carries over. DataLoader workers
    started with the `spawn` method are fresh interpreters either way. Elsewhere (no fork on
    Windows, fork unsafe with torch on macOS) it is a fresh interpreter.
    Returns a CompletedProcess; raises subprocess.TimeoutExpired after `timeout` s."""
    env = probe_env(datasets_dir)
    if not sys.platform.startswith("linux"):
        return subprocess.run([sys.executable, "-c", code, str(path)], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=timeout)
    return _forked_probe(code, str(path), env, Path(cwd), timeout)


def _forked_probe(code, path, env, cwd, timeout):
    """`run_probe` in a fork; the child holds a pipe open until it exits, so its end is an
    event to wait for (with `timeout` as the bound), not something to poll."""
    out, err = cwd / "probe.out", cwd / "probe.err"
    done_read, done_write = os.pipe()
    with open(out, "wb") as fout, open(err, "wb") as ferr:
        pid = os.fork()
        if pid == 0:
            os.close(done_read)
            _probe_child(code, path, env, cwd, fout.fileno(), ferr.fileno())
    os.close(done_write)
    try:
        finished = select.select([done_read], [], [], timeout)[0]
    finally:
        os.close(done_read)
    try:
        os.killpg(pid, signal.SIGKILL)  # its workers, if any are left; the group's leader is not reaped yet
    except ProcessLookupError:
        pass
    _, status = os.waitpid(pid, 0)
    if not finished:
        raise subprocess.TimeoutExpired([sys.executable, "-c", "<probe>", path], timeout)
    returncode = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
    return subprocess.CompletedProcess([sys.executable, "-c", "<probe>", path], returncode,
                                       out.read_text(errors="replace"), err.read_text(errors="replace"))


def _probe_child(code, path, env, cwd, out_fd, err_fd):
    """The forked probe: set up like `python -c code path` in `cwd` with `env`, run `code`,
    exit with the interpreter's status. Never returns into pytest."""
    status = 1
    try:
        os.setpgid(0, 0)  # the probe and its workers can be killed as one group
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        sys.stdout = open(1, "w", encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGALRM):
            signal.signal(sig, signal.SIG_DFL)
        os.chdir(cwd)
        os.environ.update(env)
        sys.argv = ["-c", path]
        sys.dont_write_bytecode = True
        exec(compile(code, "<probe>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
        status = 0
    except SystemExit as exc:
        status = _exit_status(exc)
    except BaseException:  # noqa: BLE001 - reported like an uncaught exception
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(status)


def _exit_status(exc):
    """What the interpreter makes of sys.exit(code): None is 0, a number is itself, anything
    else is printed to stderr and is 1."""
    if exc.code is None or isinstance(exc.code, int):
        return exc.code or 0
    print(exc.code, file=sys.stderr)
    return 1


@pytest.mark.task("ch08.guard")
@pytest.mark.points(2)
def test_importing_the_module_does_not_train(impl, datasets_dir, tmp_path):
    try:
        run = run_probe(IMPORT_PROBE, impl.__file__, datasets_dir, tmp_path, timeout=90)
    except subprocess.TimeoutExpired:
        raise AssertionError("importing the module did not finish within 90 s: it must only define "
                             "functions and classes; call main() under `if __name__ == \"__main__\":`") from None
    assert run.returncode != 3, (
        "importing the module started training (a DataLoader was iterated at import time): the "
        "module-level main() call runs whenever the file is imported, including by every DataLoader "
        "worker on Windows/macOS. Call main() only under `if __name__ == \"__main__\":`")
    last = (run.stderr.strip().splitlines() or ["no error output"])[-1]
    assert run.returncode == 0, f"importing the module in a Python process of its own failed: {last}"
