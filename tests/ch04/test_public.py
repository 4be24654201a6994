"""Chapter 04, public tests: the lecture's numbers and runs, small published examples, and the
common mistakes by name. Expected values come from the lecture (x = [1, 2, 3], y = [2, 4, 6])
or from PyTorch's own autograd run here; the hidden tests check the same on other data."""
import numpy as np
import pytest
import torch

from grader.testing import assert_close

X, Y = [1.0, 2.0, 3.0], [2.0, 4.0, 6.0]

# d cost / dw on the lecture's data (y = 2x, best w = 2), as chapter 03 derived it by hand
LECTURE_GRADIENT = {1.0: -28 / 3, 0.0: -56 / 3, 3.0: 28 / 3}


# --------------------------------------------------------------------------- ch04.autograd

CUT = ("the graph from w to the cost was cut, so backward() cannot reach w: keep w a requires_grad "
       "tensor all the way to the cost (no .item(), .detach() or .data on the way)")


def _autograd(impl, xs, ys, w, *, call=None, keep_type=False):
    """Call the student's autograd_gradient and turn a cut graph into a message that says so.
    `call(xs, ys, w)`: what to call instead of impl.autograd_gradient (a probe around it);
    keep_type: return the value as it came (else a float)."""
    try:
        g = (call or impl.autograd_gradient)(xs, ys, w)
    except NotImplementedError:
        raise
    except RuntimeError as exc:
        if "does not require grad" in str(exc):
            raise AssertionError(CUT) from None
        raise
    except (AttributeError, TypeError) as exc:
        if "NoneType" in str(exc):
            raise AssertionError(f"w.grad is None after backward(): {CUT}") from None
        raise
    assert g is not None, f"autograd_gradient returned None (is w.grad None?): {CUT}"
    if keep_type:
        return g
    if isinstance(g, torch.Tensor):
        assert g.numel() == 1, f"autograd_gradient returned a tensor of shape {list(g.shape)}, expected one number"
        g = g.item()
    return float(g)


def _check_autograd(impl, xs, ys, values):
    """autograd_gradient(xs, ys, w) == values[w] for every w, float32-close."""
    for w, want in values.items():
        assert_close(_autograd(impl, xs, ys, w), want, f"autograd_gradient(xs, ys, w={w})",
                     hint="{ratio}: the cost is the MEAN of (x * w - y) ** 2 over the samples")


def _check_backward_runs(impl, probes, xs, ys, w, want):
    """autograd_gradient runs autograd's backward, gives `want`, and the same again when called twice."""
    calls = []

    def spied(xs, ys, w):  # autograd_gradient with torch.autograd.backward and .grad counted
        seen, value = probes.autograd_calls(xs, ys, w)
        calls.extend(seen)
        return value

    got = _autograd(impl, xs, ys, w, call=spied)
    assert calls, "autograd_gradient never ran backward(): build the cost from a requires_grad tensor w " \
                  "and let autograd compute the gradient (this task practises autograd)"
    assert_close(got, want, f"autograd_gradient(xs, ys, w={w})",
                 hint="{ratio}: the cost is the MEAN of (x * w - y) ** 2 over the samples")
    again = _autograd(impl, xs, ys, w)
    assert abs(again - got) <= 1e-5 * max(1.0, abs(got)), \
        f"two calls with the same arguments gave {got} and then {again}: a gradient left over from an " \
        "earlier call was added in; create a new requires_grad tensor for w on every call"


@pytest.mark.task("ch04.autograd")
@pytest.mark.points(2)
def test_autograd_gradient_lecture_data(impl):
    g = _autograd(impl, X, Y, 1.0, keep_type=True)
    assert isinstance(g, float), f"autograd_gradient returned {type(g).__name__}, expected a Python float (.item())"
    assert_close(g, -28 / 3, "autograd_gradient(x, y, w=1) on the lecture's data",
                 hint="{ratio}: the cost is the MEAN of (x * w - y) ** 2 over the samples")
    _check_autograd(impl, X, Y, LECTURE_GRADIENT)


