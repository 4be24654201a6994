"""Chapter 02, public tests: the lecture's data (y = 2x) and grid, with the checks the grading runs.

Every property graded later (values against a float64 loop, one squared error per sample, a
tensor w that broadcasts, the mean over the samples, the inputs' dtype, argmin returning the
weight, rows following w and columns b) is checked here on the lecture's numbers. The graded
run repeats the checks on other data, grids and dtypes, so code that only reproduces the
lecture's answers will lose points there.
"""
from contextlib import contextmanager

import pytest
import torch

from grader.remote import type_name
from grader.testing import assert_close

X = torch.tensor([1.0, 2.0, 3.0])
Y = torch.tensor([2.0, 4.0, 6.0])
W_GRID = torch.arange(0.0, 4.1, 0.1)   # the lecture's 41 candidates


def _shape(value):
    return list(value.shape) if isinstance(value, torch.Tensor) else type_name(value)


def _mse_loop(xs, ys, w, b=0.0):
    return sum((float(x) * float(w) + float(b) - float(y)) ** 2 for x, y in zip(xs, ys)) / len(xs)


def _agrees(got, want):
    return isinstance(got, torch.Tensor) and got.shape == want.shape and \
        torch.allclose(got.double(), want.double(), rtol=1e-5, atol=1e-6)


def _forward_ok(impl):
    table = torch.tensor([[1.0], [2.0]])
    return _agrees(impl.forward(X, 2.0), Y) and _agrees(impl.forward(X[None, :], table), X[None, :] * table)


def _loss_ok(impl):
    table = torch.tensor([[1.0], [3.0]])
    return _agrees(impl.loss(X, Y, 1.0), (X - Y) ** 2) and \
        _agrees(impl.loss(X[None, :], Y[None, :], table), (X[None, :] * table - Y[None, :]) ** 2)


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
                right = True   # not written yet: `what` may do the arithmetic itself
            except Exception:  # noqa: BLE001 - the helper crashes: it is wrong
                right = False
            if not right:
                raise AssertionError(f"your {name}() is wrong (see the {task} tests) and {what} builds on "
                                     f"it: fix {task} first") from None
        raise


# --------------------------------------------------------------------------- ch02.forward

@pytest.mark.task("ch02.forward")
@pytest.mark.points(1)
def test_forward_lecture_data(impl):
    out = impl.forward(X, 2.0)
    assert isinstance(out, torch.Tensor), f"forward returned {type_name(out)}, expected a Tensor"
    assert out.tolist() == [2.0, 4.0, 6.0], f"forward([1, 2, 3], w=2) returned {out.tolist()}, expected [2, 4, 6]"


@pytest.mark.task("ch02.forward")
@pytest.mark.points(1)
def test_forward_with_a_tensor_w(impl):
    ws = torch.tensor([[1.0], [2.0]])
    try:
        table = impl.forward(X[None, :], ws)
    except NotImplementedError:
        raise
    except (RuntimeError, TypeError, ValueError) as exc:
        raise AssertionError(f"forward(x [1, 3], w [2, 1]) failed ({str(exc).splitlines()[0]}): keep it a "
                             "plain x * w so that a tensor w broadcasts (do not turn w into a float)") from None
    assert _shape(table) == [2, 3], \
        f"forward(x [1, 3], w [2, 1]) returned shape {_shape(table)}, expected [2, 3]: keep it a plain " \
        "x * w so that a tensor w broadcasts"
    assert_close(table, [[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]], "forward(x [1, 3], w [2, 1])",
                 hint="row k holds x * w[k]")
    out = impl.forward(X.double(), 2.0)
    assert _shape(out) == [3] and out.dtype == torch.float64, \
        f"forward on float64 x returned {out.dtype if isinstance(out, torch.Tensor) else type_name(out)}: " \
        "x * w keeps x's dtype"


# --------------------------------------------------------------------------- ch02.loss

