"""Chapter 11, public tests: the Inception and residual blocks, the two networks, and learning.

These tests check the same properties as the grading tests, on small fixed inputs; the
grading tests check them again on other sizes, batches and seeds, and hold the accuracy of
a longer training run. Expected values are computed here, from the weights (state_dict) of
your objects.

The network tests (GoogLeNet, ResNet) build your network with the lecture's own InceptionA
and ResidualBlock (in probes.py) in place of yours, so that their points depend on the
network's forward alone, not on your blocks (which have their own tests).
"""
import itertools
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grader.remote import is_instance, type_name
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
EIGHTY_EIGHT = "expected 88 = 16 + 24 + 24 + 24: is every branch concatenated along dim=1?"


def _conv(w, name, x, padding=0):
    return F.conv2d(x, w[f"{name}.weight"], w[f"{name}.bias"], padding=padding)


def inception_branches(w, x, pool=None, prefix=""):
    """The lecture's four branches, computed from an InceptionA's weights `w` (its state_dict;
    keys under `prefix` for a block inside a network)."""
    pool = pool or (lambda t: F.avg_pool2d(t, kernel_size=3, stride=1, padding=1))

    def conv(name, h):
        return _conv(w, prefix + name, h, INCEPTION_LAYERS[name][3])

    return [conv("branch1x1", x),
            conv("branch5x5_2", conv("branch5x5_1", x)),
            conv("branch3x3_3", conv("branch3x3_2", conv("branch3x3_1", x))),
            conv("branch_pool", pool(x))]


def residual(w, x, prefix=""):
    """The lecture's residual block, computed from its weights `w`."""
    return F.relu(x + _conv(w, prefix + "conv2", F.relu(_conv(w, prefix + "conv1", x, 1)), 1))


# --------------------------------------------------------------------------- ch11.inception

def check_inception_layers(impl, in_channels):
    block = impl.InceptionA(in_channels)
    for name, (c_in, c_out, k, p) in INCEPTION_LAYERS.items():
        layer = getattr(block, name, None)
        assert is_instance(layer, nn.Conv2d), \
            f"InceptionA({in_channels}) has no Conv2d named {name}: create the seven convolutions with the " \
            "names in the TODO (the tests find them by name)"
        c_in = in_channels if c_in is None else c_in
        assert (layer.in_channels, layer.out_channels) == (c_in, c_out), \
            f"{name} maps {layer.in_channels} -> {layer.out_channels} channels, expected {c_in} -> {c_out}"
        assert layer.kernel_size == (k, k), f"{name} has kernel {layer.kernel_size}, expected {k}x{k}"
        if layer.padding not in ((p, p), "same"):  # padding="same" keeps the size too
            given = layer.padding if isinstance(layer.padding, str) else layer.padding[0]
            raise AssertionError(f"{name} is a {k}x{k} conv with padding {given!r}: use padding={p} so "
                                 f"that it keeps the height and width ({k} - 2 * {p} = 1)")
        assert layer.stride == (1, 1), f"{name} has stride {layer.stride}, expected 1"


def check_inception_shape(impl, probes, in_channels, shape):
    """InceptionA(in_channels) on a [B, in_channels, H, W] input gives [B, 88, H, W]; when the
    branches cannot be concatenated, the branch that changed the size is named."""
    batch, height, width = shape
    block = impl.InceptionA(in_channels)
    x = torch.randn(batch, in_channels, height, width)
    try:
        out = block(x)
    except RuntimeError as exc:
        text = str(exc).splitlines()[0]
        if "must match" not in text and "Expected size" not in text:
            raise
        # the shapes each layer saw, from forward hooks on the block's convolutions
        seen = probes.forward_shapes(block, x, list(INCEPTION_LAYERS))
        pool_in = seen.get("branch_pool", (None, None))[0]
        if pool_in is not None and tuple(pool_in[2:]) != (height, width):
            raise AssertionError(f"the pool branch shrinks the {height}x{width} input to {pool_in[2]}x{pool_in[3]}: "
                                 "average-pool with kernel_size=3, stride=1, padding=1 (stride defaults to "
                                 "kernel_size)") from None
        for name in BRANCH_ENDS:
            if name in seen and seen[name][1] is not None and tuple(seen[name][1][2:]) != (height, width):
                h, w = seen[name][1][2:]
                raise AssertionError(f"branch {name} turns the {height}x{width} input into {h}x{w}: every branch "
                                     "must keep the height and width (padding=2 for the 5x5 conv, 1 for the "
                                     "3x3)") from None
        raise AssertionError(f"InceptionA could not concatenate its branches ({text}); {EIGHTY_EIGHT}") from None
    assert isinstance(out, torch.Tensor), f"InceptionA returned {type_name(out)}, expected a Tensor"
    assert out.dim() == 4 and out.shape[0] == batch, \
        f"InceptionA returned shape {list(out.shape)} for a batch of {batch}; {EIGHTY_EIGHT}"
    assert out.shape[1] == 88, f"InceptionA returned {out.shape[1]} channels, {EIGHTY_EIGHT}"
    assert tuple(out.shape[2:]) == (height, width), \
        f"InceptionA turned {height}x{width} into {out.shape[2]}x{out.shape[3]}: every branch must keep " \
        "height and width"


