"""Chapter 05, public tests: the lecture's data and published examples.

The hidden tests check the same properties on held-out inputs, sizes, seeds and optimizers.
train() is tested on the lecture's own model (a plain nn.Linear(1, 1), see probes.py), so
its tests do not depend on your LinearModel.forward.
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grader.remote import is_instance, type_name
from grader.testing import assert_close, length_of as _length, load_line, reference, reference_losses

X_LECTURE = torch.tensor([[1.0], [2.0], [3.0]])
Y_LECTURE = torch.tensor([[2.0], [4.0], [6.0]])


# --------------------------------------------------------------------------- ch05.forward

def _load_line(model, weight, bias):
    load_line(model, weight, bias, "LinearModel")


def _check_forward(model, x, weight, bias, what):
    out = model(x)
    n = x.shape[0]
    assert isinstance(out, torch.Tensor), f"forward returned {type_name(out)}, expected a Tensor"
    assert out.shape == (n, 1), \
        f"forward returned shape {list(out.shape)} for input [{n}, 1], expected [{n}, 1]: keep the output 2-D, " \
        "as self.linear returns it (no squeeze, flatten or view(-1))"
    want = weight * x + bias
    hint = None
    if torch.allclose(out, weight * x, atol=1e-6):
        hint = "the bias is missing: use self.linear(x), which adds it"
    assert_close(out, want, f"LinearModel.forward(x) {what}", hint=hint)
    assert out.requires_grad, "forward's output does not require grad: do not detach or use .data/.item()"


@pytest.mark.task("ch05.forward")
@pytest.mark.points(1)
def test_forward_shape(impl):
    model = impl.LinearModel()
    out = model(torch.ones(5, 1))
    assert isinstance(out, torch.Tensor), f"forward returned {type_name(out)}, expected a Tensor"
    assert out.shape == (5, 1), \
        f"forward returned shape {list(out.shape)} for input [5, 1], expected [5, 1]: keep the output 2-D, " \
        "as self.linear returns it (no squeeze, flatten or view(-1))"


@pytest.mark.task("ch05.forward")
@pytest.mark.points(1)
def test_forward_published_example(impl):
    model = impl.LinearModel()
    _load_line(model, 3.0, -1.5)
    _check_forward(model, torch.tensor([[0.0], [1.0], [2.5]]), 3.0, -1.5, "with weight 3 and bias -1.5")


# --------------------------------------------------------------------------- ch05.train

def _start(seed):
    """The weights of nn.Linear(1, 1) after manual_seed(seed)."""
    torch.manual_seed(seed)
    return nn.Linear(1, 1).state_dict()


@reference
def _reference(start, x, y, epochs, lr, **mistake):
    model = nn.Linear(1, 1)
    model.load_state_dict(start)
    criterion = nn.MSELoss(reduction=mistake.pop("reduction", "sum"))
    return reference_losses(model, criterion, x, y, epochs, lr, **mistake), model.state_dict()


def _as_losses(values, epochs):
    assert isinstance(values, list) and len(values) == epochs, \
        f"train(epochs={epochs}) should return a list of {epochs} losses, got {type_name(values)} of length " \
        f"{_length(values)}"
    return torch.tensor([float(v) for v in values])


def _check_losses(got, start, x, y, epochs, lr, what):
    """got: the student's losses; name the known mistake they follow, else compare."""
    want, _ = _reference(start, x, y, epochs, lr)
    want = torch.tensor(want)
    if not torch.allclose(got, want, rtol=1e-4):
        for mistake, text in [
            (dict(zero_grad=False), "the gradients pile up: call optimizer.zero_grad() every epoch, "
                                    "before loss.backward()"),
            (dict(reduction="mean"), "the loss is the mean, not the sum: use nn.MSELoss(reduction='sum')"),
            (dict(record_after=True), "you record the loss after optimizer.step(): "
                                      "keep the loss computed before the update"),
        ]:
            wrong, _ = _reference(start, x, y, epochs, lr, **mistake)
            if torch.allclose(got, torch.tensor(wrong), rtol=1e-4):
                raise AssertionError(f"train's losses follow a known mistake: {text}")
        if torch.allclose(got, torch.full_like(got, got[0].item())):
            raise AssertionError("the loss never changes: call optimizer.step() after loss.backward(), "
                                 "with an optimizer built on model.parameters()")
    assert_close(got, want, f"the loss of each epoch {what}", rtol=1e-4,
                 hint="one full-batch update per epoch, recording each loss before its update: "
                      "see the training cycle of lecture 05")


