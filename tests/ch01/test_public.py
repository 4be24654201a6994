"""Chapter 01, public tests: the lecture's examples, with the checks the grading runs.

Every property graded later (views share storage, broadcasting without loops, gather on the
right dim, a Python int count, shared NumPy memory, in-place updates) is checked here on the
lecture's small examples. The graded run repeats the checks on other inputs and sizes, so
code that works for these examples only will lose points there.
"""
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
def test_flatten_images_shape(impl):
    x = torch.arange(120.0).view(2, 3, 4, 5)
    out = impl.flatten_images(x)
    assert isinstance(out, torch.Tensor), f"flatten_images returned {type_name(out)}, expected a Tensor"
    assert out.dim() == 2, \
        f"flatten_images turned [2, 3, 4, 5] into {list(out.shape)}, expected [2, 60] = [B, C*H*W]: keep " \
        "dim 0 (the batch) and merge only C, H and W, rather than flattening the batch dimension too"
    assert out.shape == (2, 60), \
        f"flatten_images turned [2, 3, 4, 5] into {list(out.shape)}, expected [2, 60] = [B, C*H*W]"
    if torch.equal(out, x.permute(0, 2, 3, 1).reshape(2, -1)):
        raise AssertionError("flatten_images puts the elements in H, W, C order: keep x's C, H, W "
                             "order (no permute/transpose before flattening)")
    assert_close(out, x.reshape(2, -1), "flatten_images(x)", rtol=0, atol=0,
                 hint="row b must hold x[b] flattened in C, H, W order")


@pytest.mark.task("ch01.view")
@pytest.mark.points(1)
def test_flatten_images_shares_storage(impl, probes):
    x = torch.arange(120.0).view(2, 3, 4, 5)
    out = impl.flatten_images(x)
    assert _shape(out) == [2, 60], f"flatten_images turned [2, 3, 4, 5] into {_shape(out)}, expected [2, 60]"
    seen = probes.flatten_then_write(x, (1, 7), -1.0)
    want = x.clone()
    want[1, 0, 1, 2] = -1.0   # element 7 of row 1: c = 0, h = 1, w = 2
    assert seen["out_storage"] == seen["x_storage"] and torch.equal(seen["x"], want), \
        "flatten_images returned a copy, not a view: writing flat[1, 7] should change x[1, 0, 1, 2]; " \
        "change only the shape with Tensor.view, and do not clone, stack or build a new tensor"


# --------------------------------------------------------------------------- ch01.broadcast

@pytest.mark.task("ch01.broadcast")
@pytest.mark.points(1)
def test_outer_sum_small_example(impl):
    col, row = torch.tensor([0.0, 10.0, 20.0]), torch.tensor([1.0, 2.0])
    want = torch.tensor([[1.0, 2.0], [11.0, 12.0], [21.0, 22.0]])
    try:
        out = impl.outer_sum(col, row)
    except NotImplementedError:
        raise
    except RuntimeError as exc:
        raise AssertionError(f"outer_sum failed for a [3] and a [2] vector ({str(exc).splitlines()[0]}): "
                             "shape col as a column [3, 1] and row as a row [1, 2] so that broadcasting "
                             "gives [3, 2]") from None
    assert isinstance(out, torch.Tensor), f"outer_sum returned {type_name(out)}, expected a Tensor"
    if out.shape == (2, 3) and torch.equal(out, want.T):
        raise AssertionError("outer_sum([0, 10, 20], [1, 2]) returned the transposed table [M, N] = [2, 3]: "
                             "out[i, j] = col[i] + row[j], so col indexes the rows and row the columns")
    assert out.shape == (3, 2), \
        f"outer_sum of a [3] and a [2] vector returned shape {list(out.shape)}, expected [3, 2]"
    assert_close(out, want, "outer_sum([0, 10, 20], [1, 2])", hint="out[i, j] must be col[i] + row[j]")


