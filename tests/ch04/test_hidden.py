"""Chapter 04, hidden tests: autograd against the analytic gradient, float64 references,
central differences and gradcheck, and the common mistakes."""
import numpy as np
import pytest
import torch

from grader.testing import assert_close, check_gradients

XS = [0.5, -1.0, 2.0, 3.5]
YS = [1.2, -2.5, 3.1, 7.4]


# --------------------------------------------------------------------------- ch04.autograd

def _analytic(xs, ys, w):
    """Chapter 03's hand-derived gradient, mean of 2*x*(x*w - y), in float64."""
    return sum(2 * x * (x * w - y) for x, y in zip(xs, ys)) / len(xs)


def _autograd(impl, xs, ys, w, *, call=None):
    """Call the student's autograd_gradient and turn a cut graph into a message that says so.
    `call(xs, ys, w)`: what to call instead of impl.autograd_gradient (a probe around it)."""
    cut = ("the graph from w to the cost was cut, so backward() cannot reach w: keep w a requires_grad "
           "tensor all the way to the cost (no .item(), .detach() or .data on the way)")
    try:
        g = (call or impl.autograd_gradient)(xs, ys, w)
    except NotImplementedError:
        raise
    except RuntimeError as exc:
        if "does not require grad" in str(exc):
            raise AssertionError(cut) from None
        raise
    except AttributeError as exc:
        if "NoneType" in str(exc):
            raise AssertionError(f"w.grad is None after backward(): {cut}") from None
        raise
    assert g is not None, f"autograd_gradient returned None (is w.grad None?): {cut}"
    if isinstance(g, torch.Tensor):
        assert g.numel() == 1, f"autograd_gradient returned a tensor of shape {list(g.shape)}, expected one number"
        g = g.item()
    return float(g)


@pytest.mark.task("ch04.autograd")
@pytest.mark.points(2)
def test_autograd_gradient_equals_analytic_gradient(impl):
    for w in (-1.3, 0.0, 0.8, 2.5):
        got, want = _autograd(impl, XS, YS, w), _analytic(XS, YS, w)
        assert_close(got, want, f"autograd_gradient(xs, ys, w={w})", rtol=1e-5, atol=1e-6,
                     hint="{ratio}: the cost is the MEAN of (x * w - y) ** 2 over the samples")


@pytest.mark.task("ch04.autograd")
@pytest.mark.points(1)
def test_autograd_gradient_calls_backward(impl, probes):
    calls = []

    def spied(xs, ys, w):  # autograd_gradient with torch.autograd.backward and .grad counted
        seen, value = probes.autograd_calls(xs, ys, w)
        calls.extend(seen)
        return value

    got = _autograd(impl, [1.0, 2.0, 3.0], [2.0, 4.0, 6.0], 0.5, call=spied)
    assert calls, "autograd_gradient never ran backward(): build the cost from a requires_grad tensor w " \
                  "and call cost.backward(), then read w.grad (this task practises autograd)"
    assert_close(got, _analytic([1.0, 2.0, 3.0], [2.0, 4.0, 6.0], 0.5), "autograd_gradient at w = 0.5",
                 rtol=1e-5, atol=1e-6)


@pytest.mark.task("ch04.autograd")
@pytest.mark.points(1)
def test_autograd_gradient_is_fresh_on_every_call(impl):
    first = _autograd(impl, XS, YS, 0.8)
    second = _autograd(impl, XS, YS, 0.8)
    assert abs(second - first) < 1e-6 * max(1.0, abs(first)), \
        f"two calls with the same arguments gave {first} and then {second}: a gradient left over from an " \
        "earlier call was added in; create a new requires_grad tensor for w on every call"


# --------------------------------------------------------------------------- ch04.quadratic

def _ref_quadratic(xs, ys, epochs, lr, *, zero=True, zero_b=True, per_epoch=False):
    """Lecture 04's homework loop in float64, and common ways of getting it wrong (for fingerprints)."""
    w1 = w2 = b = 1.0
    g1 = g2 = gb = 0.0
    for _ in range(epochs):
        for x, y in zip(xs, ys):
            r = 2 * (w1 * x * x + w2 * x + b - y)
            g1, g2, gb = g1 + r * x * x, g2 + r * x, gb + r
            if not per_epoch:
                w1, w2, b = w1 - lr * g1, w2 - lr * g2, b - lr * gb
                if zero:
                    g1 = g2 = 0.0
                    if zero_b:
                        gb = 0.0
        if per_epoch:
            w1, w2, b = w1 - lr * g1, w2 - lr * g2, b - lr * gb
            g1 = g2 = gb = 0.0
    return w1, w2, b