def _check_loss(out, x, y, w, what):
    want = (x * w - y) ** 2
    assert isinstance(out, torch.Tensor), f"{what} returned {type_name(out)}, expected a Tensor"
    if out.numel() == 1 and want.numel() > 1:
        raise AssertionError(f"{what} returned a single number: loss returns one squared error per sample "
                             f"(shape {list(want.shape)}); the average belongs in mse_over_grid")
    if out.shape == want.shape and torch.allclose(out.abs(), want.sqrt()):
        raise AssertionError(f"loss is not squared: {what} returned the plain difference; return "
                             "(x * w - y) ** 2")
    assert out.shape == want.shape, f"{what} returned shape {list(out.shape)}, expected {list(want.shape)}"
    assert_close(out, want, what, hint="each entry is (x[i] * w - y[i]) ** 2")


@pytest.mark.task("ch02.loss")
@pytest.mark.points(1)
def test_loss_lecture_data(impl):
    with _builds_on(impl, "loss", "forward"):
        out = impl.loss(X, Y, 1.0)
        _check_loss(out, X, Y, 1.0, "loss(x, y, w=1)")


@pytest.mark.task("ch02.loss")
@pytest.mark.points(1)
def test_loss_with_a_column_of_weights(impl):
    ws = torch.tensor([[1.0], [2.0], [3.0]])
    with _builds_on(impl, "loss", "forward"):
        try:
            out = impl.loss(X[None, :], Y[None, :], ws)
        except NotImplementedError:
            raise
        except (RuntimeError, TypeError, ValueError) as exc:
            raise AssertionError(f"loss(x [1, 3], y [1, 3], w [3, 1]) failed ({str(exc).splitlines()[0]}): "
                                 "mse_over_grid passes a column of weights, so keep w a tensor that "
                                 "broadcasts (no float(w))") from None
        _check_loss(out, X[None, :], Y[None, :], ws, "loss(x [1, 3], y [1, 3], w [3, 1])")


# --------------------------------------------------------------------------- ch02.grid

@pytest.mark.task("ch02.grid")
@pytest.mark.points(1)
def test_mse_over_grid_shape(impl):
    want = torch.tensor([_mse_loop(X, Y, w) for w in W_GRID], dtype=torch.float64)
    with _builds_on(impl, "mse_over_grid", "forward", "loss"):
        out = impl.mse_over_grid(X, Y, W_GRID)
        assert isinstance(out, torch.Tensor) and out.shape == (41,), \
            f"mse_over_grid with 41 candidate weights should return shape [41], got {_shape(out)}: " \
            "average over the samples, one value per candidate w"
        assert_close(out, want, "mse_over_grid on the lecture's data",
                     hint="{ratio}: average over the samples (the mean), not the sum")


@pytest.mark.task("ch02.grid")
@pytest.mark.points(1)
def test_mse_over_grid_keeps_float64(impl):
    xs, ys, ws = X.double(), Y.double(), torch.arange(0.0, 4.1, 0.5, dtype=torch.float64)
    with _builds_on(impl, "mse_over_grid", "forward", "loss"):
        out = impl.mse_over_grid(xs, ys, ws)
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float64, \
            f"mse_over_grid returned {out.dtype if isinstance(out, torch.Tensor) else type_name(out)} for " \
            "float64 inputs: build the result from the inputs (or give torch.zeros dtype=xs.dtype)"
        assert_close(out, [_mse_loop(xs, ys, w) for w in ws], "mse_over_grid on float64 lecture data",
                     hint="{ratio}: average over the samples (the mean), not the sum")


