"""Chapter 08, public tests: the dataset against the lecture's file, the loader's settings,
the lecture's mini-batch loop, and the guard (importing the file builds and trains nothing;
the script runs with the `spawn` start method of Windows and macOS).

The loader and training tests use a TensorDataset of the lecture's table built here, so a
mistake in DiabetesDataset costs points in ch08.dataset only."""
import copy
import re

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler, TensorDataset

from grader.remote import ImplImportError, is_instance, type_name
from grader.testing import assert_close

N_ROWS, N_FEATURES = 532, 7
GUARD = ("call main() only when the file runs as a script, not when it is imported "
         "(the `__main__` guard of lecture 08)")
BOOTSTRAP = "bootstrapping phase"
_WHERE = re.compile(r" \(at [^()]+:\d+ in ([^()]+)\)$")


def explain_import_error(message):
    """The plugin's message for a file that fails to import, and, when the crash happened
    inside a function, that it is the import itself that ran it (a top-level main() call)."""
    match = _WHERE.search(message)
    if message.startswith("importing ") and match and match.group(1) != "<module>":
        return (f"{message}; it is the import that ran {match.group(1)}: code at the top level of the file, "
                "such as a main() call, runs whenever the file is imported, by these tests and by every "
                f"DataLoader worker on Windows/macOS: {GUARD}")
    return message


@pytest.fixture
def impl(student):
    """The student's module (a handle), with a failed import explained."""
    try:
        return student.module
    except ImplImportError as exc:
        raise ImplImportError(explain_import_error(str(exc))) from None


@pytest.fixture
def probes(student, impl):
    """The chapter's probes; a file that fails to import is reported as `impl` does."""
    return student.probes


_TABLES = {}


@pytest.fixture
def diabetes_path(datasets_dir):
    return datasets_dir / "diabetes.csv.gz"


@pytest.fixture
def table(diabetes_path):
    """The lecture's table, read here: float32 [532, 8], the label in the last column."""
    if diabetes_path not in _TABLES:
        _TABLES[diabetes_path] = np.loadtxt(diabetes_path, delimiter=",", dtype=np.float32)
    return _TABLES[diabetes_path]


def tensor_dataset(table):
    """The table as a TensorDataset (features [N, F], labels [N, 1]), independent of DiabetesDataset."""
    return TensorDataset(torch.from_numpy(table[:, :-1].copy()), torch.from_numpy(table[:, -1:].copy()))


# --------------------------------------------------------------------------- dataset

def check_length(n, table, what):
    rows, columns = table.shape
    if n == columns and n != rows:
        raise AssertionError(f"len(dataset) is {n} on {what}, the number of columns: __len__ must return "
                             f"the number of rows (samples), {rows}: xy.shape[0]")
    assert n == rows, f"len(dataset) is {n} on {what}, expected {rows} (one sample per row of the file): " \
                      "read the file given by path and keep its number of rows"


def check_sample(sample, table, i, what="the lecture's file"):
    """dataset[i] against row i of `table`, naming the usual mistakes."""
    assert isinstance(sample, (tuple, list)) and len(sample) == 2, \
        f"dataset[{i}] returned {type_name(sample)}: it should return a tuple (features, label)"
    x, y = sample
    assert isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor), \
        f"dataset[{i}] returned ({type_name(x)}, {type_name(y)}): return tensors " \
        "(convert the numpy arrays with torch.from_numpy in __init__)"
    assert x.dtype == torch.float32 and y.dtype == torch.float32, \
        f"dataset[{i}] returned {x.dtype} features and {y.dtype} labels, expected float32 like the model's " \
        "weights: read the file with dtype=np.float32"
    assert y.dim() != 0, ("the label of a sample is a 0-d tensor: keep the label column 2-D with "
                          "xy[:, [-1]], so a batch of labels is [B, 1] like the model's output")
    features = table.shape[1] - 1
    if x.numel() == table.shape[1]:
        raise AssertionError(f"the features of a sample have shape {list(x.shape)} on {what}: the label column "
                             "is included, take every column but the last, xy[:, :-1]")
    assert x.shape == (features,), \
        f"the features of a sample have shape {list(x.shape)} on {what}, expected [{features}]: every column " \
        "but the last (do not hard-code the number of columns)"
    assert y.shape == (1,), f"the label of a sample has shape {list(y.shape)}, expected [1]"
    if torch.allclose(y, torch.from_numpy(table[i, :1])) and not np.allclose(table[i, :1], table[i, -1:]):
        raise AssertionError("the label is taken from the first column: it is the last one, xy[:, [-1]]")
    assert_close(x, table[i, :-1], f"the features of sample {i} of {what}",
                 hint="the features are every column but the last, xy[:, :-1]")
    assert_close(y, table[i, -1:], f"the label of sample {i} of {what}", hint="the label is the last column")


