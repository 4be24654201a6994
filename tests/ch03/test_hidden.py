"""Chapter 03, hidden tests: float64 references, central differences, and the common mistakes."""
import pytest
import torch

from grader.testing import assert_close, check_gradients

XS = [0.5, -1.0, 2.0, 3.5]
YS = [1.2, -2.5, 3.1, 7.4]
N = len(XS)


def _cost(xs, ys, w):
    return sum((x * w - y) ** 2 for x, y in zip(xs, ys)) / len(xs)


def _grad(xs, ys, w):
    return sum(2 * x * (x * w - y) for x, y in zip(xs, ys)) / len(xs)


def _ref_gd(xs, ys, w, lr, epochs, *, after=False, ascent=False):
    """Lecture 03's loop in float64, and the usual ways of getting it wrong (for fingerprints)."""
    costs = []
    for _ in range(epochs):
        if not after:
            costs.append(_cost(xs, ys, w))
        step = lr * _grad(xs, ys, w)
        w = w + step if ascent else w - step
        if after:
            costs.append(_cost(xs, ys, w))
    return w, costs


def _ref_sgd(xs, ys, w, lr, epochs, *, before=False, full_batch=False, epoch_sum=False):
    losses = []
    for _ in range(epochs):
        total = 0.0
        for x, y in zip(xs, ys):
            sample_loss = (x * w - y) ** 2
            w -= lr * (_grad(xs, ys, w) if full_batch else 2 * x * (x * w - y))
            if not before:
                sample_loss = (x * w - y) ** 2
            total += sample_loss
        losses.append(total if epoch_sum else sample_loss)
    return w, losses


def _close(a, b, rtol=1e-5, atol=1e-7):
    try:
        return bool(torch.allclose(torch.as_tensor(a, dtype=torch.float64),
                                   torch.as_tensor(b, dtype=torch.float64), rtol=rtol, atol=atol))
    except (TypeError, RuntimeError, ValueError):
        return False


def _helpers_are_wrong(impl):
    """A message if the student's cost or gradient is wrong (gd and sgd are built on them), else ''."""
    wrong = []
    for name, ref in (("cost", _cost), ("gradient", _grad)):
        try:
            if not all(_close(getattr(impl, name)(XS, YS, w), ref(XS, YS, w)) for w in (-0.7, 1.6)):
                wrong.append(name)
        except NotImplementedError:
            pass  # not written yet: gd/sgd may still do their own arithmetic
    if not wrong:
        return ""
    names = " and ".join(f"{n}()" for n in wrong)
    return (f"your {names} {'is' if len(wrong) == 1 else 'are'} wrong (see the ch03.{wrong[0]} tests), "
            "and the training loop builds on it: fix that first")


def _as_floats(values, what):
    assert isinstance(values, (list, tuple)), f"{what} should be a list of floats, got {type(values).__name__}"
    return [float(v) for v in values]


# --------------------------------------------------------------------------- ch03.cost

@pytest.mark.task("ch03.cost")
@pytest.mark.points(2)
def test_cost_values(impl):
    for w in (-1.3, 0.0, 0.8, 2.5):
        got = impl.cost(XS, YS, w)
        want = _cost(XS, YS, w)
        if _close(got, sum((x * w - y) ** 2 for x, y in zip(XS, YS))):
            raise AssertionError(f"cost is {N}x too large: it is the mean over the samples, "
                                 "so divide the sum by len(xs)")
        if _close(got, sum(abs(x * w - y) for x, y in zip(XS, YS)) / N):
            raise AssertionError("cost averages |x * w - y|: square the errors, (x * w - y) ** 2")
        assert_close(got, want, f"cost(xs, ys, w={w})", rtol=1e-6, atol=1e-9,
                     hint="{ratio}: cost is the mean of (x * w - y) ** 2, so divide the sum by len(xs)")


# --------------------------------------------------------------------------- ch03.gradient

@pytest.mark.task("ch03.gradient")
@pytest.mark.points(3)
def test_gradient_matches_central_differences(impl):
    ws = [-1.3, 0.0, 0.8, 2.5]
    got = torch.tensor([float(impl.gradient(XS, YS, w)) for w in ws], dtype=torch.float64)
    ref = torch.tensor([_grad(XS, YS, w) for w in ws], dtype=torch.float64)
    known = [
        (ref / 2, "gradient is 2x too small: did you drop the factor 2? "
                  "d/dw (x*w - y)**2 = 2*x*(x*w - y)"),
        (-ref, "gradient has the wrong sign: differentiate (x*w - y)**2, which gives 2*x*(x*w - y), "
               "not 2*x*(y - x*w)"),
        (ref * N, f"gradient is the sum over the samples, {N}x too large: divide by len(xs), as cost does"),
        (torch.tensor([sum(2 * (x * w - y) for x, y in zip(XS, YS)) / N for w in ws], dtype=torch.float64),
         "gradient is missing the factor x: by the chain rule d/dw (x*w - y)**2 = 2*x*(x*w - y), "
         "not 2*(x*w - y)"),
    ]
    for wrong, message in known:
        if _close(got, wrong):
            raise AssertionError(message)
    xs_t = torch.tensor(XS, dtype=torch.float64)
    ys_t = torch.tensor(YS, dtype=torch.float64)
    for w, g in zip(ws, got):
        check_gradients(lambda wt: ((xs_t * wt - ys_t) ** 2).mean(), [torch.tensor(w, dtype=torch.float64)],
                        analytic=[g], names=[f"w at w = {w}"], rtol=1e-5, atol=1e-6,
                        hint="{ratio}; the gradient is the mean of 2*x*(x*w - y)")


