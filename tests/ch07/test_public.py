"""Chapter 07, public tests: shapes and basic behaviour."""
import pytest
import torch
from torch import nn

from grader.remote import type_name


@pytest.mark.task("ch07.load")
@pytest.mark.points(2)
def test_load_shapes(impl, datasets_dir):
    x, y = impl.load_diabetes(datasets_dir / "diabetes.csv.gz")
    assert isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor), \
        f"load_diabetes returned {type_name(x)} and {type_name(y)}: return tensors " \
        "(torch.from_numpy)"
    assert x.shape == (532, 7), f"x has shape {list(x.shape)}, expected [532, 7]: all columns but the last"
    assert y.shape == (532, 1), f"y has shape {list(y.shape)}, expected [532, 1]: keep the label 2-D " \
                                "with data[:, [-1]]"


@pytest.mark.task("ch07.model")
@pytest.mark.points(2)
def test_model_shape(impl):
    model = impl.DiabetesModel(7)
    try:
        out = model(torch.randn(5, 7))
    except (TypeError, RuntimeError) as exc:
        raise AssertionError(f"DiabetesModel(7) failed on [5, 7] inputs: {exc}: is the first layer "
                             "nn.Linear(n_features, 6), and the activation class instantiated in "
                             "__init__ (self.activation = activation())?") from None
    assert out.shape == (5, 1), f"DiabetesModel(7) maps [5, 7] to {list(out.shape)}, expected [5, 1]"
    assert bool(((out > 0) & (out < 1)).all()), "DiabetesModel's outputs should be probabilities in (0, 1)"


@pytest.mark.task("ch07.train")
@pytest.mark.points(2)
def test_train_returns_one_float_per_epoch(impl):
    model = nn.Sequential(nn.Linear(3, 1), nn.Sigmoid())
    x, y = torch.randn(10, 3), (torch.rand(10, 1) > 0.5).float()
    losses = impl.train_full_batch(model, x, y, epochs=5)
    assert isinstance(losses, list) and len(losses) == 5, \
        f"train_full_batch(epochs=5) should return a list of 5 losses, got {type_name(losses)}"
    assert all(isinstance(v, float) for v in losses), \
        "train_full_batch should return Python floats: append loss.item(), not the loss tensor"


@pytest.mark.task("ch07.accuracy")
@pytest.mark.points(2)
def test_accuracy_simple(impl):
    probs = torch.tensor([[0.9], [0.2], [0.7], [0.4]])
    y = torch.tensor([[1.0], [0.0], [0.0], [0.0]])
    got = impl.accuracy(nn.Identity(), probs, y)  # the input is already a probability
    assert isinstance(got, float), f"accuracy returned {type_name(got)}: return a Python float (.item())"
    assert abs(got - 0.75) < 1e-6, f"accuracy is {got}, expected 0.75 (3 of 4 predictions right)"
