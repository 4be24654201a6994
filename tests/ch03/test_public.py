"""Chapter 03, public tests: the lecture's numbers and return types."""
import pytest

X, Y = [1.0, 2.0, 3.0], [2.0, 4.0, 6.0]


@pytest.mark.task("ch03.cost")
@pytest.mark.points(1)
def test_cost_lecture_data(impl):
    c = impl.cost(X, Y, 1.0)
    assert isinstance(c, float), f"cost returned {type(c).__name__}, expected a Python float"
    assert abs(c - 14 / 3) < 1e-6, f"cost(x, y, w=1) returned {c}, expected (1 + 4 + 9) / 3 = 4.6667"


@pytest.mark.task("ch03.gradient")
@pytest.mark.points(1)
def test_gradient_lecture_data(impl):
    g = impl.gradient(X, Y, 1.0)
    assert isinstance(g, float), f"gradient returned {type(g).__name__}, expected a Python float"
    assert abs(g - (-28 / 3)) < 1e-6, \
        f"gradient(x, y, w=1) returned {g}, expected (2*1*(-1) + 2*2*(-2) + 2*3*(-3)) / 3 = -9.3333"


@pytest.mark.task("ch03.gd")
@pytest.mark.points(1)
def test_gradient_descent_returns_w_and_costs(impl):
    out = impl.gradient_descent(X, Y, epochs=5)
    assert isinstance(out, tuple) and len(out) == 2, "gradient_descent should return a pair (w, costs)"
    w, costs = out
    assert isinstance(w, float), f"the final w is {type(w).__name__}, expected a Python float"
    assert isinstance(costs, list) and len(costs) == 5 and all(isinstance(c, float) for c in costs), \
        "gradient_descent(epochs=5) should return a list of 5 float costs, one per epoch"
    assert abs(costs[0] - 14 / 3) < 1e-6, \
        f"the first cost is {costs[0]}, expected 4.6667: the cost at the starting w = 1.0, recorded before " \
        "the first update"


@pytest.mark.task("ch03.sgd")
@pytest.mark.points(1)
def test_sgd_returns_w_and_losses(impl):
    out = impl.sgd(X, Y, epochs=4)
    assert isinstance(out, tuple) and len(out) == 2, "sgd should return a pair (w, losses)"
    w, losses = out
    assert isinstance(w, float), f"the final w is {type(w).__name__}, expected a Python float"
    assert isinstance(losses, list) and len(losses) == 4 and all(isinstance(v, float) for v in losses), \
        "sgd(epochs=4) should return a list of 4 float losses, one per epoch"
