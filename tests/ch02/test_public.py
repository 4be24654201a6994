"""Chapter 02, public tests: shapes and the lecture's numbers."""
import pytest
import torch

from grader.remote import type_name


@pytest.mark.task("ch02.forward")
@pytest.mark.points(1)
def test_forward_lecture_data(impl):
    out = impl.forward(torch.tensor([1.0, 2.0, 3.0]), 2.0)
    assert isinstance(out, torch.Tensor), f"forward returned {type_name(out)}, expected a Tensor"
    assert out.tolist() == [2.0, 4.0, 6.0], f"forward([1, 2, 3], w=2) returned {out.tolist()}, expected [2, 4, 6]"


@pytest.mark.task("ch02.loss")
@pytest.mark.points(1)
def test_loss_lecture_data(impl):
    out = impl.loss(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 4.0, 6.0]), 1.0)
    assert isinstance(out, torch.Tensor) and out.shape == (3,), \
        f"loss should return one squared error per sample, shape [3]; got " \
        f"{list(out.shape) if isinstance(out, torch.Tensor) else type_name(out)}"
    assert out.tolist() == [1.0, 4.0, 9.0], f"loss(x, y, w=1) returned {out.tolist()}, expected [1, 4, 9]"


@pytest.mark.task("ch02.grid")
@pytest.mark.points(1)
def test_mse_over_grid_shape(impl):
    ws = torch.arange(0.0, 4.1, 0.1)
    out = impl.mse_over_grid(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 4.0, 6.0]), ws)
    assert isinstance(out, torch.Tensor) and out.shape == (41,), \
        f"mse_over_grid with 41 candidate weights should return shape [41], got " \
        f"{list(out.shape) if isinstance(out, torch.Tensor) else type_name(out)}"


@pytest.mark.task("ch02.grid")
@pytest.mark.points(1)
def test_best_weight_lecture(impl):
    best = impl.best_weight(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 4.0, 6.0]),
                            torch.arange(0.0, 4.1, 0.1))
    assert isinstance(best, float), f"best_weight returned {type_name(best)}, expected a Python float"
    assert abs(best - 2.0) < 1e-5, f"best_weight on the lecture's data returned {best}, expected 2.0"


@pytest.mark.task("ch02.surface")
@pytest.mark.points(1)
def test_mse_surface_shape(impl):
    out = impl.mse_surface(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 4.0, 6.0]),
                           torch.arange(0.0, 4.1, 0.1), torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))
    assert isinstance(out, torch.Tensor) and out.shape == (41, 5), \
        f"mse_surface with 41 weights and 5 biases should return shape [41, 5], got " \
        f"{list(out.shape) if isinstance(out, torch.Tensor) else type_name(out)}"