@pytest.mark.task("ch05.train")
@pytest.mark.points(1)
def test_train_returns_one_float_per_epoch(probes):
    losses, _ = probes.train_lecture_model(_start(0), X_LECTURE, Y_LECTURE, epochs=7)
    assert isinstance(losses, list) and len(losses) == 7, \
        f"train(epochs=7) should return a list of 7 losses, got {type_name(losses)} of length {_length(losses)}"
    assert all(is_instance(v, float) for v in losses), \
        "train should return Python floats: append loss.item(), not the loss tensor " \
        "(keeping tensors keeps every epoch's graph alive)"


@pytest.mark.task("ch05.train")
@pytest.mark.points(2)
def test_train_matches_lecture_loop(probes):
    start = _start(0)
    got, _ = probes.train_lecture_model(start, X_LECTURE, Y_LECTURE, epochs=10, lr=0.01)
    _check_losses(_as_losses(got, 10), start, X_LECTURE, Y_LECTURE, 10, 0.01, "on the lecture's data")


@pytest.mark.task("ch05.train")
@pytest.mark.points(1)
def test_train_uses_given_optimizer(probes):
    seen = probes.optimizer_use(_start(0), X_LECTURE, Y_LECTURE, 5, 0.03)
    assert seen["built"] == 1, \
        f"train built {seen['built']} optimizers from optimizer_cls: build one, " \
        "optimizer_cls(model.parameters(), lr=lr), before the loop"
    assert seen["params"][0] == 2 == seen["sizes"][0], \
        "the optimizer does not hold the model's two parameters: build it on model.parameters()"
    assert abs(seen["lrs"][0] - 0.03) < 1e-6, \
        f"train(lr=0.03) built its optimizer with lr={seen['lrs'][0]}: pass lr=lr to optimizer_cls"
    assert seen["steps"] == 5, (f"optimizer_cls.step() ran {seen['steps']} times for 5 epochs: build the "
                                "optimizer with optimizer_cls(model.parameters(), lr=lr) and step once per epoch")


@pytest.mark.task("ch05.train")
@pytest.mark.points(1)
def test_train_learns_y_equals_2x(probes):
    # the lecture's 1000 epochs at lr=0.01 in 200 at lr=0.04 (stable below 0.06 on this data):
    # from 20 starting points y(4) ends within 0.003 of 8
    losses, w = probes.train_lecture_model(_start(0), X_LECTURE, Y_LECTURE, epochs=200, lr=0.04)
    losses = _as_losses(losses, 200)
    assert losses[-1] < losses[0], \
        "the loss did not decrease: is optimizer.zero_grad() called every step, and step() after backward()?"
    pred = 4.0 * w["weight"].item() + w["bias"].item()
    assert abs(pred - 8.0) < 0.1, f"after 200 epochs at lr=0.04 the model predicts y(4) = {pred:.3f}, expected about 8"


# --------------------------------------------------------------------------- ch05.two_layer

def _two_layer_weights(net, d_in, hidden, d_out):
    """TwoLayerNet's weights, found by shape (any names, nn.Sequential too)."""
    sd = net.state_dict()
    found = {}
    for name, shape in [("w1", (hidden, d_in)), ("b1", (hidden,)), ("w2", (d_out, hidden)), ("b2", (d_out,))]:
        same = [v for v in sd.values() if tuple(v.shape) == shape]
        assert same, f"TwoLayerNet({d_in}, {hidden}, {d_out}) holds no tensor of shape {list(shape)}: " \
                     "keep the two nn.Linear layers __init__ creates"
        found[name] = same[0]
    return found