@pytest.mark.task("ch02.grid")
@pytest.mark.points(1)
def test_best_weight_lecture(impl):
    mses = [_mse_loop(X, Y, w) for w in W_GRID]
    k = min(range(len(mses)), key=mses.__getitem__)
    with _builds_on(impl, "best_weight", "forward", "loss"):
        best = impl.best_weight(X, Y, W_GRID)
        value = best.item() if isinstance(best, torch.Tensor) and best.numel() == 1 else best
        if isinstance(value, int) and value == k:
            raise AssertionError(f"best_weight returned {k}, the index of the best candidate: return the "
                                 "weight itself, the entry of ws at that index")
        if isinstance(value, (int, float)):
            near = [j for j, w in enumerate(W_GRID.tolist()) if abs(w - value) < 1e-6]
            if near and mses[near[0]] > max(mses) * (1 - 1e-4):
                raise AssertionError(f"best_weight returned {value:.1f}, the weight of the LARGEST MSE: use "
                                     "argmin, not argmax")
        assert isinstance(best, float), \
            f"best_weight returned {type_name(best)}, expected a Python float (.item())"
        assert abs(best - 2.0) < 1e-5, f"best_weight on the lecture's data returned {best}, expected 2.0"


# --------------------------------------------------------------------------- ch02.surface

def _swapped_or_subtracted(out, want, minus_b):
    if isinstance(out, torch.Tensor) and out.shape == want.T.shape and out.shape != want.shape:
        raise AssertionError(f"mse_surface returned [L, K] = {list(out.shape)}, expected [K, L] = "
                             f"{list(want.shape)}: rows follow w and columns follow b")
    if isinstance(out, torch.Tensor) and out.shape == want.shape:
        if out.shape[0] == out.shape[1] and _agrees(out, want.T) and not _agrees(out, want):
            raise AssertionError("mse_surface returned the table transposed: rows follow w and columns follow b")
        if _agrees(out, minus_b) and not _agrees(out, want):
            raise AssertionError("mse_surface subtracts b: the model is y_hat = x * w + b")


@pytest.mark.task("ch02.surface")
@pytest.mark.points(1)
def test_mse_surface_shape(impl):
    bs = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0])
    want = torch.tensor([[_mse_loop(X, Y, w, b) for b in bs] for w in W_GRID], dtype=torch.float64)
    minus_b = torch.tensor([[_mse_loop(X, Y, w, -b) for b in bs] for w in W_GRID], dtype=torch.float64)
    with _builds_on(impl, "mse_surface", "forward"):
        out = impl.mse_surface(X, Y, W_GRID, bs)
        assert isinstance(out, torch.Tensor), f"mse_surface returned {type_name(out)}, expected a Tensor"
        _swapped_or_subtracted(out, want, minus_b)
        assert out.shape == (41, 5), \
            f"mse_surface with 41 weights and 5 biases should return shape [41, 5], got {list(out.shape)}"
        assert_close(out, want, "mse_surface on the lecture's data",
                     hint="{ratio}: average the squared errors over the samples")


@pytest.mark.task("ch02.surface")
@pytest.mark.points(1)
def test_mse_surface_lowest_at_w2_b0(impl):
    bs = torch.arange(-20, 21) / 10.0   # -2.0 ... 2.0, as in the demonstration
    want = torch.tensor([[_mse_loop(X, Y, w, b) for b in bs] for w in W_GRID], dtype=torch.float64)
    minus_b = torch.tensor([[_mse_loop(X, Y, w, -b) for b in bs] for w in W_GRID], dtype=torch.float64)
    with _builds_on(impl, "mse_surface", "forward"):
        out = impl.mse_surface(X, Y, W_GRID, bs)
        assert _shape(out) == [41, 41], f"mse_surface with 41 weights and 41 biases returned shape {_shape(out)}"
        _swapped_or_subtracted(out, want, minus_b)
        k, l = divmod(int(out.argmin()), 41)
        assert abs(W_GRID[k].item() - 2.0) < 1e-5 and abs(bs[l].item()) < 1e-6, \
            f"the lowest MSE of the surface is at w = {W_GRID[k].item():.1f}, b = {bs[l].item():.1f}; for " \
            "y = 2x it should be at w = 2, b = 0"
        assert_close(out, want, "mse_surface on the lecture's data",
                     hint="{ratio}: average the squared errors over the samples")
