"""Chapter 03, hidden tests: the public tests' checks on held-out data, weights and learning
rates (float64 references, central differences), so answers fitted to the lecture's numbers fail."""
import functools

import pytest
import torch

from grader.testing import assert_close, check_gradients

from .test_public import (LECTURE_GRADIENT, MISSING_X, X, Y, _check_cost, _check_gd, _check_sgd, _close,
                          _gradient_mistake, _samples)

XS = [0.5, -1.0, 2.0, 3.5]
YS = [1.2, -2.5, 3.1, 7.4]
XS2 = [-2.0, -0.5, 0.25, 1.0, 1.5, 4.0]
YS2 = [-3.5, -1.25, 0.8, 1.9, 2.2, 6.1]
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


def _on(xs, ys):
    """The references bound to one data set, as _check_gd takes them."""
    return dict(cost_ref=functools.partial(_cost, xs, ys), grad_ref=functools.partial(_grad, xs, ys))



def _right_on_the_lecture_data(function, lecture_values):
    """True when `function(X, Y, w)` gives the lecture's values (for the held-out fingerprint)."""
    try:
        return all(_close(function(X, Y, w), v) for w, v in lecture_values.items())
    except Exception:  # noqa: BLE001 - any failure there means it is not "right on the lecture's data"
        return False


LECTURE_ONLY = ("{name} is right on the lecture's data only: it must work for any xs, ys and w "
                "(are the lecture's answers written into the code?)")


# --------------------------------------------------------------------------- ch03.cost

@pytest.mark.task("ch03.cost")
@pytest.mark.points(2)
def test_cost_values(impl):
    _check_cost(impl, XS, YS, (-1.3, 0.0, 0.8, 2.5), functools.partial(_cost, XS, YS))
    _check_cost(impl, XS2, YS2, (0.4, 1.7), functools.partial(_cost, XS2, YS2))


# --------------------------------------------------------------------------- ch03.gradient

@pytest.mark.task("ch03.gradient")
@pytest.mark.points(2)
def test_gradient_matches_central_differences(impl):
    ws = [-1.3, 0.0, 0.8, 2.5]
    try:
        got = [float(impl.gradient(XS, YS, w)) for w in ws]
    except NotImplementedError:
        raise
    except Exception:
        if _right_on_the_lecture_data(impl.gradient, LECTURE_GRADIENT):
            raise AssertionError(LECTURE_ONLY.format(name="gradient")) from None
        raise
    ref = [_grad(XS, YS, w) for w in ws]
    if not _close(got, ref):
        message = _gradient_mistake(got, ref, N)
        if message:
            raise AssertionError(message)
        if _close(got, [sum(2 * (x * w - y) for x, y in zip(XS, YS)) / N for w in ws]):
            raise AssertionError(MISSING_X)
        if _right_on_the_lecture_data(impl.gradient, LECTURE_GRADIENT):
            raise AssertionError(LECTURE_ONLY.format(name="gradient"))
    xs_t = torch.tensor(XS, dtype=torch.float64)
    ys_t = torch.tensor(YS, dtype=torch.float64)
    for w, g in zip(ws, got):
        check_gradients(lambda wt: ((xs_t * wt - ys_t) ** 2).mean(), [torch.tensor(w, dtype=torch.float64)],
                        analytic=[torch.tensor(g, dtype=torch.float64)], names=[f"w at w = {w}"],
                        rtol=1e-5, atol=1e-6, hint="{ratio}; the gradient is d cost / dw of the MEAN squared error")


@pytest.mark.task("ch03.gradient")
@pytest.mark.points(1)
def test_gradient_vanishes_at_the_best_weight(impl):
    best = sum(x * y for x, y in zip(XS2, YS2)) / sum(x * x for x in XS2)
    g = impl.gradient(XS2, YS2, best)
    assert abs(g) < 1e-5, f"at the best weight w = {best:.4f} of these data the gradient should be 0, got {g}"
    above, below = impl.gradient(XS2, YS2, best + 1.0), impl.gradient(XS2, YS2, best - 1.0)
    assert above > 0 > below, \
        f"above the best weight the cost rises with w, so the gradient must be positive there and negative " \
        f"below it; got {above} above and {below} below"


# --------------------------------------------------------------------------- ch03.gd

@pytest.mark.task("ch03.gd")
@pytest.mark.points(2)
def test_gradient_descent_matches_float64_loop(impl):
    _check_gd(impl, XS, YS, 0.3, 0.03, 30, dict(w=0.3, lr=0.03, epochs=30),
              functools.partial(_ref_gd, XS, YS), **_on(XS, YS))
    _check_gd(impl, XS2, YS2, 1.0, 0.01, 100, {}, functools.partial(_ref_gd, XS2, YS2), **_on(XS2, YS2))


# --------------------------------------------------------------------------- ch03.sgd

@pytest.mark.task("ch03.sgd")
@pytest.mark.points(2)
def test_sgd_matches_float64_loop(impl):
    _check_sgd(impl, XS, YS, 0.3, 0.02, 30, dict(w=0.3, lr=0.02, epochs=30),
               functools.partial(_ref_sgd, XS, YS), _samples(XS, YS))
    _check_sgd(impl, XS2, YS2, 1.0, 0.01, 100, {}, functools.partial(_ref_sgd, XS2, YS2), _samples(XS2, YS2))
