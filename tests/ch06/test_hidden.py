"""Chapter 06, hidden tests: the public tests' properties on held-out inputs, dtypes and seeds,
values against PyTorch, gradients, and the exact results of graded runs (train() runs on the
lecture's own model, see probes.py)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grader.remote import type_name
from grader.testing import assert_close, check_gradients, reference, reference_losses

from .test_public import _length, _load_line

X_LECTURE = torch.tensor([[1.0], [2.0], [3.0]])
Y_LECTURE = torch.tensor([[0.0], [0.0], [1.0]])


# ----------------------------------------------------------------------------- model

@pytest.mark.task("ch06.model")
@pytest.mark.points(2)
def test_model_held_out_values(impl):
    model = impl.LogisticRegressionModel()
    _load_line(model, -0.8, 0.3)
    gen = torch.Generator().manual_seed(17)
    for x in (torch.randn(9, 1, generator=gen) * 4, torch.tensor([[-120.0], [120.0]])):
        n = x.shape[0]
        out = model(x)
        assert isinstance(out, torch.Tensor) and out.shape == (n, 1), \
            f"forward should map held-out input [{n}, 1] to [{n}, 1], got {type_name(out)} " \
            f"{list(out.shape) if isinstance(out, torch.Tensor) else ''}"
        linear = -0.8 * x + 0.3
        hint = None
        if torch.allclose(out, linear, atol=1e-6):
            hint = "the sigmoid is missing: squash self.linear(x) into (0, 1) with torch.sigmoid"
        elif torch.allclose(out, torch.sigmoid(-0.8 * x), atol=1e-6):
            hint = "the bias is missing: use self.linear(x), which adds it"
        assert_close(out, torch.sigmoid(linear), f"LogisticRegressionModel(x) on held-out inputs [{n}, 1] with "
                     "weight -0.8 and bias 0.3", hint=hint)


# ----------------------------------------------------------------------------- bce

def _bce_mistake_hint(got, y_pred, y):
    """Name the mistake when the hand-written BCE `got` equals a known wrong formula."""
    if not isinstance(got, torch.Tensor) or got.numel() != 1:
        return None
    got = got.detach().double().reshape(())
    want = F.binary_cross_entropy(y_pred, y)
    terms = F.binary_cross_entropy(y_pred, y, reduction="none")
    swapped = F.binary_cross_entropy(y_pred, 1 - y)
    for wrong, mistake in [
        (-want, "the sign is flipped: BCE is -(y * log(p) + (1 - y) * log(1 - p)), a positive number"),
        (terms.sum(), "you summed over the samples: binary_cross_entropy is the mean, use .mean()"),
        (-terms.sum(), "the sign is flipped and you summed: take -(...).mean()"),
        (swapped, "the two terms are swapped: y goes with log(y_pred), (1 - y) with log(1 - y_pred)"),
    ]:
        if torch.allclose(got, wrong.double(), rtol=1e-4, atol=1e-6):
            return mistake
    return None


def _check_bce(got, y_pred, y, what):
    assert isinstance(got, torch.Tensor), f"binary_cross_entropy returned {type_name(got)}: return a tensor " \
                                          "(no .item()), so that loss.backward() works"
    assert got.dim() == 0, \
        f"binary_cross_entropy returned shape {list(got.shape)}: reduce to a scalar with .mean()"
    assert got.dtype == y_pred.dtype, \
        f"for {y_pred.dtype} inputs the loss is {got.dtype}: compute in the inputs' dtype"
    assert_close(got, F.binary_cross_entropy(y_pred, y), f"binary_cross_entropy {what}", rtol=1e-5, atol=1e-6,
                 hint=_bce_mistake_hint(got, y_pred, y))


@pytest.mark.task("ch06.bce")
@pytest.mark.points(2)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bce_matches_pytorch(impl, dtype):
    torch.manual_seed(0)
    y_pred = (torch.rand(16, 1) * 0.98 + 0.01).to(dtype)
    y = (torch.rand(16, 1) > 0.5).to(dtype)
    _check_bce(impl.binary_cross_entropy(y_pred, y), y_pred, y, f"on 16 held-out {dtype} samples")


@pytest.mark.task("ch06.bce")
@pytest.mark.points(1)
def test_bce_soft_targets(impl):
    torch.manual_seed(1)
    y_pred = torch.rand(8, 1, dtype=torch.float64) * 0.9 + 0.05
    y = torch.rand(8, 1, dtype=torch.float64)
    got = impl.binary_cross_entropy(y_pred, y)
    hint = _bce_mistake_hint(got, y_pred, y) or (
        "use both terms, y * log(p) and (1 - y) * log(1 - p), for every sample: "
        "do not select one of them with the label")
    assert_close(got, F.binary_cross_entropy(y_pred, y), "binary_cross_entropy with targets between 0 and 1",
                 rtol=1e-6, hint=hint)


@pytest.mark.task("ch06.bce")
@pytest.mark.points(2)
def test_bce_held_out_examples(impl, probes):
    for y_pred, y in [(torch.tensor([[0.7], [0.1], [0.45]]), torch.tensor([[1.0], [0.0], [0.0]])),
                      (torch.tensor([[0.35], [0.95], [0.5], [0.05], [0.8]]),
                       torch.tensor([[0.0], [1.0], [1.0], [0.0], [0.0]])),
                      (torch.tensor([[0.6]]), torch.tensor([[1.0]]))]:
        _check_bce(impl.binary_cross_entropy(y_pred, y), y_pred, y,
                   f"on a held-out {y_pred.shape[0]}-sample example (return the value computed from the inputs, "
                   "whatever their shape)")
    edge_pred = torch.tensor([[1.0], [0.0], [0.65]])
    edge_y = torch.tensor([[1.0], [0.0], [1.0]])
    got = impl.binary_cross_entropy(edge_pred, edge_y)
    want = F.binary_cross_entropy(edge_pred[2:], edge_y[2:]).item() / 3
    assert bool(torch.isfinite(got)) and abs(got.item() - want) < 1e-4, \
        f"binary_cross_entropy on a held-out example with exact 0 and 1 predictions is {got.item():.6f}, " \
        f"expected {want:.6f}: clamp y_pred to [EPS, 1 - EPS] before the log"
    loss, grad = probes.bce_backward(torch.tensor([[0.0], [1.0], [0.2]], dtype=torch.float64),
                                     torch.tensor([[1.0], [0.0], [0.0]], dtype=torch.float64))
    assert grad is not None and bool(torch.isfinite(grad).all()), \
        "the gradient with respect to y_pred is not finite where a float64 y_pred is exactly 0 or 1: clamp " \
        "y_pred itself before the log, to [EPS, 1 - EPS]"


@pytest.mark.task("ch06.bce")
@pytest.mark.points(1)
def test_bce_gradient_matches_central_differences(impl, probes):
    torch.manual_seed(2)
    y_pred = torch.rand(6, 1, dtype=torch.float64) * 0.8 + 0.1
    y = (torch.rand(6, 1, dtype=torch.float64) > 0.5).double()
    # autograd's gradient comes from the student's side (loss.sum().backward() there)
    out, grad = probes.bce_backward(y_pred, y, summed=True)
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        raise AssertionError("the result does not depend on the inputs through autograd "
                             "(was the graph cut with .item(), .detach() or .data?)")
    analytic = torch.zeros_like(y_pred) if grad is None else grad
    check_gradients(lambda p: impl.binary_cross_entropy(p, y), [y_pred], names=["y_pred"], analytic=[analytic],
                    hint="d loss / d p = (p - y) / (p * (1 - p)) / N for the mean BCE")


# ----------------------------------------------------------------------------- train

def _start(seed):
    """The weights of nn.Linear(1, 1) after manual_seed(seed)."""
    torch.manual_seed(seed)
    return nn.Linear(1, 1).state_dict()


class _Lecture(nn.Module):
    def __init__(self, start):
        super().__init__()
        self.linear = nn.Linear(1, 1)
        self.linear.load_state_dict(start)

    def forward(self, x):
        return torch.sigmoid(self.linear(x))


@reference
def _reference(start, x, y, epochs, lr, **mistake):
    """The lecture's loop, or one of its common mistakes: losses and final weights."""
    model = _Lecture(start)
    criterion = nn.BCELoss(reduction=mistake.pop("reduction", "sum"))
    return reference_losses(model, criterion, x, y, epochs, lr, **mistake), model.linear.state_dict()