@pytest.mark.task("ch01.broadcast")
@pytest.mark.points(1)
def test_outer_sum_without_python_loops(impl, probes):
    col, row = torch.arange(12.0), 0.5 * torch.arange(10.0)
    out, ops = probes.traced_call("outer_sum", col, row)
    assert _shape(out) == [12, 10], \
        f"outer_sum of a [12] and a [10] vector returned shape {_shape(out)}, expected [12, 10]"
    assert len(ops) < 20, \
        f"outer_sum ran {len(ops)} tensor operations for a [12] x [10] table: it loops in Python; " \
        "a single broadcast addition of a column and a row builds the whole table"
    assert_close(out, col[:, None].double() + row[None, :].double(), "outer_sum(col, row)",
                 hint="out[i, j] must be col[i] + row[j]")


# --------------------------------------------------------------------------- ch01.gather

@pytest.mark.task("ch01.gather")
@pytest.mark.points(1)
def test_pick_small_example(impl):
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]])
    try:
        out = impl.pick(scores, torch.tensor([1, 2]))
    except NotImplementedError:
        raise
    except RuntimeError as exc:
        raise AssertionError(f"pick failed on [2, 3] scores with index [1, 2] ({str(exc).splitlines()[0]}): "
                             "index[i] is a column of row i, so gather within the rows (dim 1) with the "
                             "index shaped [N, 1]") from None
    assert isinstance(out, torch.Tensor), f"pick returned {type_name(out)}, expected a Tensor"
    if out.shape == (2, 1):
        raise AssertionError("pick returned shape [2, 1], expected [2]: gather keeps index's [N, 1] shape; "
                             "drop the extra dim afterwards")
    assert out.shape == (2,), f"pick on [2, 3] scores returned shape {list(out.shape)}, expected [2]"
    assert_close(out, torch.tensor([0.7, 0.2]), "pick(scores, [1, 2])", rtol=0, atol=0,
                 hint="out[i] must be scores[i, index[i]]: [scores[0, 1], scores[1, 2]]")


@pytest.mark.task("ch01.gather")
@pytest.mark.points(1)
def test_pick_uses_gather_on_dim_1(probes):
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.6, 0.1, 0.3], [0.2, 0.2, 0.6]])
    index = torch.tensor([1, 0, 0, 2])
    out, ops = probes.traced_call("pick", scores, index)
    assert _shape(out) == [4], f"pick on [4, 3] scores returned shape {_shape(out)}, expected [4]"
    if torch.equal(out, scores.gather(0, index[:, None]).flatten()):
        raise AssertionError("pick gathered along dim 0 (down the columns): out[i] came from "
                             "scores[index[i], 0]; gather on dim 1, which picks within each row")
    assert {"gather", "take_along_dim"} & set(ops), \
        "pick does not use Tensor.gather, which this task practises: gather on dim 1 with the index " \
        "shaped [N, 1], then drop the extra dim"
    assert_close(out, torch.tensor([0.7, 0.5, 0.6, 0.6]), "pick(scores, [1, 0, 0, 2])", rtol=0, atol=0,
                 hint="out[i] must be scores[i, index[i]]")


# --------------------------------------------------------------------------- ch01.accuracy

LOGITS = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 4.0], [5.0, 0.0, 1.0]])
LABELS = torch.tensor([0, 1, 1, 2])   # predictions are [0, 1, 2, 0]: 2 correct


@pytest.mark.task("ch01.accuracy")
@pytest.mark.points(1)
def test_count_correct_small_example(impl):
    n = impl.count_correct(LOGITS, LABELS)
    value = n.item() if isinstance(n, torch.Tensor) and n.numel() == 1 else n
    if value == int((LOGITS.argmax() == LABELS).sum()) and value != 2:
        raise AssertionError(f"count_correct returned {value!r}: argmax without dim returns one index into "
                             "the flattened logits; take the arg-max over the classes (dim=1), one "
                             "prediction per row")
    if isinstance(value, float) and abs(value - 0.5) < 1e-6:
        raise AssertionError("count_correct returned 0.5, a fraction: return the number of correct "
                             "predictions (the sum), not the mean")
    assert value == 2, f"count_correct returned {value!r}; predictions are [0, 1, 2, 0], labels [0, 1, 1, 2]: " \
        "2 correct"


