"""Chapter 02, hidden tests: the public checks again on held-out data (random samples, other
grids and sizes, float64), against float64 loops, so code that only reproduces the lecture's
answers loses points here."""
from contextlib import contextmanager

import pytest
import torch

from grader.remote import type_name
from grader.testing import assert_close


def _shape(value):
    return list(value.shape) if isinstance(value, torch.Tensor) else type_name(value)


def _data(n=5):
    xs = torch.randn(n, dtype=torch.float64)
    ys = 1.7 * xs - 0.4 + 0.3 * torch.randn(n, dtype=torch.float64)
    return xs, ys


def _mse_loop(xs, ys, w, b=0.0):
    return sum((float(x) * float(w) + float(b) - float(y)) ** 2 for x, y in zip(xs, ys)) / len(xs)


def _agrees(got, want):
    return isinstance(got, torch.Tensor) and got.shape == want.shape and \
        torch.allclose(got.double(), want.double(), rtol=1e-5, atol=1e-6)


_HX = torch.tensor([0.5, -1.0, 2.0, 3.0])
_HY = torch.tensor([1.0, -2.5, 3.0, 7.0])


def _forward_ok(impl):
    table = torch.tensor([[0.5], [-1.5]])
    return _agrees(impl.forward(_HX, -0.5), _HX * -0.5) and \
        _agrees(impl.forward(_HX[None, :], table), _HX[None, :] * table)


def _loss_ok(impl):
    table = torch.tensor([[0.5], [-1.5]])
    return _agrees(impl.loss(_HX, _HY, 1.5), (_HX * 1.5 - _HY) ** 2) and \
        _agrees(impl.loss(_HX[None, :], _HY[None, :], table), (_HX[None, :] * table - _HY[None, :]) ** 2)


_HELPERS = {"forward": ("ch02.forward", _forward_ok), "loss": ("ch02.loss", _loss_ok)}


@contextmanager
def _builds_on(impl, what, *helpers):
    """Run a check of `what`; if it fails and one of the helpers it builds on is wrong, say
    "fix that first" instead of blaming `what`."""
    try:
        yield
    except NotImplementedError:
        raise
    except Exception:
        for name in helpers:
            task, ok = _HELPERS[name]
            try:
                right = ok(impl)
            except NotImplementedError:
                right = True
            except Exception:  # noqa: BLE001 - the helper crashes: it is wrong
                right = False
            if not right:
                raise AssertionError(f"your {name}() is wrong (see the {task} tests) and {what} builds on "
                                     f"it: fix {task} first") from None
        raise


# --------------------------------------------------------------------------- ch02.forward

@pytest.mark.task("ch02.forward")
@pytest.mark.points(1)
def test_forward_values_and_broadcasting(impl):
    x = torch.randn(6, dtype=torch.float64)
    out = impl.forward(x, -0.7)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64, \
        f"forward on float64 x returned {out.dtype if isinstance(out, torch.Tensor) else type_name(out)}: " \
        "return x * w, which keeps x's dtype"
    assert_close(out, x * -0.7, "forward(x, -0.7) on held-out data")
    try:
        table = impl.forward(x[None, :], torch.tensor([[1.0], [2.0], [-0.5]], dtype=torch.float64))
    except (RuntimeError, TypeError, ValueError) as exc:
        raise AssertionError(f"forward(x [1, 6], w [3, 1]) failed ({str(exc).splitlines()[0]}): keep it a "
                             "plain x * w so that a tensor w broadcasts") from None
    assert _shape(table) == [3, 6], \
        f"forward(x [1, 6], w [3, 1]) returned shape {_shape(table)}, expected [3, 6]: " \
        "keep it a plain x * w so that a tensor w broadcasts"


# --------------------------------------------------------------------------- ch02.loss