def check_inception_values(impl, in_channels, shape):
    block = impl.InceptionA(in_channels)
    x = torch.randn(shape[0], in_channels, *shape[1:])
    got = block(x).detach()
    w = block.state_dict()
    parts = inception_branches(w, x)
    want = torch.cat(parts, dim=1)
    if got.shape == want.shape and not torch.allclose(got, want, atol=1e-5):
        for order in itertools.permutations(range(4)):
            if torch.allclose(got, torch.cat([parts[i] for i in order], dim=1), atol=1e-5):
                raise AssertionError("the branches are concatenated in another order than the lecture's: "
                                     "[branch1x1, branch5x5, branch3x3, branch_pool]")
        maxed = torch.cat(inception_branches(w, x, lambda t: F.max_pool2d(t, 3, 1, 1)), dim=1)
        if torch.allclose(got, maxed, atol=1e-5):
            raise AssertionError("the pool branch uses max pooling; the lecture's uses average pooling "
                                 "(F.avg_pool2d with kernel_size=3, stride=1, padding=1)")
        if torch.allclose(got[:, :64], want[:, :64], atol=1e-5) and \
                torch.allclose(got[:, 64:], _conv(w, "branch_pool", x), atol=1e-5):
            raise AssertionError("the pool branch skips the pooling: average-pool x first, then branch_pool")
    assert_close(got, want, "InceptionA's output",
                 hint="each branch's convolutions in turn, no activations inside the block")


def check_inception_gradients(impl, probes, in_channels, shape):
    block = impl.InceptionA(in_channels)
    x = torch.randn(shape[0], in_channels, *shape[1:])
    probes.backward(block, x, power=2)  # block(x).pow(2).sum().backward() beside your code
    for name in INCEPTION_LAYERS:
        weight = getattr(block, name).weight
        assert weight.grad is not None and weight.grad.abs().sum() > 0, \
            f"no gradient reached {name}.weight: its branch never reaches InceptionA's output " \
            "(is its result in the torch.cat list?)"


@pytest.mark.task("ch11.inception")
@pytest.mark.points(3)
def test_inception_output_shape(impl, probes):
    check_inception_shape(impl, probes, 3, (2, 12, 12))
    check_inception_shape(impl, probes, 20, (1, 4, 4))


@pytest.mark.task("ch11.inception")
@pytest.mark.points(2)
def test_inception_layers_as_in_the_lecture(impl):
    check_inception_layers(impl, 7)


@pytest.mark.task("ch11.inception")
@pytest.mark.points(3)
def test_inception_values(impl):
    check_inception_values(impl, 5, (2, 8, 8))


@pytest.mark.task("ch11.inception")
@pytest.mark.points(2)
def test_every_inception_branch_gets_a_gradient(impl, probes):
    check_inception_gradients(impl, probes, 4, (2, 6, 6))


# --------------------------------------------------------------------------- ch11.residual

def check_residual_values(impl, channels, shape):
    block = impl.ResidualBlock(channels)
    x = torch.randn(shape[0], channels, *shape[1:])
    got = block(x).detach()
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
        (x + conv2(F.relu(y1)), "the last ReLU is missing: return relu(x + y)"),
    ]:
        if got.shape == want.shape and not torch.allclose(got, want, atol=1e-5) and \
                torch.allclose(got, wrong, atol=1e-5):
            raise AssertionError(f"ResidualBlock: {mistake}")
    assert_close(got, want, "ResidualBlock's output", hint="relu(x + conv2(relu(conv1(x))))")


def check_residual_zero_convolutions(impl, channels, shape):
    block = impl.ResidualBlock(channels)
    block.load_state_dict({k: torch.zeros_like(v) for k, v in block.state_dict().items()})
    x = torch.randn(shape[0], channels, *shape[1:])
    got = block(x).detach()
    if torch.allclose(got, torch.zeros_like(got)):
        raise AssertionError("with both convolutions zeroed the block returns zeros, expected relu(x): the skip "
                             "connection is missing (add x)")
    assert_close(got, F.relu(x), "ResidualBlock with zeroed convolutions (should be relu(x))",
                 hint="return relu(x + y): the input is added back")


