"""Chapter 06, hidden tests: values against PyTorch, gradients, training, common mistakes."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grader.remote import type_name
from grader.testing import assert_close, check_gradients, reference_losses


# ----------------------------------------------------------------------------- model

@pytest.mark.task("ch06.model")
@pytest.mark.points(2)
def test_model_is_sigmoid_of_linear(impl):
    model = impl.LogisticRegressionModel()
    model.linear.load_state_dict({"weight": torch.tensor([[1.5]]), "bias": torch.tensor([-2.0])})
    x = torch.tensor([[-1.0], [0.0], [1.0], [2.0], [4.0]])
    out = model(x)
    linear = 1.5 * x - 2.0
    hint = None
    if out.shape == linear.shape and torch.allclose(out, linear, atol=1e-6):
        hint = "the sigmoid is missing: return torch.sigmoid(self.linear(x))"
    elif out.shape == linear.shape and torch.allclose(out, torch.sigmoid(1.5 * x), atol=1e-6):
        hint = "the bias is missing: use self.linear(x), which adds it"
    assert_close(out, torch.sigmoid(linear), "LogisticRegressionModel(x) with weight 1.5 and bias -2",
                 hint=hint)


@pytest.mark.task("ch06.model")
@pytest.mark.points(1)
def test_model_output_keeps_the_graph(probes):
    # the student's side runs forward, then out.sum().backward() when the output requires grad
    out, grad = probes.forward_then_backward(torch.tensor([[1.0], [3.0]]))
    assert out.requires_grad, \
        "forward's output does not require grad: do not detach or use .data/.item() inside forward"
    assert grad is not None and bool(grad.abs().sum() > 0), \
        "no gradient reaches self.linear.weight: build the output from self.linear(x)"


# ----------------------------------------------------------------------------- bce

def _bce_mistake_hint(impl, y_pred, y):
    """Name the mistake when the hand-written BCE equals a known wrong formula."""
    got = impl.binary_cross_entropy(y_pred, y)
    want = F.binary_cross_entropy(y_pred, y)
    if not isinstance(got, torch.Tensor) or got.numel() != 1:
        return None
    got = got.detach().double().reshape(())
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


@pytest.mark.task("ch06.bce")
@pytest.mark.points(2)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bce_matches_pytorch(impl, dtype):
    torch.manual_seed(0)
    y_pred = (torch.rand(16, 1) * 0.98 + 0.01).to(dtype)
    y = (torch.rand(16, 1) > 0.5).to(dtype)
    got = impl.binary_cross_entropy(y_pred, y)
    assert isinstance(got, torch.Tensor), \
        f"binary_cross_entropy returned {type_name(got)}: return a tensor (no .item()), " \
        "so that loss.backward() works"
    assert got.dim() == 0, f"binary_cross_entropy returned shape {list(got.shape)}: " \
                           "reduce to a scalar with .mean()"
    assert got.dtype == dtype, f"for {dtype} inputs the loss is {got.dtype}: compute in the inputs' dtype"
    want = F.binary_cross_entropy(y_pred, y)
    assert_close(got, want, f"binary_cross_entropy on 16 {dtype} samples", rtol=1e-5, atol=1e-6,
                 hint=_bce_mistake_hint(impl, y_pred, y))


@pytest.mark.task("ch06.bce")
@pytest.mark.points(1)
def test_bce_soft_targets(impl):
    torch.manual_seed(1)
    y_pred = torch.rand(8, 1, dtype=torch.float64) * 0.9 + 0.05
    y = torch.rand(8, 1, dtype=torch.float64)
    hint = _bce_mistake_hint(impl, y_pred, y) or (
        "use both terms, y * log(p) and (1 - y) * log(1 - p), for every sample: "
        "do not select one of them with the label")
    assert_close(impl.binary_cross_entropy(y_pred, y), F.binary_cross_entropy(y_pred, y),
                 "binary_cross_entropy with targets between 0 and 1", rtol=1e-6, hint=hint)


@pytest.mark.task("ch06.bce")
@pytest.mark.points(3)
def test_bce_finite_at_exact_zero_and_one(impl):
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
    mixed = impl.binary_cross_entropy(torch.tensor([[0.0], [1.0], [0.3]]), torch.tensor([[0.0], [1.0], [0.0]]))
    want = F.binary_cross_entropy(torch.tensor([[0.3]]), torch.tensor([[0.0]])).item() / 3
    assert abs(mixed.item() - want) < 1e-4, \
        f"binary_cross_entropy([0, 1, 0.3], [0, 1, 0]) = {mixed.item():.6f}, expected {want:.6f}"


@pytest.mark.task("ch06.bce")
@pytest.mark.points(2)
def test_bce_gradients_finite_at_exact_zero_and_one(probes):
    y_pred = torch.tensor([[0.0], [1.0], [0.0], [1.0], [0.4]], requires_grad=True)
    y = torch.tensor([[0.0], [1.0], [1.0], [0.0], [1.0]])
    # the student's side computes the loss and runs loss.backward() when the loss requires grad
    loss, grad = probes.bce_backward(y_pred.detach(), y)
    assert isinstance(loss, torch.Tensor) and loss.requires_grad, \
        "the loss does not require grad: keep it a tensor built from y_pred (no .item(), .detach())"
    assert grad is not None and bool(torch.isfinite(grad).all()), (
        f"the gradient with respect to y_pred is {grad.flatten().tolist() if grad is not None else None} "
        "where y_pred is exactly 0 or 1: clamp y_pred itself before the log, to [EPS, 1 - EPS] "
        "(without a clamp, or with log's result clamped at -100, backward computes 0 * inf = nan)")
    want = torch.autograd.grad(F.binary_cross_entropy(y_pred[4:], y[4:]) / 5, y_pred)[0][4]
    assert_close(grad[4], want, "the gradient at y_pred = 0.4", rtol=1e-4)


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


@pytest.mark.task("ch06.bce")
@pytest.mark.points(1)
def test_bce_written_by_hand(probes):
    # the student's side blocks F.binary_cross_entropy (nn.BCELoss calls it),
    # torch._C._nn.binary_cross_entropy and F.binary_cross_entropy_with_logits, and reports calls
    y_pred = torch.tensor([[0.25], [0.75]])
    called, got = probes.bce_without_library(y_pred, torch.tensor([[0.0], [1.0]]))
    assert not called, ("binary_cross_entropy must be written by hand with torch.log, not by calling "
                        "F.binary_cross_entropy or nn.BCELoss")
    want = -torch.log(torch.tensor(0.75))
    assert_close(got, want, "binary_cross_entropy([0.25, 0.75], [0, 1])")


# ----------------------------------------------------------------------------- train

def _start_weights():
    """The weights of nn.Linear(1, 1) after manual_seed(0): the start of the student's model."""
    torch.manual_seed(0)
    return nn.Linear(1, 1).state_dict()