@pytest.mark.task("ch04.autograd")
@pytest.mark.points(1)
def test_autograd_gradient_runs_backward_every_call(impl, probes):
    _check_backward_runs(impl, probes, X, Y, 3.0, 28 / 3)


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
                                 "that is not a leaf; update in place (w1 -= ...) under torch.no_grad()") \
                from None
        raise
    assert isinstance(out, tuple) and len(out) == 3, "train_quadratic should return a tuple (w1, w2, b)"
    return [float(v) for v in out]


def _check_quadratic(impl, xs, ys, epochs, lr):
    got = _train_quadratic(impl, xs, ys, epochs=epochs, lr=lr)
    want = _ref_quadratic(xs, ys, epochs, lr)
    if not all(np.isfinite(got)):
        raise AssertionError(f"train_quadratic's weights overflowed to {got}: the gradients pile up unless they "
                             "are zeroed after every update")
    got_t = torch.tensor(got, dtype=torch.float64)
    if not torch.allclose(got_t, torch.tensor(want, dtype=torch.float64), rtol=1e-4, atol=1e-5):
        for kwargs, mistake in [
            (dict(zero=False), "the gradients pile up across updates: zero w1.grad, w2.grad and b.grad "
                               "after every update"),
            (dict(zero_b=False), "b.grad is never zeroed: zero the gradients of all three weights after "
                                 "every update"),
            (dict(per_epoch=True), "one update per epoch: update after every sample, in data order"),
        ]:
            wrong = torch.tensor(_ref_quadratic(xs, ys, epochs, lr, **kwargs), dtype=torch.float64)
            if torch.allclose(got_t, wrong, rtol=1e-4, atol=1e-5):
                raise AssertionError(f"train_quadratic follows a known mistake: {mistake}")
    for name, g, w in zip(("w1", "w2", "b"), got, want):
        assert_close(g, w, f"{name} after {epochs} epoch(s) with lr={lr}", rtol=1e-4, atol=1e-5,
                     hint="start from 1.0; per sample: loss, backward, update under no_grad, zero the grads")


@pytest.mark.task("ch04.quadratic")
@pytest.mark.points(1)
def test_train_quadratic_returns_three_floats(impl):
    _train_quadratic(impl, X, Y, epochs=1)  # names the errors of a wrong update
    out = impl.train_quadratic(X, Y, epochs=1)
    assert all(isinstance(v, float) for v in out), \
        f"train_quadratic returned {[type(v).__name__ for v in out]}, expected three Python floats (.item())"


@pytest.mark.task("ch04.quadratic")
@pytest.mark.points(2)
def test_train_quadratic_lecture_runs(impl):
    # one epoch, then the lecture's 100 epochs, on the lecture's data with lr = 0.01
    _check_quadratic(impl, X, Y, epochs=1, lr=0.01)
    _check_quadratic(impl, X, Y, epochs=100, lr=0.01)


# --------------------------------------------------------------------------- ch04.manual

def _net_data(seed, n, d_in, hidden, d_out):
    """Small float64 data whose hidden pre-activations are all clearly away from 0 (a gradient
    is exact only away from the ReLU's kink) and of both signs."""
    rng = np.random.default_rng(seed)
    while True:
        x, y = rng.standard_normal((n, d_in)), rng.standard_normal((n, d_out))
        w1, w2 = rng.standard_normal((d_in, hidden)), rng.standard_normal((hidden, d_out))
        h = x @ w1
        if np.abs(h).min() > 0.05 and (h < 0).sum() >= 4 and (h > 0).sum() >= 4:
            return x, y, w1, w2


def _torch_net(x, y, w1, w2, *, relu_backward=True):
    """PyTorch's loss and gradients for the lecture's net, in float64; with relu_backward=False the
    ReLU still shapes the forward pass but passes every gradient through (a known mistake)."""
    x_t, y_t = torch.from_numpy(x), torch.from_numpy(y)
    a = torch.from_numpy(w1).clone().requires_grad_(True)
    b = torch.from_numpy(w2).clone().requires_grad_(True)
    h = x_t @ a
    h_relu = h.clamp(min=0) if relu_backward else h + (h.clamp(min=0) - h).detach()
    loss = (h_relu @ b - y_t).pow(2).sum()
    grad_a, grad_b = torch.autograd.grad(loss, (a, b))
    return float(loss), grad_a.numpy(), grad_b.numpy()