def _train_quadratic(impl, xs, ys, **kwargs):
    try:
        out = impl.train_quadratic(xs, ys, **kwargs)
    except NotImplementedError:
        raise
    except RuntimeError as exc:
        if "leaf Variable" in str(exc) or "in-place operation" in str(exc):
            raise AssertionError("updating a requires_grad weight in place must not be recorded by autograd: "
                                 "do the updates inside `with torch.no_grad():`") from None
        raise
    except (AttributeError, TypeError) as exc:
        if "NoneType" in str(exc):
            raise AssertionError("a weight's .grad is None: `w1 = w1 - lr * w1.grad` makes w1 a new tensor "
                                 "that is not a leaf; update in place (w1 -= lr * w1.grad) under "
                                 "torch.no_grad()") from None
        raise
    assert isinstance(out, tuple) and len(out) == 3, "train_quadratic should return a tuple (w1, w2, b)"
    return [float(v) for v in out]


def _check_quadratic(impl, xs, ys, epochs, lr):
    got = _train_quadratic(impl, xs, ys, epochs=epochs, lr=lr)
    want = _ref_quadratic(xs, ys, epochs, lr)
    if not all(np.isfinite(got)):
        raise AssertionError(f"train_quadratic's weights overflowed to {got}: gradients pile up unless they "
                             "are zeroed after every update (w.grad.zero_())")
    if not torch.allclose(torch.tensor(got, dtype=torch.float64), torch.tensor(want, dtype=torch.float64), rtol=1e-4, atol=1e-6):
        for kwargs, mistake in [
            (dict(zero=False), "the gradients pile up across updates: zero w1.grad, w2.grad and b.grad "
                               "after every update"),
            (dict(zero_b=False), "b.grad is never zeroed: zero the gradients of all three weights after "
                                 "every update"),
            (dict(per_epoch=True), "one update per epoch: update after every sample, in data order"),
        ]:
            wrong = torch.tensor(_ref_quadratic(xs, ys, epochs, lr, **kwargs), dtype=torch.float64)
            if torch.allclose(torch.tensor(got, dtype=torch.float64), wrong, rtol=1e-4, atol=1e-6):
                raise AssertionError(f"train_quadratic follows a known mistake: {mistake}")
    for name, g, w in zip(("w1", "w2", "b"), got, want):
        assert_close(g, w, f"{name} after {epochs} epoch(s) with lr={lr}", rtol=1e-4, atol=1e-6,
                     hint="start from 1.0; per sample: loss, backward, update under no_grad, zero the grads")


@pytest.mark.task("ch04.quadratic")
@pytest.mark.points(2)
def test_train_quadratic_one_epoch(impl):
    _check_quadratic(impl, [1.0, 2.0, 3.0], [2.0, 4.0, 6.0], epochs=1, lr=0.01)


@pytest.mark.task("ch04.quadratic")
@pytest.mark.points(2)
def test_train_quadratic_matches_float64_loop(impl):
    _check_quadratic(impl, [1.0, 2.0, 3.0], [2.0, 4.0, 6.0], epochs=100, lr=0.01)
    _check_quadratic(impl, [-1.0, 0.5, 1.5, 2.0], [3.0, 0.25, 1.0, 2.5], epochs=20, lr=0.02)


# --------------------------------------------------------------------------- ch04.manual

def _net_data():
    """Small float64 data whose hidden pre-activations are all clearly away from 0
    (central differences are exact only away from the ReLU's kink) and of both signs."""
    rng = np.random.default_rng(4)
    while True:
        x, y = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
        w1, w2 = rng.standard_normal((3, 5)), rng.standard_normal((5, 2))
        h = x @ w1
        if np.abs(h).min() > 0.05 and (h < 0).sum() >= 4 and (h > 0).sum() >= 4:
            return x, y, w1, w2


def _loss_torch(x, y):
    x_t, y_t = torch.from_numpy(x), torch.from_numpy(y)
    return lambda a, b: ((x_t @ a).clamp(min=0) @ b - y_t).pow(2).sum()


