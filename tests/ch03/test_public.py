"""Chapter 03, public tests: the lecture's numbers, its training runs and the common mistakes.

Every expected value here is lecture 03's: the data x = [1, 2, 3], y = [2, 4, 6], whose best
weight is w = 2, and the cost there, 14/3 * (w - 2) ** 2. The runs' references step against
the slope of that cost measured by central differences (exact for a parabola), so they do
not give away the derivative you derive by hand. The hidden tests check the same things on
other data, weights and learning rates.
"""
import pytest
import torch

from grader.testing import assert_close

X, Y = [1.0, 2.0, 3.0], [2.0, 4.0, 6.0]

# lecture 03's data, y = 2x: cost and slope at w, from the lecture's worked numbers
LECTURE_COST = {1.0: 14 / 3, 0.0: 56 / 3, 3.5: 10.5}        # (1 + 4 + 9) / 3 at w = 1
LECTURE_GRADIENT = {1.0: -28 / 3, 0.0: -56 / 3, 3.0: 28 / 3}  # the lecture's -9.3333 at w = 1


def _lecture_cost(w):
    return 14 / 3 * (w - 2) ** 2


def _slope_of(cost, h=1e-3):
    """The slope of a cost that is a parabola in w, by central differences (exact for a parabola)."""
    return lambda w: (cost(w + h) - cost(w - h)) / (2 * h)


_lecture_slope = _slope_of(_lecture_cost)


def _close(a, b, rtol=1e-5, atol=1e-7):
    try:
        return bool(torch.allclose(torch.as_tensor(a, dtype=torch.float64),
                                   torch.as_tensor(b, dtype=torch.float64), rtol=rtol, atol=atol))
    except (TypeError, RuntimeError, ValueError):
        return False


def _as_floats(values, what):
    assert isinstance(values, (list, tuple)), f"{what} should be a list of floats, got {type(values).__name__}"
    return [float(v) for v in values]


def _helpers_are_wrong(impl, cases, ws=(-0.7, 1.6)):
    """A message if the student's cost or gradient is wrong on the data a loop gives them (gd and
    sgd are built on them), else ''. `cases`: (xs, ys, cost_ref, grad_ref) for each data set the
    loop passes (all samples for gd, each one-sample list for sgd); cost_ref(w), grad_ref(w): the
    right values there."""
    wrong, where = [], ""
    for name, index in (("cost", 2), ("gradient", 3)):
        for case in cases:
            xs, ys, ref = case[0], case[1], case[index]
            try:
                if not all(_close(getattr(impl, name)(xs, ys, w), ref(w)) for w in ws):
                    wrong.append(name)
                    if len(xs) == 1 and not where:
                        where = f" on the one-sample lists [{xs[0]}], [{ys[0]}] that sgd passes"
                    break
            except NotImplementedError:
                break  # not written yet: gd/sgd may still do their own arithmetic
    if not wrong:
        return ""
    names = " and ".join(f"{n}()" for n in wrong)
    return (f"your {names} {'is' if len(wrong) == 1 else 'are'} wrong{where} (see the ch03.{wrong[0]} tests), "
            f"and the training loop builds on it: fix ch03.{wrong[0]} first")


def _samples(xs, ys):
    """The cases for _helpers_are_wrong in sgd: each sample alone, its cost and that cost's slope."""
    cases = []
    for x, y in zip(xs, ys):
        cost = (lambda w, x=x, y=y: (x * w - y) ** 2)
        cases.append(([x], [y], cost, _slope_of(cost)))
    return cases


# --------------------------------------------------------------------------- ch03.cost