def _check_two_layer(net, x, d_in, hidden, d_out, what):
    w = _two_layer_weights(net, d_in, hidden, d_out)
    got = net(x)
    assert isinstance(got, torch.Tensor) and got.shape == (x.shape[0], d_out), \
        f"TwoLayerNet({d_in}, {hidden}, {d_out}) should map [{x.shape[0]}, {d_in}] to [{x.shape[0]}, {d_out}]"
    first = F.linear(x, w["w1"], w["b1"])
    want = F.linear(torch.relu(first), w["w2"], w["b2"])
    hint = None
    if torch.allclose(got, F.linear(first, w["w2"], w["b2"]), atol=1e-5):
        hint = "the ReLU is missing: clamp(min=0) between the layers"
    elif torch.allclose(got, torch.relu(want), atol=1e-5):
        hint = "a ReLU after the output layer cuts every negative output to 0: the ReLU goes between the " \
               "layers only, linear2's output is returned as it is"
    assert_close(got, want, f"TwoLayerNet's output {what}", hint=hint)


@pytest.mark.task("ch05.two_layer")
@pytest.mark.points(1)
def test_two_layer_shape(impl):
    net = impl.TwoLayerNet(4, 8, 3)
    out = net(torch.randn(6, 4))
    assert isinstance(out, torch.Tensor), f"TwoLayerNet's forward returned {type_name(out)}, expected a Tensor"
    assert out.shape == (6, 3), f"TwoLayerNet(4, 8, 3) should map [6, 4] to [6, 3], got {list(out.shape)}"


@pytest.mark.task("ch05.two_layer")
@pytest.mark.points(1)
def test_two_layer_values(impl):
    torch.manual_seed(0)
    net = impl.TwoLayerNet(3, 5, 2)
    _check_two_layer(net, torch.randn(8, 3), 3, 5, 2, "on 8 samples")


# --------------------------------------------------------------------------- ch05.dynamic

def _dynamic_weights(net, d_in, hidden, d_out):
    """DynamicNet's three layers by the names __init__ gives them (their biases have the same
    shape, so names are what tells input_linear and middle_linear apart)."""
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == (d_in * hidden + hidden) + (hidden * hidden + hidden) + (hidden * d_out + d_out), \
        "DynamicNet should own exactly three Linear layers; do not create layers inside forward"
    sd = net.state_dict()
    found = {}
    for layer in ("input_linear", "middle_linear", "output_linear"):
        for part in ("weight", "bias"):
            keys = [k for k in sd if k == f"{layer}.{part}" or k.endswith(f".{layer}.{part}")]
            assert keys, f"the tests read DynamicNet's layers by the names __init__ gives them: keep " \
                         f"self.{layer} (no {layer}.{part} in its state_dict)"
            found[f"{layer}.{part}"] = sd[keys[0]]
    return found


def _dynamic_outputs(w, x, depths):
    """What DynamicNet should return for x at each depth, computed from its weights."""
    def layer(name, h):
        return F.linear(h, w[f"{name}.weight"], w[f"{name}.bias"])

    outs = []
    h = torch.relu(layer("input_linear", x))
    for depth in range(max(depths) + 1):
        if depth:
            h = torch.relu(layer("middle_linear", h))
        outs.append(layer("output_linear", h))
    return {d: outs[d] for d in depths}


def _depth_of(out, wants):
    """The depth whose expected output `out` is, or None."""
    for depth, want in wants.items():
        if isinstance(out, torch.Tensor) and out.shape == want.shape and torch.allclose(out, want, atol=1e-5):
            return depth
    return None


