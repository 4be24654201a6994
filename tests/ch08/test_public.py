"""Chapter 08, public tests: shapes, basic behaviour, and importing without training."""
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler

from grader.remote import is_instance, type_name

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
        f"dataset[i] returned ({type_name(x)}, {type_name(y)}): return tensors " \
        "(torch.from_numpy in __init__), not numpy arrays"
    assert x.shape == (N_FEATURES,), f"the features of one sample have shape {list(x.shape)}, expected [{N_FEATURES}]"
    assert y.shape == (1,), f"the label of one sample has shape {list(y.shape)}, expected [1]"


@pytest.mark.task("ch08.loader")
@pytest.mark.points(2)
def test_loader_defaults_follow_the_lecture(impl, diabetes_path):
    dataset = impl.DiabetesDataset(diabetes_path)
    loader = impl.make_loader(dataset)
    assert is_instance(loader, DataLoader), f"make_loader returned {type_name(loader)}, expected a DataLoader"
    assert loader.batch_size == 32, f"the default batch size is {loader.batch_size}, expected 32"
    assert is_instance(loader.sampler, RandomSampler), "by default the loader should shuffle (shuffle=True)"
    assert loader.num_workers == 2, f"the default num_workers is {loader.num_workers}, expected 2"


@pytest.mark.task("ch08.loader")
@pytest.mark.points(1)
def test_loader_batch_shapes(impl, probes, diabetes_path):
    dataset = impl.DiabetesDataset(diabetes_path)
    inputs, labels = probes.first_batch(impl.make_loader(dataset, batch_size=16, shuffle=False, num_workers=0))
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
        f"train_minibatch(epochs=3) should return a list of 3 numbers, got {type_name(history)}" \
        + (f" of length {len(history)}" if hasattr(history, "__len__") else "")
    assert all(isinstance(v, float) for v in history), \
        "train_minibatch should return Python floats: add up loss.item(), not the loss tensor"


@pytest.mark.task("ch08.guard")
@pytest.mark.points(2)
def test_importing_the_module_does_not_train(probes, datasets_dir):
    run = probes.import_in_own_process(datasets_dir, timeout=90)
    assert not run["timed_out"], (
        "importing the module did not finish within 90 s: it must only define "
        "functions and classes; call main() under `if __name__ == \"__main__\":`")
    assert not run["trained_at_import"], (
        "importing the module started training (a DataLoader was iterated at import time): the "
        "module-level main() call runs whenever the file is imported, including by every DataLoader "
        "worker on Windows/macOS. Call main() only under `if __name__ == \"__main__\":`")
    last = (run["stderr_tail"] or ["no error output"])[-1]
    assert run["returncode"] == 0, f"importing the module in a Python process of its own failed: {last}"
