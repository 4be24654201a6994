"""Chapter 06, public tests: shapes and basic behaviour."""
import pytest
import torch
import torch.nn.functional as F

from grader.remote import type_name


def _length(value):
    try:
        return len(value)
    except Exception:  # noqa: BLE001 - no length: say so in the message
        return "?"


@pytest.mark.task("ch06.model")
@pytest.mark.points(2)
def test_model_outputs_probabilities(impl):
    model = impl.LogisticRegressionModel()
    out = model(torch.tensor([[-50.0], [0.0], [1.0], [2.0], [50.0]]))
    assert isinstance(out, torch.Tensor), f"forward returned {type_name(out)}, expected a Tensor"
    assert out.shape == (5, 1), f"forward returned shape {list(out.shape)} for input [5, 1], expected [5, 1]"
    assert bool(((out >= 0) & (out <= 1)).all()), \
        "forward's outputs are not probabilities in [0, 1]: apply torch.sigmoid to the linear output"


@pytest.mark.task("ch06.bce")
@pytest.mark.points(2)
def test_bce_small_example(impl):
    y_pred = torch.tensor([[0.2], [0.9], [0.6]])
    y = torch.tensor([[0.0], [1.0], [1.0]])
    loss = impl.binary_cross_entropy(y_pred, y)
    assert isinstance(loss, torch.Tensor) and loss.dim() == 0, \
        "binary_cross_entropy should return a scalar tensor (0-dim): the mean over all samples"
    want = F.binary_cross_entropy(y_pred, y)
    assert abs(loss.item() - want.item()) < 1e-5, \
        f"binary_cross_entropy gave {loss.item():.6f} on a 3-sample example, expected {want.item():.6f}"


@pytest.mark.task("ch06.train")
@pytest.mark.points(2)
def test_train_returns_one_float_per_epoch(impl):
    model = impl.LogisticRegressionModel()
    losses = impl.train(model, impl.X_DATA, impl.Y_DATA, epochs=7)
    assert isinstance(losses, list) and len(losses) == 7, \
        f"train(epochs=7) should return a list of 7 losses, got {type_name(losses)} of length {_length(losses)}"
    assert all(isinstance(v, float) for v in losses), \
        "train should return Python floats: append loss.item(), not the loss tensor"