@pytest.mark.task("ch03.gradient")
@pytest.mark.points(1)
def test_gradient_vanishes_at_the_best_weight(impl):
    g = impl.gradient([1.0, 2.0, 3.0], [2.0, 4.0, 6.0], 2.0)
    assert abs(g) < 1e-9, f"for y = 2x the gradient at w = 2 should be 0 (the minimum), got {g}"
    above = impl.gradient([1.0, 2.0, 3.0], [2.0, 4.0, 6.0], 3.0)
    assert above > 0, \
        f"at w = 3 (above the best w = 2) the cost rises with w, so the gradient must be positive, got {above}"


# --------------------------------------------------------------------------- ch03.gd

def _check_gd(impl, xs, ys, w0, lr, epochs, call=None):
    """`call`: the keyword arguments passed to gradient_descent (None: the defaults)."""
    w, costs = impl.gradient_descent(xs, ys, **(call or {}))
    costs = _as_floats(costs, "the costs")
    assert len(costs) == epochs, \
        f"gradient_descent(epochs={epochs}) returned {len(costs)} costs: one cost per epoch, use `epochs`"
    want_w, want = _ref_gd(xs, ys, w0, lr, epochs)
    if not _close(costs, want):
        helpers = _helpers_are_wrong(impl)
        if helpers:
            raise AssertionError(f"gradient_descent's costs are wrong: {helpers}")
        for wrong, message in [
            (_ref_gd(xs, ys, w0, lr, epochs, after=True)[1],
             "you record the cost after the update: append cost(xs, ys, w) before w changes"),
            (_ref_gd(xs, ys, w0, lr, epochs, ascent=True)[1],
             "w moves uphill: the update is w -= lr * gradient, against the slope"),
            (_ref_gd(xs, ys, w0, 0.01, epochs)[1], f"the learning rate lr={lr} is ignored: step by lr * gradient"),
            (_ref_gd(xs, ys, 1.0, lr, epochs)[1], f"training starts from 1.0 instead of the given w={w0}"),
        ]:
            if _close(costs, wrong):
                raise AssertionError(f"gradient_descent's costs follow a known mistake: {message}")
    assert_close(torch.tensor(costs), torch.tensor(want), "the cost of each epoch", rtol=1e-5, atol=1e-7,
                 hint="per epoch: record cost(xs, ys, w), then w -= lr * gradient(xs, ys, w)")
    assert_close(float(w), want_w, "the final w", rtol=1e-5, atol=1e-7)


@pytest.mark.task("ch03.gd")
@pytest.mark.points(3)
def test_gradient_descent_matches_float64_loop(impl):
    _check_gd(impl, XS, YS, 0.3, 0.03, 30, call=dict(w=0.3, lr=0.03, epochs=30))


@pytest.mark.task("ch03.gd")
@pytest.mark.points(1)
def test_gradient_descent_lecture_defaults(impl):
    _check_gd(impl, [1.0, 2.0, 3.0], [2.0, 4.0, 6.0], 1.0, 0.01, 100)
    w, _ = impl.gradient_descent([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])
    assert abs(w - 2.0) < 1e-3, f"after the lecture's 100 epochs w = {w}, expected about 2"


# --------------------------------------------------------------------------- ch03.sgd

def _check_sgd(impl, xs, ys, w0, lr, epochs, call=None):
    """`call`: the keyword arguments passed to sgd (None: the defaults)."""
    w, losses = impl.sgd(xs, ys, **(call or {}))
    losses = _as_floats(losses, "the losses")
    assert len(losses) == epochs, \
        f"sgd(epochs={epochs}) returned {len(losses)} losses: record one loss per epoch, not per sample"
    want_w, want = _ref_sgd(xs, ys, w0, lr, epochs)
    if not _close(losses, want):
        helpers = _helpers_are_wrong(impl)
        if helpers:
            raise AssertionError(f"sgd's losses are wrong: {helpers}")
        for wrong, message in [
            (_ref_sgd(xs, ys, w0, lr, epochs, before=True)[1],
             "you record the last sample's loss before its update: compute the loss after w is updated, "
             "as the lecture does"),
            (_ref_sgd(xs, ys, w0, lr, epochs, full_batch=True)[1],
             "every step uses the gradient of all samples: SGD steps with the current sample's gradient "
             "only, gradient([x], [y], w)"),
            (_ref_sgd(xs, ys, w0, lr, epochs, epoch_sum=True)[1],
             "you record the sum of the epoch's sample losses: record the loss of its last sample"),
        ]:
            if _close(losses, wrong):
                raise AssertionError(f"sgd's losses follow a known mistake: {message}")
    assert_close(torch.tensor(losses), torch.tensor(want), "the loss of each epoch", rtol=1e-5, atol=1e-7,
                 hint="per sample in order: w -= lr * gradient([x], [y], w); then its loss with the new w")
    assert_close(float(w), want_w, "the final w", rtol=1e-5, atol=1e-7)


@pytest.mark.task("ch03.sgd")
@pytest.mark.points(3)
def test_sgd_matches_float64_loop(impl):
    _check_sgd(impl, XS, YS, 0.3, 0.02, 30, call=dict(w=0.3, lr=0.02, epochs=30))


@pytest.mark.task("ch03.sgd")
@pytest.mark.points(1)
def test_sgd_lecture_defaults(impl):
    _check_sgd(impl, [1.0, 2.0, 3.0], [2.0, 4.0, 6.0], 1.0, 0.01, 100)
    w, _ = impl.sgd([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])
    assert abs(w - 2.0) < 1e-3, f"after the lecture's 100 epochs w = {w}, expected about 2"