def check_residual_gradients(impl, probes, channels, shape):
    block = impl.ResidualBlock(channels).double().requires_grad_(False)  # only the input's gradient is checked
    x = torch.randn(shape[0], channels, *shape[1:], dtype=torch.float64)
    grad = probes.input_gradient(block, x, power=2)  # autograd's, of block(x).pow(2).sum()
    if grad is None:
        raise AssertionError("the result does not depend on the inputs through autograd "
                             "(was the graph cut with .item(), .detach() or .data?)")
    check_gradients(lambda t: block(t).pow(2).sum(), [x], analytic=[grad], names=["the block's input"],
                    hint="keep every operation in the graph (no .detach(), .data or in-place edits of x)")


@pytest.mark.task("ch11.residual")
@pytest.mark.points(1)
def test_residual_block_keeps_the_shape(impl):
    out = impl.ResidualBlock(5)(torch.randn(2, 5, 6, 6))
    assert out.shape == (2, 5, 6, 6), f"ResidualBlock(5) maps [2, 5, 6, 6] to {list(out.shape)}, expected the same"


@pytest.mark.task("ch11.residual")
@pytest.mark.points(2)
def test_residual_block_values(impl):
    check_residual_values(impl, 3, (2, 5, 5))


@pytest.mark.task("ch11.residual")
@pytest.mark.points(1)
def test_residual_block_with_zero_convolutions_is_relu(impl):
    check_residual_zero_convolutions(impl, 4, (2, 3, 3))


@pytest.mark.task("ch11.residual")
@pytest.mark.points(1)
def test_residual_block_gradients(impl, probes):
    check_residual_gradients(impl, probes, 2, (1, 3, 3))


# --------------------------------------------------------------------------- the networks

def googlenet_reference(w, x, relu=True):
    act = F.relu if relu else (lambda t: t)
    h = act(F.max_pool2d(_conv(w, "conv1", x), 2))
    h = torch.cat(inception_branches(w, h, prefix="incep1."), dim=1)
    h = act(F.max_pool2d(_conv(w, "conv2", h), 2))
    h = torch.cat(inception_branches(w, h, prefix="incep2."), dim=1)
    return F.linear(h.reshape(x.size(0), -1), w["fc.weight"], w["fc.bias"])


def resnet_reference(w, x, relu=True):
    act = F.relu if relu else (lambda t: t)
    h = F.max_pool2d(act(_conv(w, "conv1", x)), 2)
    h = residual(w, h, prefix="rblock1.")
    h = F.max_pool2d(act(_conv(w, "conv2", h)), 2)
    h = residual(w, h, prefix="rblock2.")
    return F.linear(h.reshape(x.size(0), -1), w["fc.weight"], w["fc.bias"])


# class name: (its blocks, features before fc, the reference forward, the order of the layers)
NETWORKS = {
    "GoogLeNet": (["incep1", "incep2"], 1408, googlenet_reference,
                  "conv1, max-pool, ReLU, incep1, conv2, max-pool, ReLU, incep2, flatten, fc"),
    "ResNet": (["rblock1", "rblock2"], 512, resnet_reference,
               "conv1, ReLU, max-pool, rblock1, conv2, ReLU, max-pool, rblock2, flatten, fc"),
}


def network_run(probes, name, x, net=None):
    """The student's network (built with the lecture's blocks) on x: its output, the order its
    blocks ran in and its weights, with the lecture's words for a forward that cannot reach fc."""
    blocks, features, _, order = NETWORKS[name]
    net = net if net is not None else probes.network(name)  # with the lecture's InceptionA / ResidualBlock
    try:
        run = probes.network_forward(net, x, blocks)
    except RuntimeError as exc:
        text = str(exc).splitlines()[0]
        if "shapes cannot be multiplied" in text:
            raise AssertionError(f"{name}'s fc did not get {features} features per sample: follow the lecture's "
                                 f"order of layers ({order})") from None
        if "is invalid for input of size" in text:
            raise AssertionError(f"{name} failed on a batch of {x.size(0)} ({text}): flatten with the input's own "
                                 "batch size, x.view(x.size(0), -1), never a fixed number") from None
        raise
    out = run["out"]
    assert isinstance(out, torch.Tensor), f"{name} returned {type_name(out)}, expected a Tensor"
    assert run["calls"] == blocks, \
        f"{name}'s forward ran the blocks {run['calls']}, expected {blocks[0]} then {blocks[1]}, once each"
    assert out.shape == (x.size(0), 10), f"{name} maps {list(x.shape)} to {list(out.shape)}, expected [{x.size(0)}, 10]"
    return out.detach(), run["state"]