def _check_two_layer(probes, x, y, w1, w2):
    """two_layer_backward(x, y, w1, w2) against PyTorch's autograd, with the common mistakes named."""
    out, arguments_after, autograd_calls = probes.two_layer_backward_and_arguments(x, y, w1, w2)
    assert autograd_calls == 0, \
        "two_layer_backward ran autograd's backward: this task writes the backward pass by hand in NumPy, " \
        "with the chain rule, as the lecture does"
    assert isinstance(out, tuple) and len(out) == 3, "two_layer_backward should return (loss, grad_w1, grad_w2)"
    for name, before, after in zip(("x", "y", "w1", "w2"), (x, y, w1, w2), arguments_after):
        assert np.array_equal(before, after), f"two_layer_backward changed its argument {name} in place"
    loss, grad_w1, grad_w2 = out
    want_loss, want_w1, want_w2 = _torch_net(x, y, w1, w2)
    if abs(float(loss) - want_loss / y.size) <= 1e-6 * want_loss:
        raise AssertionError("the loss is the mean of the squared errors: the lecture's loss is their sum")
    assert_close(float(loss), want_loss, "the loss", rtol=1e-6, atol=1e-6,
                 hint="h = x @ w1, h_relu = max(h, 0), y_pred = h_relu @ w2, loss = sum of (y_pred - y) ** 2")
    grad_w1, grad_w2 = np.asarray(grad_w1, dtype=np.float64), np.asarray(grad_w2, dtype=np.float64)
    for name, got, want in [("grad_w2", grad_w2, want_w2), ("grad_w1", grad_w1, want_w1)]:
        if got.shape == want.T.shape and got.shape != want.shape:
            hint = " and it is the transpose of the right answer" if np.allclose(got, want.T) else ""
            raise AssertionError(f"{name} has shape {list(got.shape)}, expected {list(want.shape)} (the shape of "
                                 f"its weight){hint}: the transposes are wrong; a gradient has the shape of "
                                 "its weight, which tells you where the .T goes")
        assert got.shape == want.shape, \
            f"{name} has shape {list(got.shape)}, expected {list(want.shape)}, the shape of its weight"
    _, no_mask_w1, _ = _torch_net(x, y, w1, w2, relu_backward=False)
    if np.allclose(grad_w2, want_w2) and np.allclose(grad_w1, no_mask_w1):
        raise AssertionError("grad_w1 ignores the ReLU: where h < 0 the ReLU passes no gradient, so zero "
                             "grad_h there before computing grad_w1 (and compute h_relu out of place, so h "
                             "still shows where it was negative)")
    for name, got, want in [("w2", grad_w2, want_w2), ("w1", grad_w1, want_w1)]:
        assert_close(got, want, f"the gradient for {name}", rtol=1e-6, atol=1e-6,
                     hint="{ratio}: did you drop the factor 2 of the square's derivative, for grad_y_pred?")


@pytest.mark.task("ch04.manual")
@pytest.mark.points(1)
def test_two_layer_backward_shapes(impl):
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    w1, w2 = rng.standard_normal((3, 5)), rng.standard_normal((5, 2))
    out = impl.two_layer_backward(x, y, w1, w2)
    assert isinstance(out, tuple) and len(out) == 3, "two_layer_backward should return (loss, grad_w1, grad_w2)"
    loss, grad_w1, grad_w2 = out
    assert isinstance(loss, float), f"the loss is {type(loss).__name__}, expected a Python float"
    for name, got, shape in (("grad_w1", grad_w1, (3, 5)), ("grad_w2", grad_w2, (5, 2))):
        assert isinstance(got, np.ndarray), f"{name} is {type(got).__name__}, expected a NumPy array"
        transposed = " (its transpose: the transposes are wrong)" if got.shape == shape[::-1] else ""
        assert got.shape == shape, \
            f"{name} should be shaped like its weight, {list(shape)}; got {list(got.shape)}{transposed}"