def _check_cost(impl, xs, ys, ws, want):
    """cost(xs, ys, w) for each w against want(w), with the common mistakes named."""
    n = len(xs)
    for w in ws:
        got = impl.cost(xs, ys, w)
        assert isinstance(got, float), f"cost returned {type(got).__name__}, expected a Python float"
        if not _close(got, want(w)):
            if _close(got, sum((x * w - y) ** 2 for x, y in zip(xs, ys))):
                raise AssertionError(f"cost is {n}x too large: it is the mean over the samples, "
                                     "so divide the sum by len(xs)")
            if _close(got, sum(abs(x * w - y) for x, y in zip(xs, ys)) / n):
                raise AssertionError("cost averages |x * w - y|: square the errors, (x * w - y) ** 2")
        assert_close(got, want(w), f"cost(xs, ys, w={w})", rtol=1e-5, atol=1e-6,
                     hint="cost is the mean over the samples of (x * w - y) ** 2")


@pytest.mark.task("ch03.cost")
@pytest.mark.points(1)
def test_cost_lecture_data(impl):
    _check_cost(impl, X, Y, list(LECTURE_COST), LECTURE_COST.__getitem__)


# --------------------------------------------------------------------------- ch03.gradient

def _gradient_mistake(got, want, n):
    """The name of a known mistake if every got[i] is the same wrong multiple of want[i], else ''.
    On the lecture's data (y = 2x) every mistake below is such a multiple, whatever w."""
    known = [
        (0.5, "gradient is 2x too small: did you drop the factor 2? The derivative of a square u ** 2 "
              "is 2 * u times the derivative of u (lecture 03)"),
        (-1.0, "gradient has the wrong sign: above the best weight the cost rises with w, so the slope "
               "must be positive there; check the sign of the inner derivative in the chain rule"),
        (float(n), f"gradient is the sum over the samples, {n}x too large: the cost is a mean, so its "
                   "derivative is the mean of the samples' derivatives: divide by len(xs), as cost does"),
    ]
    for k, message in known:
        if _close(got, [k * v for v in want]):
            return message
    return ""


MISSING_X = ("gradient is missing the factor x: by the chain rule the derivative of (x * w - y) ** 2 "
             "includes the derivative of x * w - y with respect to w, which is x")


@pytest.mark.task("ch03.gradient")
@pytest.mark.points(2)
def test_gradient_lecture_data(impl):
    ws = list(LECTURE_GRADIENT)
    got = []
    for w in ws:
        g = impl.gradient(X, Y, w)
        assert isinstance(g, float), f"gradient returned {type(g).__name__}, expected a Python float"
        got.append(g)
    want = [LECTURE_GRADIENT[w] for w in ws]
    if not _close(got, want):
        message = _gradient_mistake(got, want, len(X))
        if message:
            raise AssertionError(message)
        if _close(got, [4 * (w - 2) for w in ws]):  # what the slope is without the factor x, here
            raise AssertionError(MISSING_X)
    for w, g, v in zip(ws, got, want):
        assert_close(g, v, f"gradient(x, y, w={w}) on the lecture's data", rtol=1e-5, atol=1e-6,
                     hint="the lecture's worked value; derive d cost / dw by hand with the chain rule")
    at_best = impl.gradient(X, Y, 2.0)
    assert abs(at_best) < 1e-6, \
        f"for y = 2x the gradient at w = 2 should be 0 (the minimum of the cost), got {at_best}"


@pytest.mark.task("ch03.gradient")
@pytest.mark.points(1)
def test_gradient_is_derived_by_hand(impl, probes):
    calls, value = probes.gradient_autograd_calls(X, Y, 1.0)
    assert calls == 0, \
        "gradient ran autograd's backward: in this chapter derive it by hand (the chain rule on paper, " \
        "then plain arithmetic), as lecture 03 does; autograd is chapter 04"
    assert _close(value, -28 / 3), f"gradient(x, y, w=1) returned {value}, expected -9.3333 (-28/3)"


# --------------------------------------------------------------------------- ch03.gd

