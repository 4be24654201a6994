"""Chapter 11, hidden tests: the Inception and residual blocks, the two networks, and accuracy.

The network tests (GoogLeNet, ResNet) build the student's network with the lecture's own
InceptionA / ResidualBlock (in probes.py) patched into the module, so that their points
depend on the network's forward alone, not on the blocks (which have their own tests).
Expected values are computed here, from the weights (state_dict) of the student's objects.
"""
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grader.remote import is_instance
from grader.testing import assert_close, check_gradients

# name: (in_channels or None for the block's input, out_channels, kernel, padding)
INCEPTION_LAYERS = {
    "branch1x1": (None, 16, 1, 0),
    "branch5x5_1": (None, 16, 1, 0),
    "branch5x5_2": (16, 24, 5, 2),
    "branch3x3_1": (None, 16, 1, 0),
    "branch3x3_2": (16, 24, 3, 1),
    "branch3x3_3": (24, 24, 3, 1),
    "branch_pool": (None, 24, 1, 0),
}
BRANCH_ENDS = ("branch1x1", "branch5x5_2", "branch3x3_3", "branch_pool")
EPOCHS = 3  # of the accuracy test: Adam(lr=2e-3), the last epoch at lr=2e-4
EIGHTY_EIGHT = "expected 88 = 16 + 24 + 24 + 24: is every branch concatenated along dim=1?"


def _conv(w, name, x, padding=0):
    return F.conv2d(x, w[f"{name}.weight"], w[f"{name}.bias"], padding=padding)


def _inception_branches(w, x, pool=None, prefix=""):
    """The lecture's four branches, computed from an InceptionA's weights `w` (its state_dict;
    keys under `prefix` for a block inside a network)."""
    pool = pool or (lambda t: F.avg_pool2d(t, kernel_size=3, stride=1, padding=1))

    def conv(name, h):
        return _conv(w, prefix + name, h, INCEPTION_LAYERS[name][3])

    return [conv("branch1x1", x),
            conv("branch5x5_2", conv("branch5x5_1", x)),
            conv("branch3x3_3", conv("branch3x3_2", conv("branch3x3_1", x))),
            conv("branch_pool", pool(x))]


def _residual(w, x, prefix=""):
    """The lecture's residual block, computed from its weights `w`."""
    return F.relu(x + _conv(w, prefix + "conv2", F.relu(_conv(w, prefix + "conv1", x, 1)), 1))


# --------------------------------------------------------------------------- ch11.inception

@pytest.mark.task("ch11.inception")
@pytest.mark.points(3)
def test_inception_layers_as_in_the_lecture(impl):
    block = impl.InceptionA(7)
    for name, (c_in, c_out, k, p) in INCEPTION_LAYERS.items():
        layer = getattr(block, name, None)
        assert is_instance(layer, nn.Conv2d), \
            f"InceptionA(7) has no Conv2d named {name}: create the seven convolutions with the names in the TODO"
        c_in = 7 if c_in is None else c_in
        assert (layer.in_channels, layer.out_channels) == (c_in, c_out), \
            f"{name} maps {layer.in_channels} -> {layer.out_channels} channels, expected {c_in} -> {c_out}"
        assert layer.kernel_size == (k, k), f"{name} has kernel {layer.kernel_size}, expected {k}x{k}"
        if layer.padding != (p, p):
            raise AssertionError(f"{name} is a {k}x{k} conv with padding {layer.padding[0]}: use padding={p} so "
                                 f"that it keeps the height and width ({k} - 2 * {p} = 1)")
        assert layer.stride == (1, 1), f"{name} has stride {layer.stride}, expected 1"