@pytest.mark.task("ch04.manual")
@pytest.mark.points(2)
def test_two_layer_backward_matches_autograd(probes):
    # a published example: N = 4 samples, D_in = 3, H = 5, D_out = 2, from seed 1
    _check_two_layer(probes, *_net_data(1, 4, 3, 5, 2))


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
                                 "with ctx.save_for_backward") from None
        raise
    assert requires_grad, \
        "MyReLU.apply's output does not require grad: call it as MyReLU.apply(x) and return a tensor from forward"
    return grads


def _relu_grad(probes, x, grad_output):
    """x.grad after backward of MyReLU.apply(x) with the given upstream gradient."""
    (grad,) = _relu_grads(probes, x, [grad_output])
    assert grad is not None, "MyReLU.backward gave no gradient for the input"
    return grad


def _check_relu_mask(probes, x, grad_output):
    """MyReLU's backward on inputs x (none of them 0) with upstream grad_output, mistakes named."""
    got = _relu_grad(probes, x, grad_output).to(torch.float64)
    if torch.equal(got, grad_output) and bool((x < 0).any()):
        raise AssertionError("MyReLU.backward does not mask negatives: its gradient is grad_output everywhere; "
                             "zero it where the input was negative")
    if torch.equal(got, torch.where(grad_output < 0, torch.zeros_like(grad_output), grad_output)) and \
            not torch.equal(grad_output < 0, x < 0):
        raise AssertionError("MyReLU.backward masks where grad_output is negative: mask where the forward "
                             "input was negative (the tensor saved in ctx)")
    want = torch.where(x < 0, torch.zeros_like(grad_output), grad_output)
    assert_close(got, want, "MyReLU's gradient for its input",
                 hint="pass grad_output through where the input was positive, 0 where it was negative")


def _check_relu_net(probes, x, w1, w2):
    """MyReLU in a two-layer net: forward leaves its input alone, gradients match torch.relu's."""
    before, after = probes.relu_net_hidden(x, w1)  # h = x @ w1 before and after MyReLU.apply(h)
    assert torch.equal(after, before), \
        "MyReLU.forward changed its input in place: return a new tensor, clamped at 0"
    got = probes.relu_net_grads(x, w1, w2)  # of MyReLU.apply(x @ w1).mm(w2).pow(2).sum()
    w1, w2 = w1.detach().clone().requires_grad_(True), w2.detach().clone().requires_grad_(True)
    want = torch.autograd.grad(torch.relu(x @ w1).mm(w2).pow(2).sum(), (w1, w2))
    for name, g, w in zip(("w1", "w2"), got, want):
        assert_close(g, w, f"the gradient for {name} of a two-layer net using MyReLU",
                     hint="it should match the same net with torch.relu")


@pytest.mark.task("ch04.function")
@pytest.mark.points(1)
def test_myrelu_forward(impl):
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0])
    out = impl.MyReLU.apply(x)
    assert isinstance(out, torch.Tensor) and out.tolist() == [0.0, 0.0, 0.0, 0.5, 2.0], \
        f"MyReLU.apply([-2, -0.5, 0, 0.5, 2]) returned {out.tolist() if isinstance(out, torch.Tensor) else out}, " \
        "expected [0, 0, 0, 0.5, 2]"


@pytest.mark.task("ch04.function")
@pytest.mark.points(1)
def test_myrelu_backward_masks_negative_inputs(probes):
    # inputs [-2, -1, 1, 2], upstream [3, -3, 5, -5]: the gradient is [0, 0, 5, -5]
    _check_relu_mask(probes, torch.tensor([-2.0, -1.0, 1.0, 2.0], dtype=torch.float64),
                     torch.tensor([3.0, -3.0, 5.0, -5.0], dtype=torch.float64))


@pytest.mark.task("ch04.function")
@pytest.mark.points(1)
def test_myrelu_in_a_small_net(probes):
    torch.manual_seed(1)
    x = torch.randn(3, 2, dtype=torch.float64)
    _check_relu_net(probes, x, torch.randn(2, 4, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64))