@pytest.mark.task("ch08.dataset")
@pytest.mark.points(2)
def test_dataset_length_and_sample_shapes(impl, diabetes_path, table):
    dataset = impl.DiabetesDataset(diabetes_path)
    check_length(len(dataset), table, "the lecture's file")
    check_sample(dataset[0], table, 0)
    # main() standardises dataset.x_data: the attributes the docstring names
    x_data, y_data = getattr(dataset, "x_data", None), getattr(dataset, "y_data", None)
    assert isinstance(x_data, torch.Tensor) and isinstance(y_data, torch.Tensor), \
        "DiabetesDataset should keep its features in self.x_data and its labels in self.y_data, as tensors " \
        f"(found {type_name(x_data)} and {type_name(y_data)}): main() reads dataset.x_data"
    assert x_data.shape == (N_ROWS, N_FEATURES) and y_data.shape == (N_ROWS, 1), \
        f"self.x_data and self.y_data have shapes {list(x_data.shape)} and {list(y_data.shape)}, " \
        f"expected [{N_ROWS}, {N_FEATURES}] and [{N_ROWS}, 1]"


@pytest.mark.task("ch08.dataset")
@pytest.mark.points(1)
def test_dataset_samples_match_the_file(impl, probes, diabetes_path, table):
    dataset = impl.DiabetesDataset(diabetes_path)
    for i in (1, 2, N_ROWS - 1):
        check_sample(dataset[i], table, i)
    inputs, labels = probes.first_batch(dataset, batch_size=5, shuffle=False)
    assert labels.shape == (5, 1), \
        f"a DataLoader batch of labels has shape {list(labels.shape)}, expected [5, 1]: keep the label " \
        "2-D in __init__ (xy[:, [-1]]) so BCELoss gets the same shape as the model's output"
    assert_close(inputs, table[:5, :-1], "the first batch of features")


@pytest.mark.task("ch08.dataset")
@pytest.mark.points(1)
def test_dataset_reads_the_given_file(probes):
    # a small published example: 6 rows, 3 features and the label
    rng = np.random.default_rng(8)
    small = np.concatenate([rng.uniform(-1, 1, (6, 3)), rng.integers(0, 2, (6, 1))], axis=1)
    small = np.round(small, 6).astype(np.float32)  # as written to the file (np.savetxt, fmt="%.6f")
    check_length(probes.dataset_of_table(small), small, "a file of 6 rows and 4 columns")
    for i in (0, 5):
        check_sample(probes.dataset_of_table(small, index=i), small, i, "a file of 6 rows and 4 columns")


# --------------------------------------------------------------------------- loader

@pytest.mark.task("ch08.loader")
@pytest.mark.points(2)
def test_loader_defaults_follow_the_lecture(impl, table):
    loader = impl.make_loader(tensor_dataset(table))
    assert is_instance(loader, DataLoader), f"make_loader returned {type_name(loader)}, expected a DataLoader"
    assert loader.batch_size == 32, f"the default batch size is {loader.batch_size}, expected 32"
    assert is_instance(loader.sampler, RandomSampler), "by default the loader should shuffle (shuffle=True)"
    assert loader.num_workers == 2, f"the default num_workers is {loader.num_workers}, expected 2"


@pytest.mark.task("ch08.loader")
@pytest.mark.points(1)
def test_loader_passes_on_every_setting(impl, probes, table):
    dataset = tensor_dataset(table)
    loader, same_dataset = probes.make_loader_keeping(dataset, batch_size=16, shuffle=False, num_workers=0)
    assert is_instance(loader, DataLoader), f"make_loader returned {type_name(loader)}, expected a DataLoader"
    assert same_dataset, "the loader should read the dataset it is given"
    assert loader.batch_size == 16, \
        f"make_loader(batch_size=16) built a loader with batch_size={loader.batch_size}: pass batch_size on"
    assert is_instance(loader.sampler, SequentialSampler), \
        "make_loader(shuffle=False) built a shuffling loader: pass shuffle=shuffle on"
    assert loader.num_workers == 0, \
        f"make_loader(num_workers=0) built a loader with num_workers={loader.num_workers}: pass num_workers on"
    assert len(loader) == 34, \
        f"532 samples in batches of 16 make {len(loader)} batches, expected 34 (keep the last, smaller batch)"
    inputs, labels = probes.first_batch(loader)
    assert inputs.shape == (16, N_FEATURES) and labels.shape == (16, 1), \
        f"a batch of 16 has shapes {list(inputs.shape)} and {list(labels.shape)}, " \
        f"expected [16, {N_FEATURES}] and [16, 1]"
    assert_close(inputs, table[:16, :-1], "the first batch of an unshuffled loader",
                 hint="with shuffle=False the first batch holds the first samples, in order")