@pytest.mark.task("ch11.inception")
@pytest.mark.points(4)
def test_inception_keeps_the_size_and_returns_88_channels(impl, probes):
    block = impl.InceptionA(7)
    x = torch.randn(2, 7, 12, 12)
    try:
        out = block(x)
    except RuntimeError as exc:
        text = str(exc).splitlines()[0]
        if "must match" not in text and "Expected size" not in text:
            raise
        # the shapes each layer saw, from forward hooks on the block's convolutions
        seen = probes.forward_shapes(block, x, list(INCEPTION_LAYERS))
        pool_in = seen.get("branch_pool", (None, None))[0]
        if pool_in is not None and tuple(pool_in[2:]) != (12, 12):
            raise AssertionError(f"the pool branch shrinks the 12x12 input to {pool_in[2]}x{pool_in[3]}: use "
                                 "F.avg_pool2d(x, kernel_size=3, stride=1, padding=1) (stride defaults to "
                                 "kernel_size)") from None
        for name in BRANCH_ENDS:
            if name in seen and seen[name][1] is not None and tuple(seen[name][1][2:]) != (12, 12):
                h, w = seen[name][1][2:]
                raise AssertionError(f"branch {name} turns the 12x12 input into {h}x{w}: every branch must keep "
                                     "the height and width (padding=2 for the 5x5 conv, 1 for the 3x3)") from None
        raise AssertionError(f"InceptionA could not concatenate its branches ({text}); {EIGHTY_EIGHT}") from None
    assert out.dim() == 4 and out.shape[0] == 2, \
        f"InceptionA returned shape {list(out.shape)} for a batch of 2; {EIGHTY_EIGHT}"
    assert out.shape[1] == 88, f"InceptionA returned {out.shape[1]} channels, {EIGHTY_EIGHT}"
    assert tuple(out.shape[2:]) == (12, 12), \
        f"InceptionA turned 12x12 into {out.shape[2]}x{out.shape[3]}: every branch must keep height and width"
    out = impl.InceptionA(20)(torch.randn(1, 20, 4, 4))
    assert out.shape == (1, 88, 4, 4), \
        f"InceptionA(20) maps [1, 20, 4, 4] to {list(out.shape)}, expected [1, 88, 4, 4]"


@pytest.mark.task("ch11.inception")
@pytest.mark.points(3)
def test_inception_values(impl):
    block = impl.InceptionA(5)
    x = torch.randn(2, 5, 8, 8)
    got = block(x)
    w = block.state_dict()
    parts = _inception_branches(w, x)
    want = torch.cat(parts, dim=1)
    if got.shape == want.shape and not torch.allclose(got, want, atol=1e-5):
        for order in itertools.permutations(range(4)):
            if torch.allclose(got, torch.cat([parts[i] for i in order], dim=1), atol=1e-5):
                raise AssertionError("the branches are concatenated in another order than the lecture's: "
                                     "[branch1x1, branch5x5, branch3x3, branch_pool]")
        maxed = torch.cat(_inception_branches(w, x, lambda t: F.max_pool2d(t, 3, 1, 1)), dim=1)
        if torch.allclose(got, maxed, atol=1e-5):
            raise AssertionError("the pool branch uses max pooling; the lecture's uses average pooling "
                                 "(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))")
        if torch.allclose(got[:, :64], want[:, :64], atol=1e-5) and \
                torch.allclose(got[:, 64:], _conv(w, "branch_pool", x), atol=1e-5):
            raise AssertionError("the pool branch skips the pooling: average-pool x first, then branch_pool")
    assert_close(got.detach(), want, "InceptionA's output", atol=1e-5,
                 hint="each branch's convolutions in turn, no activations inside the block")


@pytest.mark.task("ch11.inception")
@pytest.mark.points(3)
def test_every_inception_branch_gets_a_gradient(impl, probes):
    block = impl.InceptionA(4)
    probes.backward(block, torch.randn(2, 4, 6, 6), power=2)  # block(x).pow(2).sum().backward()
    for name in INCEPTION_LAYERS:
        weight = getattr(block, name).weight
        assert weight.grad is not None and weight.grad.abs().sum() > 0, \
            f"no gradient reached {name}.weight: its branch never reaches InceptionA's output " \
            "(is its result in the torch.cat list?)"


# --------------------------------------------------------------------------- ch11.residual

