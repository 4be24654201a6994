"""Chapter 04, public tests: return types, shapes and the lecture's numbers."""
import numpy as np
import pytest
import torch

X, Y = [1.0, 2.0, 3.0], [2.0, 4.0, 6.0]


@pytest.mark.task("ch04.autograd")
@pytest.mark.points(1)
def test_autograd_gradient_lecture_data(impl):
    g = impl.autograd_gradient(X, Y, 1.0)
    assert isinstance(g, float), f"autograd_gradient returned {type(g).__name__}, expected a Python float (.item())"
    assert abs(g - (-28 / 3)) < 1e-5, f"autograd_gradient(x, y, w=1) returned {g}, expected -28/3 = -9.3333"


@pytest.mark.task("ch04.quadratic")
@pytest.mark.points(1)
def test_train_quadratic_returns_three_floats(impl):
    out = impl.train_quadratic(X, Y, epochs=1)
    assert isinstance(out, tuple) and len(out) == 3, "train_quadratic should return a tuple (w1, w2, b)"
    assert all(isinstance(v, float) for v in out), \
        f"train_quadratic returned {[type(v).__name__ for v in out]}, expected three Python floats (.item())"


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
    assert isinstance(grad_w1, np.ndarray) and grad_w1.shape == (3, 5), \
        f"grad_w1 should be a NumPy array shaped like w1, [3, 5]; got {getattr(grad_w1, 'shape', type(grad_w1))}"
    assert isinstance(grad_w2, np.ndarray) and grad_w2.shape == (5, 2), \
        f"grad_w2 should be a NumPy array shaped like w2, [5, 2]; got {getattr(grad_w2, 'shape', type(grad_w2))}"


@pytest.mark.task("ch04.function")
@pytest.mark.points(1)
def test_myrelu_forward(impl):
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0])
    out = impl.MyReLU.apply(x)
    assert isinstance(out, torch.Tensor) and out.tolist() == [0.0, 0.0, 0.0, 0.5, 2.0], \
        f"MyReLU.apply([-2, -0.5, 0, 0.5, 2]) returned {out.tolist() if isinstance(out, torch.Tensor) else out}, " \
        "expected [0, 0, 0, 0.5, 2]"
