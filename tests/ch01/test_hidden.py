"""Chapter 01, hidden tests: the public checks again on held-out inputs and sizes (random values,
other shapes, other dtypes), so code that only fits the public examples loses points here."""
import numpy as np
import pytest
import torch

from grader.remote import type_name
from grader.testing import assert_close


def _shape(value):
    return list(value.shape) if isinstance(value, torch.Tensor) else type_name(value)


# --------------------------------------------------------------------------- ch01.view

@pytest.mark.task("ch01.view")
@pytest.mark.points(1)
def test_flatten_images_values(impl):
    x = torch.randn(3, 2, 4, 5)
    out = impl.flatten_images(x)
    assert isinstance(out, torch.Tensor) and out.dim() == 2, \
        f"flatten_images returned shape {_shape(out)} for a held-out [3, 2, 4, 5] batch; expected [3, 40]: " \
        "keep dim 0 (the batch) and merge only C, H and W, rather than flattening the batch dimension too"
    if out.shape == (3, 40) and torch.equal(out, x.permute(0, 2, 3, 1).reshape(3, -1)):
        raise AssertionError("flatten_images puts the elements in H, W, C order: keep x's C, H, W "
                             "order (no permute/transpose before flattening)")
    assert_close(out, x.reshape(3, -1), "flatten_images(x) on a held-out [3, 2, 4, 5] batch", rtol=0, atol=0,
                 hint="row b must hold x[b] flattened in C, H, W order")


@pytest.mark.task("ch01.view")
@pytest.mark.points(1)
def test_flatten_images_is_a_view(impl, probes):
    x = torch.randn(4, 1, 28, 28)
    out = impl.flatten_images(x)
    assert _shape(out) == [4, 784], f"flatten_images turned [4, 1, 28, 28] into {_shape(out)}, expected [4, 784]"
    seen = probes.flatten_then_write(x, (2, 5), 123.0)
    shares = seen["out_storage"] == seen["x_storage"]
    assert shares and seen["x"][2, 0, 0, 5].item() == 123.0, \
        "flatten_images returned a copy, not a view, for a held-out [4, 1, 28, 28] batch: writes to the " \
        "result do not show in x; change only the shape with Tensor.view, and do not clone, stack or build " \
        "a new tensor"


# --------------------------------------------------------------------------- ch01.broadcast

def _outer_reference(col, row):
    out = torch.empty(len(col), len(row), dtype=torch.float64)
    for i in range(len(col)):
        for j in range(len(row)):
            out[i, j] = float(col[i]) + float(row[j])
    return out


@pytest.mark.task("ch01.broadcast")
@pytest.mark.points(1)
def test_outer_sum_values(impl):
    col, row = torch.randn(4), torch.randn(4)
    out = impl.outer_sum(col, row)
    assert isinstance(out, torch.Tensor) and out.shape == (4, 4), \
        f"outer_sum of two [4] vectors returned shape {_shape(out)}, expected [4, 4]: if you added col and " \
        "row elementwise, make col a column [N, 1] first so every col[i] meets every row[j]"
    col, row = torch.randn(5), torch.randn(3)
    try:
        out = impl.outer_sum(col, row)
    except NotImplementedError:
        raise
    except RuntimeError as exc:
        raise AssertionError(f"outer_sum failed for a [5] and a [3] vector ({str(exc).splitlines()[0]}): "
                             "shape col as [5, 1] and row as [1, 3] so that broadcasting gives [5, 3]") from None
    want = _outer_reference(col, row)
    if isinstance(out, torch.Tensor) and out.shape == (3, 5) and torch.allclose(out.double(), want.T):
        raise AssertionError("outer_sum returned the transposed table [M, N] for held-out [5] and [3] vectors: "
                             "out[i, j] = col[i] + row[j], so col indexes the rows and row the columns")
    assert_close(out, want, "outer_sum(col, row) on held-out [5] and [3] vectors",
                 hint="out[i, j] must be col[i] + row[j]")


@pytest.mark.task("ch01.broadcast")
@pytest.mark.points(1)
def test_outer_sum_has_no_python_loop(probes):
    col, row = torch.randn(40), torch.randn(30)
    out, ops = probes.traced_call("outer_sum", col, row)
    assert isinstance(out, torch.Tensor) and out.shape == (40, 30), \
        f"outer_sum of a [40] and a [30] vector returned shape {_shape(out)}, expected [40, 30]"
    assert len(ops) < 20, \
        f"outer_sum ran {len(ops)} tensor operations for a held-out [40] x [30] table: it loops in Python; " \
        "a single broadcast addition of a column and a row builds the whole table"


# --------------------------------------------------------------------------- ch01.gather

@pytest.mark.task("ch01.gather")
@pytest.mark.points(1)
def test_pick_values(impl):
    scores = torch.randn(6, 4)
    index = torch.tensor([3, 0, 2, 2, 1, 0])
    out = impl.pick(scores, index)
    want = torch.stack([scores[i, index[i]] for i in range(6)])
    assert isinstance(out, torch.Tensor), f"pick returned {type_name(out)}, expected a Tensor"
    if out.shape == (6, 1):
        raise AssertionError("pick returned shape [6, 1], expected [6]: gather keeps index's [N, 1] shape; "
                             "drop the extra dim afterwards")
    if out.numel() == 6 and torch.equal(out.flatten(), scores.gather(0, index[:, None]).flatten()):
        raise AssertionError("pick gathered along dim 0 (down the columns): use gather on dim 1, "
                             "which picks within each row")
    assert out.shape == (6,), f"pick on [6, 4] scores returned shape {list(out.shape)}, expected [6]"
    assert_close(out, want, "pick(scores, index) on held-out [6, 4] scores", rtol=0, atol=0,
                 hint="out[i] must be scores[i, index[i]]")