@pytest.mark.task("ch11.residual")
@pytest.mark.points(3)
def test_residual_block_values(impl):
    block = impl.ResidualBlock(3)
    x = torch.randn(2, 3, 5, 5)
    got = block(x)
    w = block.state_dict()
    y1 = _conv(w, "conv1", x, 1)

    def conv2(h):
        return _conv(w, "conv2", h, 1)

    want = F.relu(x + conv2(F.relu(y1)))
    for wrong, mistake in [
        (F.relu(conv2(F.relu(y1))), "the skip connection is missing: add the input x before the last ReLU"),
        (x + F.relu(conv2(F.relu(y1))), "x is added after the last ReLU; add first: relu(x + y)"),
        (F.relu(x + F.relu(conv2(F.relu(y1)))),
         "conv2's output goes through a ReLU before the addition; only relu(x + y) comes after it"),
        (F.relu(x + conv2(y1)), "the ReLU between conv1 and conv2 is missing"),
    ]:
        if got.shape == want.shape and not torch.allclose(got, want, atol=1e-5) and \
                torch.allclose(got, wrong, atol=1e-5):
            raise AssertionError(f"ResidualBlock: {mistake}")
    assert_close(got.detach(), want, "ResidualBlock's output", atol=1e-5,
                 hint="relu(x + conv2(relu(conv1(x))))")


@pytest.mark.task("ch11.residual")
@pytest.mark.points(2)
def test_residual_block_with_zero_convolutions_is_relu(impl):
    block = impl.ResidualBlock(4)
    block.load_state_dict({k: torch.zeros_like(v) for k, v in block.state_dict().items()})
    x = torch.randn(2, 4, 3, 3)
    got = block(x).detach()
    if torch.allclose(got, torch.zeros_like(got)):
        raise AssertionError("with both convolutions zeroed the block returns zeros, expected relu(x): the skip "
                             "connection (adding x) is missing")
    assert_close(got, F.relu(x), "ResidualBlock with zeroed convolutions (should be relu(x))",
                 hint="return relu(x + y): the input is added back")


@pytest.mark.task("ch11.residual")
@pytest.mark.points(2)
def test_residual_block_gradients(impl, probes):
    block = impl.ResidualBlock(2).double().requires_grad_(False)  # only the input's gradient is checked
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64)
    grad = probes.input_gradient(block, x, power=2)  # autograd's, of block(x).pow(2).sum()
    if grad is None:
        raise AssertionError("the result does not depend on the inputs through autograd "
                             "(was the graph cut with .item(), .detach() or .data?)")
    check_gradients(lambda t: block(t).pow(2).sum(), [x], analytic=[grad], names=["the block's input"],
                    hint="keep every operation in the graph (no .detach(), .data or in-place edits of x)")


# --------------------------------------------------------------------------- ch11.googlenet

def _googlenet_reference(w, x, relu=True):
    act = F.relu if relu else (lambda t: t)
    h = act(F.max_pool2d(_conv(w, "conv1", x), 2))
    h = torch.cat(_inception_branches(w, h, prefix="incep1."), dim=1)
    h = act(F.max_pool2d(_conv(w, "conv2", h), 2))
    h = torch.cat(_inception_branches(w, h, prefix="incep2."), dim=1)
    return F.linear(h.reshape(x.size(0), -1), w["fc.weight"], w["fc.bias"])


def _explain_fc_error(exc, name, features):
    if "shapes cannot be multiplied" in str(exc):
        return AssertionError(f"{name}'s fc did not get {features} features per sample: follow the lecture's "
                              "order of layers and flatten with x.view(batch_size, -1) at the end")
    return exc