@pytest.mark.task("ch04.manual")
@pytest.mark.points(1)
def test_two_layer_backward_loss(impl):
    x, y, w1, w2 = _net_data()
    loss, _, _ = impl.two_layer_backward(x, y, w1, w2)
    want = float(_loss_torch(x, y)(torch.from_numpy(w1), torch.from_numpy(w2)))
    if abs(float(loss) - want / y.size) < 1e-9 * want:
        raise AssertionError("the loss is the mean of the squared errors: the lecture's loss is their sum, "
                             "np.square(y_pred - y).sum()")
    assert_close(float(loss), want, "the loss", rtol=1e-9, atol=1e-9,
                 hint="h = x @ w1, h_relu = max(h, 0), y_pred = h_relu @ w2, loss = sum((y_pred - y)**2)")


@pytest.mark.task("ch04.manual")
@pytest.mark.points(3)
def test_two_layer_backward_gradients(probes):
    x, y, w1, w2 = _net_data()
    out, arguments_after = probes.two_layer_backward_and_arguments(x, y, w1, w2)
    _, grad_w1, grad_w2 = out
    for name, before, after in zip(("x", "y", "w1", "w2"), (x, y, w1, w2), arguments_after):
        assert np.array_equal(before, after), f"two_layer_backward changed its argument {name} in place"
    grad_w1, grad_w2 = np.asarray(grad_w1, dtype=np.float64), np.asarray(grad_w2, dtype=np.float64)

    h = x @ w1
    grad_y_pred = 2.0 * (np.maximum(h, 0) @ w2 - y)
    want_w1 = x.T @ ((grad_y_pred @ w2.T) * (h > 0))
    want_w2 = np.maximum(h, 0).T @ grad_y_pred
    for name, got, want, formula in [("grad_w2", grad_w2, want_w2, "h_relu.T @ grad_y_pred"),
                                     ("grad_w1", grad_w1, want_w1, "x.T @ grad_h")]:
        if got.shape == want.T.shape and got.shape != want.shape:
            hint = " and it is the transpose of the right answer" if np.allclose(got, want.T) else ""
            raise AssertionError(f"{name} has shape {list(got.shape)}, expected {list(want.shape)} (the shape of "
                                 f"its weight){hint}: the transposes are wrong, use {name} = {formula}")
        assert got.shape == want.shape, \
            f"{name} has shape {list(got.shape)}, expected {list(want.shape)}, the shape of its weight"
    if np.allclose(grad_w2, want_w2) and np.allclose(grad_w1, x.T @ (grad_y_pred @ w2.T)):
        raise AssertionError("grad_w1 ignores the ReLU: where h < 0 the ReLU passes no gradient, so set "
                             "grad_h[h < 0] = 0 before grad_w1 = x.T @ grad_h (and compute h_relu out of "
                             "place, so h still shows where it was negative)")
    check_gradients(_loss_torch(x, y), [torch.from_numpy(w1), torch.from_numpy(w2)],
                    analytic=[torch.from_numpy(grad_w1), torch.from_numpy(grad_w2)], names=["w1", "w2"],
                    rtol=1e-5, atol=1e-5, hint="{ratio}: did you drop the factor 2 in grad_y_pred = 2 * (y_pred - y)?")


# --------------------------------------------------------------------------- ch04.function

def _relu_grads(probes, x, grad_outputs):
    """The input's gradient after backward of one MyReLU.apply(x) with each upstream gradient
    (None where backward gave none)."""
    try:
        requires_grad, grads = probes.relu_input_grads(x, grad_outputs)
    except NotImplementedError:
        raise
    except ValueError as exc:
        if "unpack" in str(exc):
            raise AssertionError("MyReLU.backward found nothing in ctx.saved_tensors: save the input in forward "
                                 "with ctx.save_for_backward(input)") from None
        raise
    assert requires_grad, \
        "MyReLU.apply's output does not require grad: call it as MyReLU.apply(x) and return a tensor from forward"
    return grads


def _relu_grad(probes, x, grad_output):
    """x.grad after backward of MyReLU.apply(x) with the given upstream gradient."""
    (grad,) = _relu_grads(probes, x, [grad_output])
    assert grad is not None, "MyReLU.backward gave no gradient for the input"
    return grad


def _away_from_zero(n):
    x = torch.randn(n, dtype=torch.float64)
    return torch.where(x < 0, x - 0.1, x + 0.1)


def _rows(grads, like):
    """Gradients stacked as rows, a missing one (None) as zeros."""
    return torch.stack([torch.zeros_like(like) if g is None else g.to(torch.float64) for g in grads])


