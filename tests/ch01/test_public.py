"""Chapter 01, public tests: shapes and basic behaviour."""
import numpy as np
import pytest
import torch

from grader.remote import type_name


@pytest.mark.task("ch01.view")
@pytest.mark.points(1)
def test_flatten_images_shape(impl):
    out = impl.flatten_images(torch.zeros(2, 3, 4, 5))
    assert isinstance(out, torch.Tensor), f"flatten_images returned {type_name(out)}, expected a Tensor"
    assert out.shape == (2, 60), \
        f"flatten_images turned [2, 3, 4, 5] into {list(out.shape)}, expected [2, 60] = [B, C*H*W]"


@pytest.mark.task("ch01.broadcast")
@pytest.mark.points(1)
def test_outer_sum_small_example(impl):
    out = impl.outer_sum(torch.tensor([0.0, 10.0, 20.0]), torch.tensor([1.0, 2.0]))
    assert isinstance(out, torch.Tensor) and out.shape == (3, 2), \
        f"outer_sum of a [3] and a [2] vector should have shape [3, 2], got " \
        f"{list(out.shape) if isinstance(out, torch.Tensor) else type_name(out)}"
    assert out.tolist() == [[1.0, 2.0], [11.0, 12.0], [21.0, 22.0]], \
        f"outer_sum([0, 10, 20], [1, 2]) returned {out.tolist()}, expected [[1, 2], [11, 12], [21, 22]]"


@pytest.mark.task("ch01.gather")
@pytest.mark.points(1)
def test_pick_small_example(impl):
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]])
    out = impl.pick(scores, torch.tensor([1, 2]))
    assert isinstance(out, torch.Tensor) and out.shape == (2,), \
        f"pick on [2, 3] scores should return shape [2], got " \
        f"{list(out.shape) if isinstance(out, torch.Tensor) else type_name(out)}"
    assert torch.allclose(out, torch.tensor([0.7, 0.2])), \
        f"pick(scores, [1, 2]) returned {out.tolist()}, expected [0.7, 0.2] = [scores[0, 1], scores[1, 2]]"


@pytest.mark.task("ch01.accuracy")
@pytest.mark.points(1)
def test_count_correct_small_example(impl):
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 4.0], [5.0, 0.0, 1.0]])
    n = impl.count_correct(logits, torch.tensor([0, 1, 1, 2]))
    assert n == 2, f"count_correct returned {n!r}; predictions are [0, 1, 2, 0], labels [0, 1, 1, 2]: 2 correct"


@pytest.mark.task("ch01.numpy")
@pytest.mark.points(1)
def test_as_tensor_shared_values(impl):
    a = np.arange(6.0).reshape(2, 3)
    t = impl.as_tensor_shared(a)
    assert isinstance(t, torch.Tensor), f"as_tensor_shared returned {type_name(t)}, expected a Tensor"
    assert t.shape == (2, 3) and t.tolist() == a.tolist(), \
        f"as_tensor_shared should keep shape and values: got {list(t.shape)} {t.tolist()}"


@pytest.mark.task("ch01.inplace")
@pytest.mark.points(1)
def test_add_inplace_returns_x(probes):
    seen = probes.add_inplace(torch.ones(3), torch.tensor([1.0, 2.0, 3.0]))
    x = seen["x"]
    assert seen["is_x"], "add_inplace_ should return x itself (the same object), not a new tensor"
    assert x.tolist() == [2.0, 3.0, 4.0], f"after add_inplace_(ones, [1, 2, 3]) x is {x.tolist()}, expected [2, 3, 4]"