# --------------------------------------------------------------------------- train

def reference_model(n_features, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_features, 6), nn.Sigmoid(), nn.Linear(6, 4), nn.Sigmoid(),
                         nn.Linear(4, 1), nn.Sigmoid())


def reference_history(model, loader, epochs, lr, *, zero_grad=True, reduction="mean",
                      epoch_value="mean_of_batches"):
    """The lecture's mini-batch loop, and the usual ways of getting it wrong, for fingerprints."""
    criterion = nn.BCELoss(reduction=reduction)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    history = []
    for _ in range(epochs):
        losses = []
        for inputs, labels in loader:
            loss = criterion(model(inputs), labels)
            if zero_grad:
                optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        history.append({"mean_of_batches": sum(losses) / len(losses), "sum_of_batches": sum(losses),
                        "last_batch": losses[-1],
                        "per_sample": sum(losses) / len(loader.dataset)}[epoch_value])
    return history


def check_lecture_loop(impl, loader, start, epochs, lr):
    """train_minibatch from `start` against the lecture's loop, naming a known mistake."""
    got = impl.train_minibatch(copy.deepcopy(start), loader, epochs=epochs, lr=lr)
    assert isinstance(got, list) and len(got) == epochs, \
        f"train_minibatch(epochs={epochs}) should return a list of {epochs} numbers"
    got = torch.tensor([float(v) for v in got])
    want = torch.tensor(reference_history(copy.deepcopy(start), loader, epochs, lr))
    if not torch.allclose(got, want, rtol=1e-4):
        for kwargs, wrong_lr, mistake in [
            (dict(zero_grad=False), lr, "the gradients pile up: call optimizer.zero_grad() for every "
                                        "batch, before loss.backward()"),
            (dict(epoch_value="sum_of_batches"), lr, "an epoch's value is the sum of its batch losses: "
                                                     "divide the total by the number of batches"),
            (dict(epoch_value="per_sample"), lr, "the total is divided by the number of samples: "
                                                 "divide it by the number of batches, len(loader)"),
            (dict(epoch_value="last_batch"), lr, "only the last batch's loss is kept: average the "
                                                 "losses of all the batches of the epoch"),
            (dict(reduction="sum"), lr, "the loss is summed over each batch: use nn.BCELoss(), "
                                        "the mean over the batch"),
            ({}, 0.01, "the learning rate is fixed at 0.01: pass lr=lr to torch.optim.SGD"),
        ]:
            wrong = torch.tensor(reference_history(copy.deepcopy(start), loader, epochs, wrong_lr, **kwargs))
            if torch.allclose(got, wrong, rtol=1e-4):
                raise AssertionError(f"train_minibatch follows a known mistake: {mistake}")
    assert_close(got, want, "the mean batch loss of each epoch", rtol=1e-4,
                 hint="for every batch: loss, zero_grad, backward, step; per epoch the mean of the batch losses")


@pytest.mark.task("ch08.train")
@pytest.mark.points(1)
def test_train_returns_one_float_per_epoch(impl, table):
    loader = DataLoader(tensor_dataset(table), batch_size=64, shuffle=False)
    model = nn.Sequential(nn.Linear(N_FEATURES, 1), nn.Sigmoid())
    history = impl.train_minibatch(model, loader, epochs=3, lr=0.01)
    assert isinstance(history, list) and len(history) == 3, \
        f"train_minibatch(epochs=3) should return a list of 3 numbers, got {type_name(history)}" \
        + (f" of length {len(history)}" if hasattr(history, "__len__") else "")
    assert all(isinstance(v, float) for v in history), \
        "train_minibatch should return Python floats: add up loss.item(), not the loss tensor"