@pytest.mark.task("ch11.googlenet")
@pytest.mark.points(3)
def test_googlenet_matches_the_lecture(probes):
    x = torch.randn(3, 1, 28, 28)
    try:  # GoogLeNet() built with the lecture's InceptionA
        run = probes.network_forward("GoogLeNet", x, ["incep1", "incep2"])
    except RuntimeError as exc:
        raise _explain_fc_error(exc, "GoogLeNet", 1408) from None
    got, calls, w = run["out"], run["calls"], run["state"]
    assert calls == ["incep1", "incep2"], \
        f"GoogLeNet's forward ran the Inception blocks {calls}, expected incep1 then incep2, once each"
    assert got.shape == (3, 10), f"GoogLeNet maps [3, 1, 28, 28] to {list(got.shape)}, expected [3, 10]"
    hint = None
    if torch.allclose(got, _googlenet_reference(w, x, relu=False), atol=1e-5):
        hint = "the ReLUs are missing: relu after each conv + max-pool"
    assert_close(got.detach(), _googlenet_reference(w, x), "GoogLeNet's logits", atol=1e-4, hint=hint)


@pytest.mark.task("ch11.googlenet")
@pytest.mark.points(1)
def test_googlenet_gradients_reach_every_layer(probes):
    # GoogLeNet() built with the lecture's InceptionA; net(x).pow(2).sum().backward()
    for name, grad in probes.network_gradients("GoogLeNet", torch.randn(2, 1, 28, 28), power=2):
        assert grad is not None and grad.abs().sum() > 0, \
            f"no gradient reached {name}: forward must use every layer (and not detach)"


# --------------------------------------------------------------------------- ch11.resnet

def _resnet_reference(w, x):
    h = F.max_pool2d(F.relu(_conv(w, "conv1", x)), 2)
    h = _residual(w, h, prefix="rblock1.")
    h = F.max_pool2d(F.relu(_conv(w, "conv2", h)), 2)
    h = _residual(w, h, prefix="rblock2.")
    return F.linear(h.reshape(x.size(0), -1), w["fc.weight"], w["fc.bias"])


@pytest.mark.task("ch11.resnet")
@pytest.mark.points(3)
def test_resnet_matches_the_lecture(probes):
    x = torch.randn(3, 1, 28, 28)
    try:  # ResNet() built with the lecture's ResidualBlock
        run = probes.network_forward("ResNet", x, ["rblock1", "rblock2"])
    except RuntimeError as exc:
        raise _explain_fc_error(exc, "ResNet", 512) from None
    got, calls, w = run["out"], run["calls"], run["state"]
    assert calls == ["rblock1", "rblock2"], \
        f"ResNet's forward ran the residual blocks {calls}, expected rblock1 then rblock2, once each"
    assert got.shape == (3, 10), f"ResNet maps [3, 1, 28, 28] to {list(got.shape)}, expected [3, 10]"
    assert_close(got.detach(), _resnet_reference(w, x), "ResNet's logits", atol=1e-4,
                 hint="mp(relu(conv1)), rblock1, mp(relu(conv2)), rblock2, flatten, fc")


def _mnist(datasets_dir, split):
    with np.load(datasets_dir / "mnist_subset.npz") as data:
        x = torch.from_numpy(data[f"{split}_images"]).float().div(255)
        y = torch.from_numpy(data[f"{split}_labels"]).long()
    return ((x - 0.1307) / 0.3081).unsqueeze(1), y


@pytest.mark.task("ch11.resnet")
@pytest.mark.points(3)
def test_resnet_learns_the_mnist_subset(probes, student, datasets_dir):
    x_train, y_train = _mnist(datasets_dir, "train")
    x_test, y_test = _mnist(datasets_dir, "test")
    student.seed(0)  # the new ResNet's initial weights
    # ResNet() built with the lecture's ResidualBlock, trained with Adam(lr=2e-3), a tenth of the
    # step size for the last epoch (it settles the weights)
    logits = probes.train_and_predict("ResNet", x_train, y_train, x_test, epochs=EPOCHS, batch_size=64,
                                      lr=2e-3, last_epoch_lr_factor=0.1, order_seed=0)
    accuracy = (logits.argmax(dim=1) == y_test).float().mean().item()
    assert accuracy >= 0.95, \
        f"ResNet reached {accuracy:.3f} test accuracy after {EPOCHS} epochs on the MNIST subset, expected at " \
        "least 0.95: check forward (the ReLUs, the order of the layers)"