def _lecture_gd(w0, lr, epochs, *, after=False, ascent=False):
    """Gradient descent on the lecture's data, and the common ways of getting it wrong (for
    fingerprints)."""
    w, costs = w0, []
    for _ in range(epochs):
        if not after:
            costs.append(_lecture_cost(w))
        step = lr * _lecture_slope(w)
        w = w + step if ascent else w - step
        if after:
            costs.append(_lecture_cost(w))
    return w, costs


def _check_gd(impl, xs, ys, w0, lr, epochs, call, ref, cost_ref, grad_ref):
    """gradient_descent(xs, ys, **call) against ref(w0, lr, epochs, after=, ascent=) -> (w, costs);
    cost_ref(w), grad_ref(w): the right cost and gradient on (xs, ys), to blame them first."""
    cases = [(xs, ys, cost_ref, grad_ref)]
    out = impl.gradient_descent(xs, ys, **call)
    assert isinstance(out, tuple) and len(out) == 2, "gradient_descent should return a pair (w, costs)"
    w, costs = out
    costs = _as_floats(costs, "the costs")
    assert len(costs) == epochs, \
        f"gradient_descent(epochs={epochs}) returned {len(costs)} costs: one cost per epoch, use `epochs`"
    want_w, want = ref(w0, lr, epochs)
    if not _close(costs, want):
        helpers = _helpers_are_wrong(impl, cases)
        if helpers:
            raise AssertionError(f"gradient_descent's costs are wrong: {helpers}")
        for wrong, message in [
            (ref(w0, lr, epochs, after=True)[1],
             "you record the cost after the update: record the cost at w before w changes"),
            (ref(w0, lr, epochs, ascent=True)[1],
             "w moves uphill: step against the slope, subtracting lr times the gradient"),
            (ref(w0, 0.01, epochs)[1], f"the learning rate lr={lr} is ignored: step by lr times the gradient"),
            (ref(1.0, lr, epochs)[1], f"training starts from 1.0 instead of the given w={w0}"),
        ]:
            if _close(costs, wrong):
                raise AssertionError(f"gradient_descent's costs follow a known mistake: {message}")
    assert_close(torch.tensor(costs, dtype=torch.float64), torch.tensor(want, dtype=torch.float64),
                 "the cost of each epoch", rtol=1e-5, atol=1e-6,
                 hint="per epoch: record the cost at the current w, then step w by lr times the gradient")
    assert_close(float(w), want_w, "the final w", rtol=1e-5, atol=1e-6)


@pytest.mark.task("ch03.gd")
@pytest.mark.points(1)
def test_gradient_descent_returns_w_and_costs(impl):
    out = impl.gradient_descent(X, Y, epochs=5)
    assert isinstance(out, tuple) and len(out) == 2, "gradient_descent should return a pair (w, costs)"
    w, costs = out
    assert isinstance(w, float), f"the final w is {type(w).__name__}, expected a Python float"
    assert isinstance(costs, list) and len(costs) == 5 and all(isinstance(c, float) for c in costs), \
        "gradient_descent(epochs=5) should return a list of 5 float costs, one per epoch"
    assert abs(costs[0] - 14 / 3) < 1e-6, \
        f"the first cost is {costs[0]}, expected 4.6667: the cost at the starting w = 1.0, recorded before " \
        "the first update"


@pytest.mark.task("ch03.gd")
@pytest.mark.points(2)
def test_gradient_descent_lecture_runs(impl):
    # the lecture's run (w = 1, lr = 0.01, 100 epochs), then another start and learning rate
    _check_gd(impl, X, Y, 1.0, 0.01, 100, {}, _lecture_gd, _lecture_cost, _lecture_slope)
    _check_gd(impl, X, Y, 0.0, 0.05, 10, dict(w=0.0, lr=0.05, epochs=10), _lecture_gd, _lecture_cost,
              _lecture_slope)
    w, _ = impl.gradient_descent(X, Y)
    assert abs(w - 2.0) < 1e-3, f"after the lecture's 100 epochs w = {w}, expected about 2"


# --------------------------------------------------------------------------- ch03.sgd