def _distinct_input(w, d_in, depths, seed):
    """Samples on which every depth in `depths` gives a different output (so that an output
    tells which depth ran), and those outputs."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(20):
        x = torch.randn(5, d_in, generator=gen) * 2
        wants = _dynamic_outputs(w, x, depths)
        if all(not torch.allclose(wants[a], wants[b], atol=1e-3) for a in depths for b in depths if a < b):
            return x, wants
    raise AssertionError("DynamicNet's weights give the same output at several depths: "
                         "keep the layers nn.Linear's initialisation gives them")


def _check_dynamic_depths(probes, net, x, wants, what):
    calls = probes.outputs(net, x, [0, 1, 2, 3] + [0] * 6)  # depths 0 to 3, then depth=0 six times
    outs = dict(enumerate(calls[:4]))
    again = [_depth_of(out, wants) for out in calls[4:]]
    seen = [_depth_of(outs[depth], wants) for depth in range(4)]
    if len(set(again + seen[:1])) > 1:
        raise AssertionError("with depth=0 the output changes from call to call: depth=0 must apply the "
                             "middle layer zero times; test `depth is None`, not `not depth` (0 is falsy)")
    hint = "apply the same middle_linear `depth` times, with a ReLU after each"
    if seen[0] is not None and seen == [seen[0]] * 4:
        hint = f"the output is the same for every depth; {hint}"
    elif seen == [1, 2, 3, 4]:
        hint = "the middle layer runs depth + 1 times: apply it exactly `depth` times"
    elif all(isinstance(outs[d], torch.Tensor) and outs[d].shape == wants[d].shape
             and torch.allclose(outs[d], torch.relu(wants[d]), atol=1e-5) for d in range(4)):
        hint = "a ReLU after the output layer cuts every negative output to 0: return output_linear's " \
               "result as it is"
    for depth in range(4):
        assert_close(outs[depth], wants[depth], f"DynamicNet's output with depth={depth} {what}", hint=hint)


def _check_random_depth(net, x, wants, student, seed, what):
    student.seed(seed)
    seen = [_depth_of(out, wants) for out in student.probes.outputs(net, x, [None] * 40)]  # net(x), 40 times
    if None in seen:
        raise AssertionError(f"with depth=None the output {what} is the output of no depth from 0 to 5: make "
                             "the outputs with an explicit depth right first (test_dynamic_reuses_middle_layer), "
                             "then pick the depth at random")
    depths = sorted(set(seen))
    assert depths == [0, 1, 2, 3], \
        f"with depth=None, forward should pick a random depth from 0 to 3 each call (both ends included); " \
        f"40 calls {what} used depths {depths}"


@pytest.mark.task("ch05.dynamic")
@pytest.mark.points(1)
def test_dynamic_shape(impl):
    net = impl.DynamicNet(4, 8, 3)
    for depth in (0, 2, None):
        out = net(torch.randn(6, 4), depth=depth)
        assert isinstance(out, torch.Tensor), f"DynamicNet's forward returned {type_name(out)}, expected a Tensor"
        assert out.shape == (6, 3), f"DynamicNet(4, 8, 3) with depth={depth} should map [6, 4] to [6, 3]"


@pytest.mark.task("ch05.dynamic")
@pytest.mark.points(1)
def test_dynamic_reuses_middle_layer(impl, probes):
    net = impl.DynamicNet(3, 6, 2)
    x, wants = _distinct_input(_dynamic_weights(net, 3, 6, 2), 3, range(6), seed=0)
    _check_dynamic_depths(probes, net, x, wants, "on 5 samples")


@pytest.mark.task("ch05.dynamic")
@pytest.mark.points(1)
def test_dynamic_random_depth(impl, student):
    net = impl.DynamicNet(2, 4, 1)
    x, wants = _distinct_input(_dynamic_weights(net, 2, 4, 1), 2, range(6), seed=0)
    _check_random_depth(net, x, wants, student, 1, "on 5 samples")