@pytest.mark.task("ch02.loss")
@pytest.mark.points(1)
def test_loss_values(impl):
    xs, ys = _data(6)
    want = torch.tensor([(float(x) * 1.3 - float(y)) ** 2 for x, y in zip(xs, ys)], dtype=torch.float64)
    with _builds_on(impl, "loss", "forward"):
        out = impl.loss(xs, ys, 1.3)
        assert isinstance(out, torch.Tensor), f"loss returned {type_name(out)}, expected a Tensor"
        if out.numel() == 1:
            raise AssertionError("loss returned a single number: it should return one squared error per sample "
                                 "(shape [N]); the average belongs in mse_over_grid")
        if out.shape == want.shape and torch.allclose(out, want.sqrt()):
            raise AssertionError("loss is not squared: return (x * w - y) ** 2")
        if out.shape == want.shape and torch.allclose(out.abs(), want.sqrt()):
            raise AssertionError("loss is not squared: return (x * w - y) ** 2, not the plain difference")
        assert_close(out, want, "loss(x, y, w) on held-out data", hint="each entry is (x[i] * w - y[i]) ** 2")
        ws = torch.tensor([[0.5], [1.3]], dtype=torch.float64)
        table = impl.loss(xs[None, :], ys[None, :], ws)
        assert _shape(table) == [2, 6], \
            f"loss(x [1, 6], y [1, 6], w [2, 1]) returned shape {_shape(table)}, expected [2, 6]: one squared " \
            "error per (w, sample) pair"


# --------------------------------------------------------------------------- ch02.grid

@pytest.mark.task("ch02.grid")
@pytest.mark.points(1)
def test_mse_over_grid_values(impl):
    xs, ys = _data(5)
    ws = torch.linspace(-1.0, 3.0, 9, dtype=torch.float64)
    want = torch.tensor([_mse_loop(xs, ys, w) for w in ws], dtype=torch.float64)
    with _builds_on(impl, "mse_over_grid", "forward", "loss"):
        out = impl.mse_over_grid(xs, ys, ws)
        assert isinstance(out, torch.Tensor) and out.shape == (9,), \
            f"mse_over_grid with 9 candidate weights and 5 samples returned shape {_shape(out)}, expected [9]: " \
            "average over the samples, one value per candidate w"
        assert_close(out, want, "mse_over_grid on held-out data",
                     hint="{ratio}: average over the samples (the mean), not the sum")


@pytest.mark.task("ch02.grid")
@pytest.mark.points(1)
def test_mse_over_grid_keeps_dtype(impl):
    with _builds_on(impl, "mse_over_grid", "forward", "loss"):
        for dtype in (torch.float64, torch.float32):
            xs, ys = (t.to(dtype) for t in _data(4))
            out = impl.mse_over_grid(xs, ys, torch.linspace(0.0, 2.0, 5, dtype=dtype))
            assert isinstance(out, torch.Tensor) and out.dtype == dtype, \
                f"mse_over_grid returned {out.dtype if isinstance(out, torch.Tensor) else type_name(out)} " \
                f"for {dtype} inputs: build the result from the inputs (or give torch.zeros dtype=xs.dtype)"