def _as_losses(values, epochs):
    assert isinstance(values, list) and len(values) == epochs, \
        f"train(epochs={epochs}) should return a list of {epochs} losses, got {type_name(values)} of length " \
        f"{_length(values)}"
    return torch.tensor([float(v) for v in values])


def _check_losses(got, start, x, y, epochs, lr, what):
    """got: the student's losses; name the known mistake they follow, else compare."""
    want = torch.tensor(_reference(start, x, y, epochs, lr)[0])
    if not torch.allclose(got, want, rtol=1e-4):
        for mistake, text in [
            (dict(zero_grad=False), "the gradients pile up: call optimizer.zero_grad() every epoch, "
                                    "before loss.backward()"),
            (dict(reduction="mean"), "the loss is the mean, not the sum: use nn.BCELoss(reduction='sum') "
                                     "as the lecture does"),
            (dict(record_after=True), "you record the loss after optimizer.step(): "
                                      "keep the loss computed before the update"),
        ]:
            wrong = _reference(start, x, y, epochs, lr, **mistake)[0]
            if torch.allclose(got, torch.tensor(wrong), rtol=1e-4):
                raise AssertionError(f"train's losses {what} follow a known mistake: {text}")
        if torch.allclose(got, torch.full_like(got, got[0].item())):
            raise AssertionError("the loss never changes: call optimizer.step() after loss.backward(), "
                                 "with an optimizer built on model.parameters()")
    assert_close(got, want, f"the loss of each epoch {what}", rtol=1e-4,
                 hint="train must work for any data, starting weights and lr, not only the public example")


@pytest.mark.task("ch06.train")
@pytest.mark.points(3)
def test_train_matches_loop_on_held_out_data(probes):
    x = torch.tensor([[0.5], [1.0], [1.5], [2.5], [3.0], [4.0]])
    y = torch.tensor([[0.0], [0.0], [1.0], [0.0], [1.0], [1.0]])
    runs = [(_start(6), X_LECTURE, Y_LECTURE, 20, 0.05, "on the lecture's data from held-out starting weights"),
            (_start(4), x, y, 30, 0.03, "on held-out data (6 students)")]
    for start, x, y, epochs, lr, what in runs:
        got, w = probes.train_lecture_model(start, x, y, epochs=epochs, lr=lr)
        _check_losses(_as_losses(got, epochs), start, x, y, epochs, lr, what)
        want = _reference(start, x, y, epochs, lr)[1]
        assert_close(torch.cat([w["weight"].flatten(), w["bias"]]),
                     torch.cat([want["weight"].flatten(), want["bias"]]),
                     f"the weight and bias after {epochs} epochs {what}", rtol=1e-4)
