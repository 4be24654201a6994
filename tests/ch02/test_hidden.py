"""Chapter 02, hidden tests: values against float64 loops, dtypes, and the common mistakes."""
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


# --------------------------------------------------------------------------- ch02.forward

@pytest.mark.task("ch02.forward")
@pytest.mark.points(1)
def test_forward_values_and_broadcasting(impl):
    x = torch.randn(6, dtype=torch.float64)
    out = impl.forward(x, -0.7)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64, \
        f"forward on float64 x returned {out.dtype if isinstance(out, torch.Tensor) else type_name(out)}: " \
        "return x * w, which keeps x's dtype"
    assert_close(out, x * -0.7, "forward(x, -0.7)")
    table = impl.forward(x[None, :], torch.tensor([[1.0], [2.0]], dtype=torch.float64))
    assert _shape(table) == [2, 6], \
        f"forward(x [1, 6], w [2, 1]) returned shape {_shape(table)}, expected [2, 6]: " \
        "keep it a plain x * w so that a tensor w broadcasts"


# --------------------------------------------------------------------------- ch02.loss

@pytest.mark.task("ch02.loss")
@pytest.mark.points(2)
def test_loss_values(impl):
    xs, ys = _data(6)
    out = impl.loss(xs, ys, 1.3)
    want = torch.tensor([(float(x) * 1.3 - float(y)) ** 2 for x, y in zip(xs, ys)], dtype=torch.float64)
    assert isinstance(out, torch.Tensor), f"loss returned {type_name(out)}, expected a Tensor"
    if out.numel() == 1:
        raise AssertionError("loss returned a single number: it should return one squared error per sample "
                             "(shape [N]); the average belongs in mse_over_grid")
    if out.shape == want.shape and torch.allclose(out, want.sqrt()):
        raise AssertionError("loss is not squared: return (x * w - y) ** 2")
    if out.shape == want.shape and torch.allclose(out.abs(), want.sqrt()):
        raise AssertionError("loss is not squared: return (x * w - y) ** 2, not the plain difference")
    assert_close(out, want, "loss(x, y, w)", hint="each entry is (x[i] * w - y[i]) ** 2")


# --------------------------------------------------------------------------- ch02.grid

@pytest.mark.task("ch02.grid")
@pytest.mark.points(2)
def test_mse_over_grid_values(impl):
    xs, ys = _data(5)
    ws = torch.linspace(-1.0, 3.0, 9, dtype=torch.float64)
    out = impl.mse_over_grid(xs, ys, ws)
    want = torch.tensor([_mse_loop(xs, ys, w) for w in ws], dtype=torch.float64)
    assert isinstance(out, torch.Tensor) and out.shape == (9,), \
        f"mse_over_grid with 9 candidate weights and 5 samples returned shape {_shape(out)}, expected [9]: " \
        "average over the samples, one value per candidate w"
    assert_close(out, want, "mse_over_grid", hint="{ratio}: average over the samples (the mean), not the sum")


@pytest.mark.task("ch02.grid")
@pytest.mark.points(1)
def test_mse_over_grid_keeps_dtype(impl):
    for dtype in (torch.float64, torch.float32):
        xs, ys = (t.to(dtype) for t in _data(4))
        out = impl.mse_over_grid(xs, ys, torch.linspace(0.0, 2.0, 5, dtype=dtype))
        assert isinstance(out, torch.Tensor) and out.dtype == dtype, \
            f"mse_over_grid returned {out.dtype if isinstance(out, torch.Tensor) else type_name(out)} " \
            f"for {dtype} inputs: build the result from the inputs (or give torch.zeros dtype=xs.dtype)"


