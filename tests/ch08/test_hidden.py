"""Chapter 08, hidden tests: values against the file, loader settings, training, the spawn guard."""
import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler, TensorDataset

from grader.remote import is_instance, type_name
from grader.testing import assert_close

N_ROWS, N_FEATURES = 532, 7


@pytest.fixture
def diabetes_path(datasets_dir):
    return datasets_dir / "diabetes.csv.gz"


@pytest.fixture
def table(diabetes_path):
    return np.loadtxt(diabetes_path, delimiter=",", dtype=np.float32)


# --------------------------------------------------------------------------- dataset

@pytest.mark.task("ch08.dataset")
@pytest.mark.points(2)
def test_dataset_samples_match_the_file(impl, diabetes_path, table):
    dataset = impl.DiabetesDataset(diabetes_path)
    n = len(dataset)
    assert n != table.shape[1], \
        f"__len__ returned {n}, the number of columns: return the number of rows, xy.shape[0]"
    assert n == table.shape[0], f"__len__ returned {n}, expected {table.shape[0]} (the number of rows)"
    for i in (0, 1, 177, n - 1):
        x, y = dataset[i]
        assert isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor), \
            "dataset[i] should return tensors: convert with torch.from_numpy in __init__"
        assert x.dtype == torch.float32 and y.dtype == torch.float32, \
            f"dataset[i] returned {x.dtype} and {y.dtype}: load with dtype=np.float32"
        assert y.dim() != 0, ("the label of a sample is a 0-d tensor: keep the label column 2-D with "
                              "xy[:, [-1]], so a batch of labels is [B, 1] like the model's output")
        assert x.shape == (table.shape[1] - 1,), \
            f"the features of a sample have shape {list(x.shape)}, expected [{table.shape[1] - 1}]" + \
            (": the label column is included, take xy[:, :-1]" if x.numel() == table.shape[1] else "")
        if torch.allclose(y, torch.from_numpy(table[i, :1])) and not np.allclose(table[i, :1], table[i, -1:]):
            raise AssertionError("the label is taken from the first column: it is the last one, xy[:, [-1]]")
        assert_close(x, table[i, :-1], f"the features of sample {i}",
                     hint="the features are every column but the last, xy[:, :-1]")
        assert_close(y, table[i, -1:], f"the label of sample {i}", hint="the label is the last column")


@pytest.mark.task("ch08.dataset")
@pytest.mark.points(1)
def test_dataset_reads_the_given_file(probes):
    rng = np.random.default_rng(1)
    table = np.concatenate([rng.uniform(-1, 1, (9, 4)), rng.integers(0, 2, (9, 1))], axis=1)
    n = probes.dataset_of_table(table)  # written to a file with np.savetxt(fmt="%.6f")
    assert n == 9, \
        f"DiabetesDataset(path) on a file of 9 rows has length {n}: read the file given by path"
    x, y = probes.dataset_of_table(table, index=8)
    assert x.shape == (4,) and y.shape == (1,), \
        f"on a file with 4 feature columns a sample has shapes {list(x.shape)} and {list(y.shape)}, " \
        "expected [4] and [1]: do not hard-code the number of columns"
    assert_close(x, table[8, :-1], "the features of the last sample of a small file")


@pytest.mark.task("ch08.dataset")
@pytest.mark.points(1)
def test_dataset_batches_through_a_loader(impl, probes, diabetes_path, table):
    dataset = impl.DiabetesDataset(diabetes_path)
    inputs, labels = probes.first_batch(dataset, batch_size=5, shuffle=False)
    assert labels.shape == (5, 1), \
        f"a DataLoader batch of labels has shape {list(labels.shape)}, expected [5, 1]: keep the label " \
        "2-D in __init__ (xy[:, [-1]]) so BCELoss gets the same shape as the model's output"
    assert_close(inputs, table[:5, :-1], "the first batch of features")


# --------------------------------------------------------------------------- loader

@pytest.mark.task("ch08.loader")
@pytest.mark.points(2)
def test_loader_passes_on_every_setting(impl, probes):
    dataset = TensorDataset(torch.arange(50.0).reshape(25, 2), torch.arange(25.0).reshape(25, 1))
    loader, same_dataset = probes.make_loader_keeping(dataset, batch_size=10, shuffle=False, num_workers=0)
    assert is_instance(loader, DataLoader), f"make_loader returned {type_name(loader)}, expected a DataLoader"
    assert same_dataset, "the loader should read the dataset it is given"
    assert loader.batch_size == 10, \
        f"make_loader(batch_size=10) built a loader with batch_size={loader.batch_size}: pass batch_size on"
    assert is_instance(loader.sampler, SequentialSampler), \
        "make_loader(shuffle=False) built a shuffling loader: pass shuffle=shuffle on"
    assert loader.num_workers == 0, \
        f"make_loader(num_workers=0) built a loader with num_workers={loader.num_workers}: pass num_workers on"
    sizes = [len(x) for x, _ in loader]
    assert sizes == [10, 10, 5], f"batches of sizes {sizes}, expected [10, 10, 5] (keep the last, smaller batch)"
    shuffled = impl.make_loader(dataset, batch_size=7, shuffle=True, num_workers=0)
    assert is_instance(shuffled.sampler, RandomSampler), \
        "make_loader(shuffle=True) built a loader that does not shuffle: pass shuffle=shuffle on"


