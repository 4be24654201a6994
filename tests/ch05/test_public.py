"""Chapter 05, public tests: shapes and basic behaviour."""
import pytest
import torch


@pytest.mark.task("ch05.forward")
@pytest.mark.points(2)
def test_forward_shape(impl):
    model = impl.LinearModel()
    out = model(torch.ones(5, 1))
    assert isinstance(out, torch.Tensor), f"forward returned {type(out).__name__}, expected a Tensor"
    assert out.shape == (5, 1), f"forward returned shape {list(out.shape)} for input [5, 1], expected [5, 1]"


@pytest.mark.task("ch05.train")
@pytest.mark.points(2)
def test_train_returns_one_float_per_epoch(impl):
    model = impl.LinearModel()
    losses = impl.train(model, impl.X_DATA, impl.Y_DATA, epochs=7)
    assert isinstance(losses, list) and len(losses) == 7, \
        f"train(epochs=7) should return a list of 7 losses, got {type(losses).__name__} of length " \
        f"{len(losses) if hasattr(losses, '__len__') else '?'}"
    assert all(isinstance(v, float) for v in losses), \
        "train should return Python floats: append loss.item(), not the loss tensor " \
        "(keeping tensors keeps every epoch's graph alive)"


@pytest.mark.task("ch05.two_layer")
@pytest.mark.points(1)
def test_two_layer_shape(impl):
    net = impl.TwoLayerNet(4, 8, 3)
    assert net(torch.randn(6, 4)).shape == (6, 3), "TwoLayerNet(4, 8, 3) should map [6, 4] to [6, 3]"


@pytest.mark.task("ch05.dynamic")
@pytest.mark.points(1)
def test_dynamic_shape(impl):
    net = impl.DynamicNet(4, 8, 3)
    for depth in (0, 2, None):
        out = net(torch.randn(6, 4), depth=depth)
        assert out.shape == (6, 3), f"DynamicNet(4, 8, 3) with depth={depth} should map [6, 4] to [6, 3]"