@pytest.mark.task("ch02.grid")
@pytest.mark.points(1)
def test_best_weight_values(impl):
    xs = torch.tensor([0.5, 1.0, 2.0, 3.5], dtype=torch.float64)
    ys = 1.3 * xs + torch.tensor([0.1, -0.2, 0.05, 0.1], dtype=torch.float64)
    ws = torch.arange(-1.0, 3.0, 0.05, dtype=torch.float64)
    mses = [_mse_loop(xs, ys, w) for w in ws]
    k = min(range(len(ws)), key=mses.__getitem__)
    worst = max(range(len(ws)), key=mses.__getitem__)
    with _builds_on(impl, "best_weight", "forward", "loss"):
        best = impl.best_weight(xs, ys, ws)
        value = best.item() if isinstance(best, torch.Tensor) and best.numel() == 1 else best
        try:
            grid_ok = _agrees(impl.mse_over_grid(xs, ys, ws), torch.tensor(mses, dtype=torch.float64))
        except NotImplementedError:
            grid_ok = True  # best_weight may compute the MSEs itself
        except Exception:  # noqa: BLE001 - any other failure means mse_over_grid is broken
            grid_ok = False
        if not grid_ok and not (isinstance(value, float) and abs(value - float(ws[k])) < 1e-6):
            raise AssertionError(f"best_weight returned {value!r}, expected {float(ws[k]):.2f}; mse_over_grid "
                                 "is wrong too (see its tests), and best_weight builds on it: fix that first")
        if isinstance(value, int) and value == k:
            raise AssertionError(f"best_weight returned {k}, the index of the best candidate: return the weight "
                                 "itself, the entry of ws at that index")
        if isinstance(value, float) and abs(value - float(ws[worst])) < 1e-6:
            raise AssertionError("best_weight returned the weight of the LARGEST MSE: use argmin, not argmax")
        assert isinstance(best, float), \
            f"best_weight returned {type_name(best)}, expected a Python float: use .item()"
        assert abs(best - float(ws[k])) < 1e-6, \
            f"best_weight returned {best} on held-out data, expected {float(ws[k]):.2f}: take the candidate " \
            "of least MSE on the data you are given"


# --------------------------------------------------------------------------- ch02.surface

@pytest.mark.task("ch02.surface")
@pytest.mark.points(1)
def test_mse_surface_values(impl):
    xs, ys = _data(5)
    ws = torch.tensor([-0.5, 0.5, 1.5, 2.5], dtype=torch.float64)
    bs = torch.tensor([-1.0, 0.0, 0.75], dtype=torch.float64)
    want = torch.tensor([[_mse_loop(xs, ys, w, b) for b in bs] for w in ws], dtype=torch.float64)
    minus_b = torch.tensor([[_mse_loop(xs, ys, w, -b) for b in bs] for w in ws], dtype=torch.float64)
    with _builds_on(impl, "mse_surface", "forward"):
        out = impl.mse_surface(xs, ys, ws, bs)
        assert isinstance(out, torch.Tensor), f"mse_surface returned {type_name(out)}, expected a Tensor"
        if out.shape == (3, 4):
            raise AssertionError("mse_surface returned [L, K] = [3, 4], expected [K, L] = [4, 3]: rows follow w "
                                 "and columns follow b")
        assert out.shape == (4, 3), \
            f"mse_surface with 4 weights and 3 biases returned shape {list(out.shape)}, expected [4, 3]"
        if _agrees(out, minus_b):
            raise AssertionError("mse_surface subtracts b: the model is y_hat = x * w + b")
        assert_close(out, want, "mse_surface on held-out data",
                     hint="{ratio}: average the squared errors over the samples")


@pytest.mark.task("ch02.surface")
@pytest.mark.points(1)
def test_mse_surface_lowest_at_held_out_answer(impl):
    xs = torch.tensor([0.5, 1.0, 2.5, 4.0])
    ys = 1.5 * xs - 0.5                       # exact in float32: the surface reaches 0
    ws = torch.arange(0.0, 3.01, 0.25)        # 13 weights, 1.5 among them
    bs = torch.arange(-1.5, 1.51, 0.25)       # 13 biases, -0.5 among them
    with _builds_on(impl, "mse_surface", "forward"):
        out = impl.mse_surface(xs, ys, ws, bs)
        assert _shape(out) == [13, 13], f"mse_surface with 13 weights and 13 biases returned shape {_shape(out)}"
        k, l = divmod(int(out.argmin()), 13)
        assert abs(ws[k].item() - 1.5) < 1e-6 and abs(bs[l].item() + 0.5) < 1e-6, \
            f"on held-out data y = 1.5x - 0.5 the lowest MSE of the surface is at w = {ws[k].item():.2f}, " \
            f"b = {bs[l].item():.2f}; it should be at w = 1.5, b = -0.5 (rows follow w, columns follow b)"
        assert out[k, l].item() < 1e-6, f"the MSE at w = 1.5, b = -0.5 is {out[k, l].item():.3g}, expected 0"