@pytest.mark.task("ch04.function")
@pytest.mark.points(2)
def test_myrelu_gradcheck(probes):
    x = _away_from_zero(12)
    grad_output = _away_from_zero(12)
    got = _relu_grad(probes, x, grad_output)
    if torch.allclose(got, grad_output):
        raise AssertionError("MyReLU.backward does not mask negatives: its gradient is grad_output everywhere; "
                             "set grad_input[input < 0] = 0")
    weights = torch.randn(12, dtype=torch.float64)
    # The student's forward at x +- eps in each coordinate (central differences), and its backward
    # for: the weights (the gradient of (MyReLU.apply(x) * weights).sum()); each unit vector, twice
    # (the Jacobian's rows, as torch.autograd.gradcheck takes them); an all-zero upstream gradient.
    eps = 1e-6
    shifts = torch.eye(12, dtype=torch.float64) * eps
    outputs = probes.relu_outputs([x + s for s in shifts] + [x - s for s in shifts])
    up = [torch.as_tensor(o, dtype=torch.float64) for o in outputs[:12]]
    down = [torch.as_tensor(o, dtype=torch.float64) for o in outputs[12:]]
    unit = list(torch.eye(12, dtype=torch.float64))
    grads = _relu_grads(probes, x, [weights, *unit, *unit, torch.zeros(12, dtype=torch.float64)])

    # grader.testing.check_gradients of (MyReLU.apply(t) * weights).sum(): autograd against central differences
    numeric = torch.tensor([(float((u * weights).sum()) - float((d * weights).sum())) / (2 * eps)
                            for u, d in zip(up, down)], dtype=torch.float64)
    analytic = torch.zeros_like(x) if grads[0] is None else grads[0]
    assert_close(analytic, numeric.reshape(x.shape), "the gradient for the input of MyReLU", rtol=1e-4, atol=1e-6,
                 hint="backward returns grad_output where the input was positive and 0 elsewhere")

    # torch.autograd.gradcheck(MyReLU.apply, (x,), eps=1e-6, atol=1e-6) from the same values: each row of
    # the Jacobian from backward matches central differences (rtol 1e-3), comes out the same both times,
    # and an all-zero upstream gradient gives no gradient or a zero one
    first, second, zero = grads[1:13], grads[13:25], grads[25]
    sizes_ok = all(g is None or g.shape == x.shape for g in first + second)
    numerical = torch.stack([(u - d) / (2 * eps) for u, d in zip(up, down)]).T  # [output j, input i]
    accepted = sizes_ok and (zero is None or bool((zero == 0).all()))
    if accepted:
        jac1, jac2 = _rows(first, x), _rows(second, x)
        accepted = bool((jac1 - jac2).abs().max() <= 0.0) and \
            bool(torch.allclose(jac1, numerical, rtol=1e-3, atol=1e-6))
    assert accepted, \
        "torch.autograd.gradcheck rejects MyReLU: backward does not match the numerical derivative of forward"


@pytest.mark.task("ch04.function")
@pytest.mark.points(1)
def test_myrelu_masks_where_the_input_was_negative(probes):
    x = torch.tensor([-2.0, -1.0, 1.0, 2.0], dtype=torch.float64)
    grad_output = torch.tensor([3.0, -3.0, 5.0, -5.0], dtype=torch.float64)
    got = _relu_grad(probes, x, grad_output)
    if got.tolist() == [3.0, 0.0, 5.0, 0.0]:
        raise AssertionError("MyReLU.backward masks where grad_output is negative: mask where the forward "
                             "input was negative (the tensor saved in ctx)")
    assert got.tolist() == [0.0, 0.0, 5.0, -5.0], \
        f"MyReLU.backward gave {got.tolist()} for inputs [-2, -1, 1, 2] and upstream [3, -3, 5, -5], " \
        "expected [0, 0, 5, -5]: pass grad_output through where the input was positive"


@pytest.mark.task("ch04.function")
@pytest.mark.points(1)
def test_myrelu_in_a_two_layer_net(probes):
    x = torch.randn(6, 4, dtype=torch.float64)
    w1 = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    w2 = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    before, after = probes.relu_net_hidden(x, w1)  # h = x @ w1 before and after MyReLU.apply(h)
    assert torch.equal(after, before), \
        "MyReLU.forward changed its input in place: return input.clamp(min=0), a new tensor"
    got = probes.relu_net_grads(x, w1, w2)  # of MyReLU.apply(x @ w1).mm(w2).pow(2).sum()
    want = torch.autograd.grad(torch.relu(x @ w1).mm(w2).pow(2).sum(), (w1, w2))
    for name, g, w in zip(("w1", "w2"), got, want):
        assert_close(g, w, f"the gradient for {name} of a two-layer net using MyReLU",
                     hint="it should match the same net with torch.relu")