class _Reference(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(1, 1)

    def forward(self, x):
        return torch.sigmoid(self.linear(x))


def _reference_losses(x, y, epochs, lr, *, zero_grad=True, reduction="sum", record_after=False):
    """The lecture's loop, and the common ways of getting it wrong, for fingerprints."""
    model = _Reference()
    return reference_losses(model, nn.BCELoss(reduction=reduction), x, y, epochs, lr,
                            zero_grad=zero_grad, record_after=record_after)


@pytest.mark.task("ch06.train")
@pytest.mark.points(3)
def test_train_matches_lecture_loop(impl, probes):
    x, y = impl.X_DATA, impl.Y_DATA
    # the model's own forward is replaced by sigmoid(self.linear(x)), so only train() is graded here
    got, _ = probes.train_linear_part(_start_weights(), x, y, 60, 0.05)
    want = _reference_losses(x, y, 60, 0.05)
    assert len(got) == 60, f"train(epochs=60) returned {len(got)} losses"
    got_t = torch.tensor([float(v) for v in got])
    if not torch.allclose(got_t, torch.tensor(want), rtol=1e-4):
        for kwargs, mistake in [
            (dict(zero_grad=False), "the gradients pile up: call optimizer.zero_grad() every epoch, "
                                    "before loss.backward()"),
            (dict(reduction="mean"), "the loss is the mean, not the sum: use nn.BCELoss(reduction='sum') "
                                     "as the lecture does"),
            (dict(record_after=True), "you record the loss after optimizer.step(): "
                                      "keep the loss computed before the update"),
        ]:
            wrong = _reference_losses(x, y, 60, 0.05, **kwargs)
            if torch.allclose(got_t, torch.tensor(wrong), rtol=1e-4):
                raise AssertionError(f"train's losses follow a known mistake: {mistake}")
        if torch.allclose(got_t, torch.full_like(got_t, got_t[0].item())):
            raise AssertionError("the loss never changes: call optimizer.step() after loss.backward(), "
                                 "with an optimizer built on model.parameters()")
    assert_close(got_t, torch.tensor(want), "the loss of each epoch", rtol=1e-4,
                 hint="compare your loop with: loss = BCELoss(sum), zero_grad, backward, step")


@pytest.mark.task("ch06.train")
@pytest.mark.points(3)
def test_trained_model_predicts_pass_after_4_hours(impl, probes):
    # forward replaced by sigmoid(self.linear(x)) on the student's side: grade train() alone
    losses, w = probes.train_linear_part(_start_weights(), impl.X_DATA, impl.Y_DATA, 1000, 0.01)
    assert losses[-1] < losses[0], \
        "the loss did not decrease: is optimizer.zero_grad() called every step, and step() after backward()?"
    hours = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    p = torch.sigmoid(F.linear(hours, w["weight"], w["bias"])).flatten().tolist()
    assert p[3] > 0.7, f"after 1000 epochs P(pass | 4 hours) = {p[3]:.3f}; expected well above 0.5 " \
                       "(about 0.85 with the lecture's summed BCE and lr = 0.01)"
    assert p[0] < 0.3 and p[1] < 0.5 < p[2], \
        f"after 1000 epochs P(pass | 1, 2, 3 hours) = {[round(v, 3) for v in p[:3]]}; the boundary " \
        "P = 0.5 should lie between 2 and 3 hours"
