"""Chapter 11, public tests: shapes and basic behaviour."""
import pytest
import torch


@pytest.mark.task("ch11.inception")
@pytest.mark.points(2)
def test_inception_output_shape(impl):
    try:
        out = impl.InceptionA(3)(torch.randn(2, 3, 12, 12))
    except RuntimeError as exc:
        if "must match" in str(exc):
            raise AssertionError(f"InceptionA could not concatenate its branches ({str(exc).splitlines()[0]}): "
                                 "every branch must keep height and width, and the four outputs are "
                                 "concatenated along dim=1") from None
        raise
    assert out.shape[1] == 88, \
        f"InceptionA returned {out.shape[1]} channels, expected 88 = 16 + 24 + 24 + 24: " \
        "is every branch concatenated along dim=1?"
    assert out.shape == (2, 88, 12, 12), \
        f"InceptionA(3) maps [2, 3, 12, 12] to {list(out.shape)}, expected [2, 88, 12, 12]"


@pytest.mark.task("ch11.residual")
@pytest.mark.points(1)
def test_residual_block_keeps_the_shape(impl):
    out = impl.ResidualBlock(5)(torch.randn(2, 5, 6, 6))
    assert out.shape == (2, 5, 6, 6), f"ResidualBlock(5) maps [2, 5, 6, 6] to {list(out.shape)}, expected the same"


@pytest.mark.task("ch11.googlenet")
@pytest.mark.points(1)
def test_googlenet_output_shape(impl):
    out = impl.GoogLeNet()(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 10), f"GoogLeNet maps [2, 1, 28, 28] to {list(out.shape)}, expected [2, 10]"


@pytest.mark.task("ch11.resnet")
@pytest.mark.points(1)
def test_resnet_output_shape(impl):
    out = impl.ResNet()(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 10), f"ResNet maps [2, 1, 28, 28] to {list(out.shape)}, expected [2, 10]"