@pytest.mark.task("ch01.gather")
@pytest.mark.points(1)
def test_pick_uses_gather(probes):
    scores = torch.randn(5, 3)
    index = torch.tensor([0, 2, 1, 1, 0])
    out, ops = probes.traced_call("pick", scores, index)
    assert isinstance(out, torch.Tensor) and out.shape == (5,), \
        f"pick on [5, 3] scores returned shape {_shape(out)}, expected [5]"
    assert {"gather", "take_along_dim"} & set(ops), \
        "pick does not use Tensor.gather, which this task practises: gather on dim 1 with the index " \
        "shaped [N, 1], then drop the extra dim"


# --------------------------------------------------------------------------- ch01.accuracy

@pytest.mark.task("ch01.accuracy")
@pytest.mark.points(1)
def test_count_correct_values(impl):
    logits = torch.randn(50, 7)
    labels = torch.randint(0, 7, (50,))
    labels[:20] = logits[:20].argmax(dim=1)  # make sure many are right
    want = sum(int(max(range(7), key=lambda c: float(logits[i, c])) == int(labels[i])) for i in range(50))
    try:
        got = impl.count_correct(logits, labels)
    except NotImplementedError:
        raise
    except RuntimeError as exc:
        raise AssertionError(f"count_correct failed for [50, 7] logits ({str(exc).splitlines()[0]}): "
                             "the predictions must have shape [50]: take the arg-max over the classes, "
                             "argmax(dim=1)") from None
    value = got.item() if isinstance(got, torch.Tensor) and got.numel() == 1 else got
    if value == int((logits.argmax() == labels).sum()) and value != want:
        raise AssertionError("argmax without dim returns one index into the flattened logits: "
                             "use logits.argmax(dim=1), one prediction per row")
    if isinstance(value, float) and abs(value - want / 50) < 1e-6:
        raise AssertionError(f"count_correct returned {value:.3g}, a fraction: return the number of "
                             "correct predictions (the sum), not the mean")
    assert value == want, f"count_correct returned {value!r} on held-out [50, 7] logits, expected {want} " \
        "correct of 50: count the rows whose arg-max equals the label, whatever the batch size"


@pytest.mark.task("ch01.accuracy")
@pytest.mark.points(1)
def test_count_correct_returns_python_int(impl):
    logits = torch.tensor([[0.2, 0.8], [0.9, 0.1], [0.3, 0.7]])
    got = impl.count_correct(logits, torch.tensor([1, 0, 1]))
    assert not isinstance(got, torch.Tensor), \
        "count_correct returned a Tensor: convert the count to a Python int with .item() or int(...)"
    assert isinstance(got, int) and not isinstance(got, bool), \
        f"count_correct returned {got!r} ({type_name(got)}), expected a Python int"
    assert got == 3, f"count_correct returned {got!r} on held-out [3, 2] logits, expected 3 (all correct)"


# --------------------------------------------------------------------------- ch01.numpy

@pytest.mark.task("ch01.numpy")
@pytest.mark.points(1)
def test_as_tensor_shared_shares_memory(impl, probes):
    a = np.linspace(0.0, 1.0, 12).reshape(3, 4)
    t = impl.as_tensor_shared(a)
    assert isinstance(t, torch.Tensor), f"as_tensor_shared returned {type_name(t)}, expected a Tensor"
    seen = probes.shared_then_write(a, (1, 2), 42.0, (2, 3), -7.0)
    t, a = seen["tensor"], seen["array"]
    assert t[1, 2].item() == 42.0 and a[2, 3] == -7.0, \
        "as_tensor_shared returned a copy of a held-out [3, 4] array: writes do not show through; " \
        "torch.tensor(a) copies the data, torch.from_numpy(a) shares the array's memory"


@pytest.mark.task("ch01.numpy")
@pytest.mark.points(1)
def test_as_tensor_shared_keeps_dtype(impl):
    for dtype, want in [(np.float64, torch.float64), (np.int32, torch.int32)]:
        t = impl.as_tensor_shared(np.arange(4, dtype=dtype))
        assert t.dtype == want, \
            f"as_tensor_shared turned a {np.dtype(dtype).name} array into {t.dtype}: converting the dtype " \
            "makes a copy; keep the array's dtype"


# --------------------------------------------------------------------------- ch01.inplace

@pytest.mark.task("ch01.inplace")
@pytest.mark.points(1)
def test_add_inplace_changes_x_in_place(probes):
    before = torch.randn(4, 3)
    y = torch.randn(4, 3)
    seen = probes.add_inplace(before, y)
    x = seen["x"]
    if torch.equal(x, before):
        raise AssertionError("x was not changed in place: `x = x + y` (or x.add(y)) makes a new tensor and "
                             "leaves the caller's x alone; use an in-place method (name ending in `_`) or +=")
    assert seen["is_x"], "add_inplace_ should return x itself, not a new tensor"
    assert seen["ptr_after"] == seen["ptr_before"], "x now lives in new memory: add in place instead"
    assert_close(x, before + y, "x after add_inplace_(x, y) on held-out [4, 3] tensors")


@pytest.mark.task("ch01.inplace")
@pytest.mark.points(1)
def test_add_inplace_broadcasts_y(probes):
    seen = probes.add_inplace(torch.zeros(2, 3), torch.tensor([1.0, 2.0, 3.0]))
    x = seen["x"]
    assert seen["is_x"], "add_inplace_ should return x itself, not a new tensor"
    assert x.tolist() == [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], \
        f"adding [1, 2, 3] in place to a [2, 3] zero tensor gave {x.tolist()}: y broadcasts over the rows"