@pytest.mark.task("ch01.accuracy")
@pytest.mark.points(1)
def test_count_correct_gives_a_python_int(impl):
    got = impl.count_correct(LOGITS, LABELS)
    assert not isinstance(got, torch.Tensor), \
        "count_correct returned a Tensor: convert the count to a Python int with .item() or int(...)"
    assert isinstance(got, int) and not isinstance(got, bool), \
        f"count_correct returned {got!r} ({type_name(got)}), expected a Python int"
    assert got == 2, f"count_correct returned {got!r} for the example, expected 2 correct predictions"


# --------------------------------------------------------------------------- ch01.numpy

@pytest.mark.task("ch01.numpy")
@pytest.mark.points(1)
def test_as_tensor_shared_values(impl):
    a = np.arange(6.0).reshape(2, 3)
    t = impl.as_tensor_shared(a)
    assert isinstance(t, torch.Tensor), f"as_tensor_shared returned {type_name(t)}, expected a Tensor"
    assert t.dtype == torch.float64, \
        f"as_tensor_shared turned a float64 array into {t.dtype}: converting the dtype makes a copy; " \
        "keep the array's dtype"
    assert t.shape == (2, 3), f"as_tensor_shared turned a [2, 3] array into shape {list(t.shape)}"
    assert_close(t, a, "as_tensor_shared(a)", rtol=0, atol=0)


@pytest.mark.task("ch01.numpy")
@pytest.mark.points(1)
def test_as_tensor_shared_shares_memory_both_ways(probes):
    seen = probes.shared_then_write(np.arange(6.0).reshape(2, 3), (0, 1), 42.0, (1, 2), -7.0)
    t, a = seen["tensor"], seen["array"]
    assert isinstance(t, torch.Tensor), f"as_tensor_shared returned {type_name(t)}, expected a Tensor"
    assert t.shape == (2, 3) and t[0, 1].item() == 42.0 and a[1, 2] == -7.0, \
        "as_tensor_shared returned a copy: writing into the array (or the tensor) does not show in the " \
        "other; torch.tensor(a) copies the data, torch.from_numpy(a) shares the array's memory"


# --------------------------------------------------------------------------- ch01.inplace

@pytest.mark.task("ch01.inplace")
@pytest.mark.points(1)
def test_add_inplace_returns_x(probes):
    seen = probes.add_inplace(torch.ones(3), torch.tensor([1.0, 2.0, 3.0]))
    x = seen["x"]
    if torch.equal(x, torch.ones(3)):
        raise AssertionError("x was not changed in place: after add_inplace_(x, y) the caller's x still holds "
                             "its old values; `x = x + y` (or x.add(y)) makes a new tensor and leaves the "
                             "caller's x alone; use an in-place method (name ending in `_`) or +=")
    assert seen["is_x"], "add_inplace_ should return x itself (the same object), not a new tensor"
    assert seen["ptr_after"] == seen["ptr_before"], "x now lives in new memory: add in place instead"
    assert x.tolist() == [2.0, 3.0, 4.0], f"after add_inplace_(ones, [1, 2, 3]) x is {x.tolist()}, expected [2, 3, 4]"


@pytest.mark.task("ch01.inplace")
@pytest.mark.points(1)
def test_add_inplace_broadcasts_y_over_rows(probes):
    seen = probes.add_inplace(torch.ones(2, 2), torch.tensor([1.0, 2.0]))
    x = seen["x"]
    if torch.equal(x, torch.ones(2, 2)):
        raise AssertionError("x was not changed in place: `x = x + y` only rebinds the local name to a new "
                             "tensor; use an in-place method (name ending in `_`) or +=")
    assert seen["is_x"] and seen["ptr_after"] == seen["ptr_before"], \
        "add_inplace_ should update x in its own memory and return x itself, not a new tensor"
    assert x.tolist() == [[2.0, 3.0], [2.0, 3.0]], \
        f"adding [1, 2] in place to a [2, 2] tensor of ones gave {x.tolist()}: y broadcasts over the rows"