@pytest.mark.task("ch08.train")
@pytest.mark.points(2)
def test_train_matches_the_lecture_loop(impl, table):
    # the lecture's table in its order, batches of 32 (16 of 32 and one of 20), 4 epochs at lr=2.0
    loader = DataLoader(tensor_dataset(table), batch_size=32, shuffle=False)
    check_lecture_loop(impl, loader, reference_model(N_FEATURES, seed=0), epochs=4, lr=2.0)


@pytest.mark.task("ch08.train")
@pytest.mark.points(1)
def test_train_learns_the_diabetes_data(probes, table):
    x, y = torch.from_numpy(table[:, :-1]), torch.from_numpy(table[:, -1:])
    loader = DataLoader(tensor_dataset(table), batch_size=32, shuffle=False)
    model = reference_model(N_FEATURES, seed=0)
    history, weights = probes.train_and_weights(model, loader, epochs=20, lr=4.0)
    model.load_state_dict(weights)  # the student's trained weights, evaluated here
    with torch.no_grad():
        accuracy = ((model(x) > 0.5) == (y > 0.5)).float().mean().item()
    assert history[-1] < history[0], \
        f"the mean batch loss went from {history[0]:.4f} to {history[-1]:.4f}: it should decrease; " \
        "is optimizer.step() called after loss.backward() for every batch?"
    assert accuracy >= 0.75, \
        f"after 20 epochs at lr=4.0 the model is right on {accuracy:.1%} of the samples, expected at " \
        "least 75% (always answering 0 gives 66.7%)"


# --------------------------------------------------------------------------- guard

@pytest.mark.task("ch08.guard")
@pytest.mark.points(2)
def test_importing_the_module_does_not_train(probes, datasets_dir):
    run = probes.import_in_own_process(datasets_dir, timeout=90)
    assert not run["timed_out"], (
        f"importing the module did not finish within 90 s: it must only define functions and classes; {GUARD}")
    assert not run["trained_at_import"], (
        "importing the module started training (a DataLoader was iterated at import time): a main() call "
        "at the top level of the file runs whenever the file is imported, including by every DataLoader "
        f"worker on Windows/macOS; {GUARD}")
    last = (run["stderr_tail"] or ["no error output"])[-1]
    assert run["returncode"] == 0, f"importing the module in a Python process of its own failed: {last}"
    held = ", ".join(f"`{entry.split()[0]}` ({entry.split()[-1]})" for entry in run["held"])
    built = run["loaders_built"] or 0
    assert not held and not built, (
        "the demonstration's data objects are built at import time ("
        + (held or f"{built} DataLoader(s)") + " at the top level of the file): every DataLoader worker on "
        "Windows/macOS imports the file again and would read the data again; build the dataset and the "
        f"loader inside main(), and {GUARD}")


@pytest.mark.task("ch08.guard")
@pytest.mark.points(3)
def test_script_runs_under_spawn(probes, datasets_dir):
    # Runs like a student on Windows or macOS typing `python ch08_....py` (see the probe):
    # the `spawn` start method, so every DataLoader worker executes the file again; the file
    # executed as __main__, until the first batch of a loader with workers has arrived.
    run = probes.run_as_script_under_spawn(datasets_dir, timeout=100, markers=[BOOTSTRAP])
    if run["timed_out"]:
        raise AssertionError("running the file as a script with the spawn start method (Windows/macOS) "
                             "did not finish within 100 s: each DataLoader worker imports the file "
                             f"again, so nothing may train at import; {GUARD}")
    if run["returncode"] != 0:
        if run["stderr_has"][BOOTSTRAP]:
            raise AssertionError(
                "running the file as a script with the spawn start method (Windows/macOS) crashed with "
                "'An attempt has been made to start a new process before the current process has "
                "finished its bootstrapping phase': each DataLoader worker imports the file again, "
                f"reaches the top-level main() call and tries to start workers of its own; {GUARD}")
        last = (run["stderr_tail"] or ["no error output"])[-1]
        first = " (main() reads dataset.x_data: fix ch08.dataset first)" if "x_data" in last else ""
        raise AssertionError("running the file as a script with the spawn start method (Windows/macOS) "
                             f"failed: {last}{first}")
    assert run["finished"], "running the file as a script did not finish normally (did it call sys.exit?)"
    assert run["loaders"] > 0, ("running the file as a script trained nothing: when the file runs as a "
                                "script, call main()")
    assert run["workers"] >= 1, ("main() trained without worker processes: the demonstration should use "
                                 "make_loader(..., num_workers=2), which is what the guard protects")