def check_network_logits(probes, name, x):
    _, _, reference, order = NETWORKS[name]
    got, w = network_run(probes, name, x)
    if torch.allclose(got, reference(w, x, relu=False), atol=1e-5):
        raise AssertionError(f"{name}: the ReLUs are missing: apply relu to each conv + max-pool stage ({order})")
    assert_close(got, reference(w, x), f"{name}'s logits", hint=order)


def check_network_gradients(probes, name, x):
    net = probes.network(name)  # with the lecture's InceptionA / ResidualBlock
    network_run(probes, name, x, net)
    for parameter, grad in probes.network_gradients(net, x, power=2):  # net(x).pow(2).sum().backward()
        assert grad is not None and grad.abs().sum() > 0, \
            f"no gradient reached {name}'s {parameter}: forward must use every layer (and not detach)"


def fresh_weights(state, seed):
    """New weights for a network's state_dict, drawn here as PyTorch's default initialisation
    does (uniform in +-1/sqrt(fan_in)), one generator per layer named by its key: the same
    starting point whatever the order in which the layers were created."""
    new = dict(state)
    for key, value in state.items():
        if key.endswith("weight") and value.dim() > 1:
            generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(key.encode()))
            bound = 1.0 / float(np.prod(value.shape[1:])) ** 0.5
            new[key] = (torch.rand(value.shape, generator=generator) * 2 - 1) * bound
            bias = key[:-len("weight")] + "bias"
            if bias in state:
                new[bias] = (torch.rand(state[bias].shape, generator=generator) * 2 - 1) * bound
    return new


def mnist(datasets_dir, split):
    with np.load(datasets_dir / "mnist_subset.npz") as data:
        x = torch.from_numpy(data[f"{split}_images"]).float().div(255)
        y = torch.from_numpy(data[f"{split}_labels"]).long()
    return ((x - 0.1307) / 0.3081).unsqueeze(1), y


def resnet_accuracy(probes, datasets_dir, n_train, n_test, epochs, batch_size, last_epoch_lr_factor, seed):
    """ResNet (with the lecture's ResidualBlock), started from weights drawn here, trained with
    Adam(lr=2e-3), the step size multiplied by `last_epoch_lr_factor` for the last epoch, on
    the first n_train training digits; its accuracy on the first n_test test digits."""
    x_train, y_train = mnist(datasets_dir, "train")
    x_test, y_test = mnist(datasets_dir, "test")
    net = probes.network("ResNet")
    network_run(probes, "ResNet", x_test[:2], net)  # it runs, as the lecture's
    net.load_state_dict(fresh_weights(net.state_dict(), seed))
    logits = probes.train_and_predict(net, x_train[:n_train], y_train[:n_train], x_test[:n_test], epochs=epochs,
                                      batch_size=batch_size, lr=2e-3, last_epoch_lr_factor=last_epoch_lr_factor,
                                      order_seed=seed)
    return (logits.argmax(dim=1) == y_test[:n_test]).float().mean().item()


@pytest.mark.task("ch11.googlenet")
@pytest.mark.points(1)
def test_googlenet_output_shape(probes):
    network_run(probes, "GoogLeNet", torch.randn(3, 1, 28, 28))


@pytest.mark.task("ch11.googlenet")
@pytest.mark.points(2)
def test_googlenet_matches_the_lecture(probes):
    check_network_logits(probes, "GoogLeNet", torch.randn(3, 1, 28, 28))


@pytest.mark.task("ch11.googlenet")
@pytest.mark.points(1)
def test_googlenet_gradients_reach_every_layer(probes):
    check_network_gradients(probes, "GoogLeNet", torch.randn(3, 1, 28, 28))


@pytest.mark.task("ch11.resnet")
@pytest.mark.points(1)
def test_resnet_output_shape(probes):
    network_run(probes, "ResNet", torch.randn(3, 1, 28, 28))


@pytest.mark.task("ch11.resnet")
@pytest.mark.points(2)
def test_resnet_matches_the_lecture(probes):
    check_network_logits(probes, "ResNet", torch.randn(3, 1, 28, 28))


@pytest.mark.task("ch11.resnet")
@pytest.mark.points(1)
def test_resnet_learns_a_thousand_digits(probes, datasets_dir):
    accuracy = resnet_accuracy(probes, datasets_dir, n_train=1000, n_test=500, epochs=1, batch_size=32,
                               last_epoch_lr_factor=1.0, seed=0)
    assert accuracy >= 0.80, \
        f"ResNet reached {accuracy:.3f} test accuracy after one epoch on 1,000 digits, expected at least 0.80: " \
        "check forward (the ReLUs, the order of the layers)"
