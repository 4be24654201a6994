"""Chapter 06, public tests: the lecture's data and published examples.

The hidden tests check the same properties on held-out inputs, dtypes and seeds. train() is
tested on the lecture's own model, sigmoid(linear(x)) (see probes.py), so its tests do not
depend on your LogisticRegressionModel.
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grader.remote import is_instance, type_name
from grader.testing import assert_close, length_of as _length, load_line, reference, reference_losses

X_LECTURE = torch.tensor([[1.0], [2.0], [3.0]])   # hours studied
Y_LECTURE = torch.tensor([[0.0], [0.0], [1.0]])   # 1 = passed


# ----------------------------------------------------------------------------- model

def _load_line(model, weight, bias):
    load_line(model, weight, bias, "LogisticRegressionModel")


def _check_model(model, x, weight, bias, what):
    out = model(x)
    n = x.shape[0]
    assert isinstance(out, torch.Tensor), f"forward returned {type_name(out)}, expected a Tensor"
    assert out.shape == (n, 1), f"forward returned shape {list(out.shape)} for input [{n}, 1], expected " \
                                f"[{n}, 1]: keep the output 2-D (no squeeze, flatten or view(-1))"
    linear = weight * x + bias
    hint = None
    if torch.allclose(out, linear, atol=1e-6):
        hint = "the sigmoid is missing: squash self.linear(x) into (0, 1) with torch.sigmoid"
    elif torch.allclose(out, torch.sigmoid(weight * x), atol=1e-6):
        hint = "the bias is missing: use self.linear(x), which adds it"
    assert_close(out, torch.sigmoid(linear), f"LogisticRegressionModel(x) {what}", hint=hint)


@pytest.mark.task("ch06.model")
@pytest.mark.points(1)
def test_model_outputs_probabilities(impl):
    model = impl.LogisticRegressionModel()
    out = model(torch.tensor([[-50.0], [0.0], [1.0], [2.0], [50.0]]))
    assert isinstance(out, torch.Tensor), f"forward returned {type_name(out)}, expected a Tensor"
    assert out.shape == (5, 1), f"forward returned shape {list(out.shape)} for input [5, 1], expected [5, 1]: " \
                                "keep the output 2-D (no squeeze, flatten or view(-1))"
    assert bool(((out >= 0) & (out <= 1)).all()), \
        "forward's outputs are not probabilities in [0, 1]: the sigmoid is missing, squash self.linear(x) " \
        "into (0, 1) with torch.sigmoid"


@pytest.mark.task("ch06.model")
@pytest.mark.points(1)
def test_model_published_example(impl):
    model = impl.LogisticRegressionModel()
    _load_line(model, 1.5, -2.0)
    _check_model(model, torch.tensor([[-1.0], [0.0], [1.0], [2.0], [4.0]]), 1.5, -2.0,
                 "with weight 1.5 and bias -2")


@pytest.mark.task("ch06.model")
@pytest.mark.points(1)
def test_model_output_keeps_the_graph(probes):
    # the student's side runs forward, then out.sum().backward() when the output requires grad
    out, grads = probes.forward_then_backward(torch.tensor([[1.0], [3.0]]))
    assert isinstance(out, torch.Tensor), f"forward returned {type_name(out)}, expected a Tensor"
    assert out.requires_grad, \
        "forward's output does not require grad: do not detach or use .data/.item() inside forward"
    assert any(g is not None and bool(g.abs().sum() > 0) for g in grads), \
        "no gradient reaches the model's parameters: build the output from self.linear(x)"


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


def _check_bce_edges(impl, mixed_pred, mixed_y):
    cases = [(0.0, 0.0), (1.0, 1.0), (0.0, 1.0), (1.0, 0.0)]
    values = {case: impl.binary_cross_entropy(torch.tensor([[case[0]]]), torch.tensor([[case[1]]]))
              for case in cases}
    bad = [case for case in cases if not bool(torch.isfinite(values[case]))]
    if bad and all(p == 1.0 for p, _ in bad):
        raise AssertionError(
            "binary_cross_entropy is not finite for y_pred = 1: 1 - EPS rounds to exactly 1.0 in "
            "float32 when EPS is tiny (1e-12), so log(1 - p) = -inf; use EPS = 1e-7 and clamp y_pred "
            "to [EPS, 1 - EPS]")
    assert not bad, (
        f"binary_cross_entropy is {values[bad[0]].item()} for y_pred = {bad[0][0]:g}, y = {bad[0][1]:g}: "
        "no clamping, so log(0) = -inf (and 0 * -inf = nan); clamp y_pred to [EPS, 1 - EPS] first")
    for case in cases[:2]:
        assert values[case].item() < 1e-4, \
            f"a correct prediction y_pred = y = {case[0]:g} should cost (almost) nothing, got " \
            f"{values[case].item():.4g}: clamp y_pred to [EPS, 1 - EPS] with a small EPS (1e-7)"
    for case in cases[2:]:
        assert values[case].item() >= 0, \
            f"binary_cross_entropy is negative ({values[case].item():.4g}) for y_pred = {case[0]:g}, " \
            f"y = {case[1]:g}: the sign is flipped, BCE is -(y * log(p) + (1 - y) * log(1 - p))"
        assert values[case].item() > 10, \
            f"a confident wrong prediction (y_pred = {case[0]:g}, y = {case[1]:g}) should cost a lot, " \
            f"got {values[case].item():.4g}: is EPS much larger than 1e-7?"
    inner = mixed_pred[(mixed_pred > 0) & (mixed_pred < 1)].view(-1, 1)
    inner_y = mixed_y[(mixed_pred > 0) & (mixed_pred < 1)].view(-1, 1)
    want = F.binary_cross_entropy(inner, inner_y, reduction="sum").item() / mixed_pred.numel()
    got = impl.binary_cross_entropy(mixed_pred, mixed_y)
    hint = _bce_mistake_hint(got, mixed_pred, mixed_y) or \
        "the exact 0 and 1 predictions are right and should cost almost nothing"
    assert abs(got.item() - want) < 1e-4, \
        f"binary_cross_entropy({[round(v, 3) for v in mixed_pred.flatten().tolist()]}, " \
        f"{mixed_y.flatten().tolist()}) = {got.item():.6f}, expected {want:.6f}: {hint}"


def _check_bce_gradients_at_edges(probes, y_pred, y):
    # the student's side computes the loss and runs loss.backward() when the loss requires grad
    loss, grad = probes.bce_backward(y_pred, y)
    assert isinstance(loss, torch.Tensor) and loss.requires_grad, \
        "the loss does not require grad: keep it a tensor built from y_pred (no .item(), .detach())"
    assert grad is not None and bool(torch.isfinite(grad).all()), (
        "the gradient with respect to y_pred is not finite where y_pred is exactly 0 or 1: clamp y_pred itself "
        "before the log, to [EPS, 1 - EPS] (without a clamp, or with log's result clamped at -100, backward "
        "computes 0 * inf = nan)")
    inner = (y_pred > 0) & (y_pred < 1)
    leaf = y_pred.clone().requires_grad_(True)
    want = torch.autograd.grad(F.binary_cross_entropy(leaf[inner], y[inner], reduction="sum") / y.numel(), leaf)[0]
    assert_close(grad[inner], want[inner], "the gradient where y_pred is strictly between 0 and 1", rtol=1e-4)


@pytest.mark.task("ch06.bce")
@pytest.mark.points(2)
def test_bce_small_example(impl):
    y_pred = torch.tensor([[0.2], [0.9], [0.6]])
    y = torch.tensor([[0.0], [1.0], [1.0]])
    _check_bce(impl.binary_cross_entropy(y_pred, y), y_pred, y, "on the 3-sample example")


@pytest.mark.task("ch06.bce")
@pytest.mark.points(2)
def test_bce_finite_at_exact_zero_and_one(impl):
    _check_bce_edges(impl, torch.tensor([[0.0], [1.0], [0.3], [0.8]]), torch.tensor([[0.0], [1.0], [0.0], [1.0]]))


@pytest.mark.task("ch06.bce")
@pytest.mark.points(1)
def test_bce_gradients_finite_at_exact_zero_and_one(probes):
    _check_bce_gradients_at_edges(probes, torch.tensor([[0.0], [1.0], [0.0], [1.0], [0.4]]),
                                  torch.tensor([[0.0], [1.0], [1.0], [0.0], [1.0]]))


@pytest.mark.task("ch06.bce")
@pytest.mark.points(1)
def test_bce_written_by_hand(probes):
    # the student's side blocks F.binary_cross_entropy (nn.BCELoss calls it),
    # torch._C._nn.binary_cross_entropy and F.binary_cross_entropy_with_logits, and reports calls
    y_pred = torch.tensor([[0.25], [0.75]])
    called, got = probes.bce_without_library(y_pred, torch.tensor([[0.0], [1.0]]))
    assert not called, ("binary_cross_entropy must be written by hand with torch.log, not by calling "
                        "F.binary_cross_entropy or nn.BCELoss")
    assert_close(got, -torch.log(torch.tensor(0.75)), "binary_cross_entropy([0.25, 0.75], [0, 1])")


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
                raise AssertionError(f"train's losses follow a known mistake: {text}")
        if torch.allclose(got, torch.full_like(got, got[0].item())):
            raise AssertionError("the loss never changes: call optimizer.step() after loss.backward(), "
                                 "with an optimizer built on model.parameters()")
    assert_close(got, want, f"the loss of each epoch {what}", rtol=1e-4,
                 hint="the summed BCE, one full-batch SGD update per epoch, each loss recorded before its "
                      "update: the loop of chapter 05")


@pytest.mark.task("ch06.train")
@pytest.mark.points(1)
def test_train_returns_one_float_per_epoch(probes):
    losses, _ = probes.train_lecture_model(_start(0), X_LECTURE, Y_LECTURE, epochs=7)
    assert isinstance(losses, list) and len(losses) == 7, \
        f"train(epochs=7) should return a list of 7 losses, got {type_name(losses)} of length {_length(losses)}"
    assert all(is_instance(v, float) for v in losses), \
        "train should return Python floats: append loss.item(), not the loss tensor"


@pytest.mark.task("ch06.train")
@pytest.mark.points(2)
def test_train_matches_lecture_loop(probes):
    start = _start(0)
    got, _ = probes.train_lecture_model(start, X_LECTURE, Y_LECTURE, epochs=20, lr=0.05)
    _check_losses(_as_losses(got, 20), start, X_LECTURE, Y_LECTURE, 20, 0.05, "on the lecture's data")


@pytest.mark.task("ch06.train")
@pytest.mark.points(2)
def test_trained_model_predicts_pass_after_4_hours(probes):
    # the lecture's 1000 epochs at lr=0.01 in 200 at lr=0.05: from 20 starting points both end
    # within 0.002 of each other, P(pass | 4 hours) 0.850-0.853
    losses, w = probes.train_lecture_model(_start(0), X_LECTURE, Y_LECTURE, epochs=200, lr=0.05)
    losses = _as_losses(losses, 200)
    assert losses[-1] < losses[0], \
        "the loss did not decrease: is optimizer.zero_grad() called every step, and step() after backward()?"
    hours = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    p = torch.sigmoid(F.linear(hours, w["weight"], w["bias"])).flatten().tolist()
    assert p[3] > 0.7, f"after 200 epochs at lr=0.05 P(pass | 4 hours) = {p[3]:.3f}; expected well above 0.5 " \
                       "(about 0.85 with the lecture's summed BCE)"
    assert p[0] < 0.3 and p[1] < 0.5 < p[2], \
        f"after 200 epochs at lr=0.05 P(pass | 1, 2, 3 hours) = {[round(v, 3) for v in p[:3]]}; the boundary " \
        "P = 0.5 should lie between 2 and 3 hours"