@pytest.mark.task("ch08.loader")
@pytest.mark.points(1)
def test_loader_with_workers_sees_every_sample_once(impl, diabetes_path, table):
    dataset = impl.DiabetesDataset(diabetes_path)
    loader = impl.make_loader(dataset, batch_size=100, shuffle=True, num_workers=2)
    assert loader.num_workers == 2, "make_loader(num_workers=2) should start two workers"
    labels = torch.cat([y for _, y in loader])
    assert labels.shape == (N_ROWS, 1), \
        f"one epoch with two workers gave {labels.shape[0]} labels, expected {N_ROWS}"
    assert float(labels.sum()) == pytest.approx(float(table[:, -1].sum())), \
        "one shuffled epoch should visit every sample exactly once"


# --------------------------------------------------------------------------- train

def _reference_model(n_features, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_features, 6), nn.Sigmoid(), nn.Linear(6, 4), nn.Sigmoid(),
                         nn.Linear(4, 1), nn.Sigmoid())


def _reference_history(model, loader, epochs, lr, *, zero_grad=True, reduction="mean",
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


@pytest.mark.task("ch08.train")
@pytest.mark.points(3)
def test_train_matches_the_lecture_loop(impl, table):
    x, y = torch.from_numpy(table[:, :-1]), torch.from_numpy(table[:, -1:])
    loader = DataLoader(TensorDataset(x, y), batch_size=28, shuffle=False)  # 19 batches of 28
    start = _reference_model(x.shape[1])
    got = impl.train_minibatch(copy.deepcopy(start), loader, epochs=6, lr=0.5)
    assert isinstance(got, list) and len(got) == 6, "train_minibatch(epochs=6) should return 6 numbers"
    got = torch.tensor([float(v) for v in got])
    want = torch.tensor(_reference_history(copy.deepcopy(start), loader, 6, 0.5))
    if not torch.allclose(got, want, rtol=1e-4):
        for kwargs, lr, mistake in [
            (dict(zero_grad=False), 0.5, "the gradients pile up: call optimizer.zero_grad() for every "
                                         "batch, before loss.backward()"),
            (dict(epoch_value="sum_of_batches"), 0.5, "an epoch's value is the sum of its batch losses: "
                                                      "divide the total by the number of batches"),
            (dict(epoch_value="per_sample"), 0.5, "the total is divided by the number of samples: "
                                                  "divide it by the number of batches, len(loader)"),
            (dict(epoch_value="last_batch"), 0.5, "only the last batch's loss is kept: average the "
                                                  "losses of all the batches of the epoch"),
            (dict(reduction="sum"), 0.5, "the loss is summed over each batch: use nn.BCELoss(), "
                                         "the mean over the batch"),
            ({}, 0.01, "the learning rate is fixed at 0.01: pass lr=lr to torch.optim.SGD"),
        ]:
            wrong = torch.tensor(_reference_history(copy.deepcopy(start), loader, 6, lr, **kwargs))
            if torch.allclose(got, wrong, rtol=1e-4):
                raise AssertionError(f"train_minibatch follows a known mistake: {mistake}")
    assert_close(got, want, "the mean batch loss of each epoch", rtol=1e-4,
                 hint="for every batch: loss, zero_grad, backward, step; per epoch the mean of the batch losses")


@pytest.mark.task("ch08.train")
@pytest.mark.points(2)
def test_train_learns_the_diabetes_data(probes, table):
    x, y = torch.from_numpy(table[:, :-1]), torch.from_numpy(table[:, -1:])
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=False)
    model = _reference_model(x.shape[1])
    history, weights = probes.train_and_weights(model, loader, epochs=60, lr=1.0)
    model.load_state_dict(weights)  # the student's trained weights, evaluated here
    with torch.no_grad():
        accuracy = ((model(x) > 0.5) == (y > 0.5)).float().mean().item()
    assert history[-1] < history[0], \
        f"the mean batch loss went from {history[0]:.4f} to {history[-1]:.4f}: it should decrease; " \
        "is optimizer.step() called after loss.backward() for every batch?"
    assert accuracy >= 0.75, \
        f"after 60 epochs at lr=1.0 the model is right on {accuracy:.1%} of the samples, expected at " \
        "least 75% (always answering 0 gives 66.7%)"


# --------------------------------------------------------------------------- guard

GUARD = "call main() only under `if __name__ == \"__main__\":`"
BOOTSTRAP = "bootstrapping phase"


@pytest.mark.task("ch08.guard")
@pytest.mark.points(3)
def test_script_runs_under_spawn(probes, datasets_dir):
    # Runs like a student on Windows or macOS typing `python ch08_....py` (see the probe):
    # the `spawn` start method, so every DataLoader worker executes the file again; the file
    # executed as __main__; counts the DataLoaders iterated.
    run = probes.run_as_script_under_spawn(datasets_dir, timeout=100, markers=[BOOTSTRAP])
    if run["timed_out"]:
        raise AssertionError("running the file as a script with the spawn start method (Windows/macOS) "
                             "did not finish within 100 s: each DataLoader worker imports the file "
                             f"again, so the training must not run at import; {GUARD}")
    if run["returncode"] != 0:
        if run["stderr_has"][BOOTSTRAP]:
            raise AssertionError(
                "running the file as a script with the spawn start method (Windows/macOS) crashed with "
                "'An attempt has been made to start a new process before the current process has "
                "finished its bootstrapping phase': each DataLoader worker imports the file again, "
                f"reaches the module-level main() call and tries to start workers of its own; {GUARD}")
        last = (run["stderr_tail"] or ["no error output"])[-1]
        raise AssertionError("running the file as a script with the spawn start method (Windows/macOS) "
                             f"failed: {last}")
    assert run["finished"], "running the file as a script did not finish normally (did it call sys.exit?)"
    assert run["loaders"] > 0, ("running the file as a script trained nothing: under "
                                "`if __name__ == \"__main__\":` call main()")
    assert run["workers"] >= 1, ("main() trained without worker processes: the demonstration should use "
                                 "make_loader(..., num_workers=2), which is what the guard protects")