@pytest.mark.task("ch02.grid")
@pytest.mark.points(2)
def test_best_weight_values(impl):
    xs = torch.tensor([0.5, 1.0, 2.0, 3.5], dtype=torch.float64)
    ys = 1.3 * xs + torch.tensor([0.1, -0.2, 0.05, 0.1], dtype=torch.float64)
    ws = torch.arange(-1.0, 3.0, 0.05, dtype=torch.float64)
    mses = [_mse_loop(xs, ys, w) for w in ws]
    k = min(range(len(ws)), key=mses.__getitem__)
    best = impl.best_weight(xs, ys, ws)
    value = best.item() if isinstance(best, torch.Tensor) and best.numel() == 1 else best
    try:
        grid_ok = torch.allclose(impl.mse_over_grid(xs, ys, ws).double(), torch.tensor(mses, dtype=torch.float64))
    except NotImplementedError:
        grid_ok = True  # best_weight may compute the MSEs itself
    except Exception:  # noqa: BLE001 - any other failure means mse_over_grid is broken
        grid_ok = False
    if not grid_ok and not (isinstance(value, float) and abs(value - float(ws[k])) < 1e-9):
        raise AssertionError(f"best_weight returned {value!r}, expected {float(ws[k]):.2f}; mse_over_grid is "
                             "wrong too (see its tests), and best_weight builds on it: fix that first")
    if value == k:
        raise AssertionError(f"best_weight returned {k}, the index of the best candidate: return the weight "
                             "itself, ws[index]")
    if isinstance(value, float) and abs(value - float(ws[max(range(len(ws)), key=mses.__getitem__)])) < 1e-9:
        raise AssertionError("best_weight returned the weight of the LARGEST MSE: use argmin, not argmax")
    assert isinstance(best, float), \
        f"best_weight returned {type_name(best)}, expected a Python float: use .item()"
    assert abs(best - float(ws[k])) < 1e-9, f"best_weight returned {best}, expected {float(ws[k]):.2f}"


# --------------------------------------------------------------------------- ch02.surface

@pytest.mark.task("ch02.surface")
@pytest.mark.points(2)
def test_mse_surface_values(impl):
    xs, ys = _data(5)
    ws = torch.tensor([-0.5, 0.5, 1.5, 2.5], dtype=torch.float64)
    bs = torch.tensor([-1.0, 0.0, 0.75], dtype=torch.float64)
    out = impl.mse_surface(xs, ys, ws, bs)
    want = torch.tensor([[_mse_loop(xs, ys, w, b) for b in bs] for w in ws], dtype=torch.float64)
    assert isinstance(out, torch.Tensor), f"mse_surface returned {type_name(out)}, expected a Tensor"
    if out.shape == (3, 4):
        raise AssertionError("mse_surface returned [L, K] = [3, 4], expected [K, L] = [4, 3]: rows follow w "
                             "and columns follow b")
    assert out.shape == (4, 3), \
        f"mse_surface with 4 weights and 3 biases returned shape {list(out.shape)}, expected [4, 3]"
    minus_b = torch.tensor([[_mse_loop(xs, ys, w, -b) for b in bs] for w in ws], dtype=torch.float64)
    if torch.allclose(out.double(), minus_b):
        raise AssertionError("mse_surface subtracts b: the model is y_hat = x * w + b")
    assert_close(out, want, "mse_surface", hint="{ratio}: average the squared errors over the samples")


@pytest.mark.task("ch02.surface")
@pytest.mark.points(1)
def test_mse_surface_lowest_at_lecture_answer(impl):
    ws = torch.arange(0.0, 4.1, 0.1)
    bs = torch.arange(-2.0, 2.1, 0.5)
    out = impl.mse_surface(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 4.0, 6.0]), ws, bs)
    assert _shape(out) == [41, 9], f"mse_surface with 41 weights and 9 biases returned shape {_shape(out)}"
    k, l = divmod(int(out.argmin()), 9)
    assert abs(ws[k].item() - 2.0) < 1e-5 and bs[l].item() == 0.0, \
        f"the lowest MSE of the surface is at w = {ws[k].item():.1f}, b = {bs[l].item():.1f}; for y = 2x it " \
        "should be at w = 2, b = 0"
    assert out[k, l].item() < 1e-10, f"the MSE at w = 2, b = 0 is {out[k, l].item():.3g}, expected 0"