def _lecture_sgd(w0, lr, epochs, *, before=False, full_batch=False, epoch_sum=False):
    """SGD on the lecture's data, each step against the slope of one sample's cost (x * w - y) ** 2;
    and the common ways of getting it wrong (for fingerprints)."""
    w, losses = w0, []
    for _ in range(epochs):
        total = 0.0
        for x, y in zip(X, Y):
            sample_cost = (lambda v, x=x, y=y: (x * v - y) ** 2)
            sample_loss = sample_cost(w)
            w -= lr * (_lecture_slope(w) if full_batch else _slope_of(sample_cost)(w))
            if not before:
                sample_loss = sample_cost(w)
            total += sample_loss
        losses.append(total if epoch_sum else sample_loss)
    return w, losses


def _check_sgd(impl, xs, ys, w0, lr, epochs, call, ref, cases):
    """sgd(xs, ys, **call) against ref(w0, lr, epochs, before=, full_batch=, epoch_sum=) -> (w, losses);
    `cases`: each sample's right cost and gradient, as _samples gives them, to blame them first."""
    out = impl.sgd(xs, ys, **call)
    assert isinstance(out, tuple) and len(out) == 2, "sgd should return a pair (w, losses)"
    w, losses = out
    losses = _as_floats(losses, "the losses")
    assert len(losses) == epochs, \
        f"sgd(epochs={epochs}) returned {len(losses)} losses: record one loss per epoch, not per sample"
    want_w, want = ref(w0, lr, epochs)
    if not _close(losses, want):
        helpers = _helpers_are_wrong(impl, cases)
        if helpers:
            raise AssertionError(f"sgd's losses are wrong: {helpers}")
        for wrong, message in [
            (ref(w0, lr, epochs, before=True)[1],
             "you record the last sample's loss before its update: compute the loss after w is updated, "
             "as the lecture does"),
            (ref(w0, lr, epochs, full_batch=True)[1],
             "every step uses the gradient of all samples: SGD steps with the current sample's gradient "
             "only, the gradient of the one-sample lists [x], [y]"),
            (ref(w0, lr, epochs, epoch_sum=True)[1],
             "you record the sum of the epoch's sample losses: record the loss of its last sample"),
        ]:
            if _close(losses, wrong):
                raise AssertionError(f"sgd's losses follow a known mistake: {message}")
    assert_close(torch.tensor(losses, dtype=torch.float64), torch.tensor(want, dtype=torch.float64),
                 "the loss of each epoch", rtol=1e-5, atol=1e-6,
                 hint="per sample in order: step w with that sample's gradient, then its loss with the new w")
    assert_close(float(w), want_w, "the final w", rtol=1e-5, atol=1e-6)


@pytest.mark.task("ch03.sgd")
@pytest.mark.points(1)
def test_sgd_returns_w_and_losses(impl):
    out = impl.sgd(X, Y, epochs=4)
    assert isinstance(out, tuple) and len(out) == 2, "sgd should return a pair (w, losses)"
    w, losses = out
    assert isinstance(w, float), f"the final w is {type(w).__name__}, expected a Python float"
    assert isinstance(losses, list) and len(losses) == 4 and all(isinstance(v, float) for v in losses), \
        "sgd(epochs=4) should return a list of 4 float losses, one per epoch"


@pytest.mark.task("ch03.sgd")
@pytest.mark.points(2)
def test_sgd_lecture_runs(impl):
    cases = _samples(X, Y)
    _check_sgd(impl, X, Y, 1.0, 0.01, 100, {}, _lecture_sgd, cases)
    _check_sgd(impl, X, Y, 0.0, 0.02, 8, dict(w=0.0, lr=0.02, epochs=8), _lecture_sgd, cases)
    w, _ = impl.sgd(X, Y)
    assert abs(w - 2.0) < 1e-3, f"after the lecture's 100 epochs w = {w}, expected about 2"
