"""Chapter 05, hidden tests: the public tests' properties on held-out inputs, sizes, seeds and
optimizers, and the exact results of graded runs (train() runs on the lecture's own model,
see probes.py)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grader.remote import type_name
from grader.testing import assert_close, reference, reference_losses

from .test_public import _depth_of, _distinct_input, _dynamic_weights, _length, _load_line


# --------------------------------------------------------------------------- ch05.forward

@pytest.mark.task("ch05.forward")
@pytest.mark.points(2)
def test_forward_held_out_values(impl):
    model = impl.LinearModel()
    _load_line(model, -0.75, 2.25)
    gen = torch.Generator().manual_seed(11)
    for x in (torch.randn(7, 1, generator=gen) * 3, torch.tensor([[4.0]])):
        n = x.shape[0]
        out = model(x)
        assert isinstance(out, torch.Tensor), f"forward returned {type_name(out)}, expected a Tensor"
        assert out.shape == (n, 1), \
            f"forward returned shape {list(out.shape)} for held-out input [{n}, 1], expected [{n}, 1]: keep the " \
            "output 2-D, as self.linear returns it (no squeeze, flatten or view(-1))"
        hint = None
        if torch.allclose(out, -0.75 * x, atol=1e-6):
            hint = "the bias is missing: use self.linear(x), which adds it"
        assert_close(out, -0.75 * x + 2.25, f"LinearModel.forward(x) on held-out inputs [{n}, 1] with weight "
                     "-0.75 and bias 2.25", hint=hint)
        assert out.requires_grad, "forward's output does not require grad: do not detach or use .data/.item()"


# --------------------------------------------------------------------------- ch05.train

X_LECTURE = torch.tensor([[1.0], [2.0], [3.0]])
Y_LECTURE = torch.tensor([[2.0], [4.0], [6.0]])
X_HELD_OUT = torch.tensor([[-1.0], [-0.5], [0.25], [0.5], [1.25], [2.0]])
Y_HELD_OUT = -1.5 * X_HELD_OUT + 0.5 + torch.tensor([[0.1], [-0.05], [0.0], [0.08], [-0.1], [0.02]])


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


@reference
def _reference_with(optimizer_cls, start, x, y, epochs, lr):
    """The lecture's loop with another optimizer class."""
    model = nn.Linear(1, 1)
    model.load_state_dict(start)
    optimizer = optimizer_cls(model.parameters(), lr=lr)
    criterion = nn.MSELoss(reduction="sum")
    losses = []
    for _ in range(epochs):
        loss = criterion(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, model.state_dict()


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
                raise AssertionError(f"train's losses {what} follow a known mistake: {text}")
        if torch.allclose(got, torch.full_like(got, got[0].item())):
            raise AssertionError("the loss never changes: call optimizer.step() after loss.backward(), "
                                 "with an optimizer built on model.parameters()")
    assert_close(got, want, f"the loss of each epoch {what}", rtol=1e-4,
                 hint="train must work for any data, starting weights and lr, not only the public example: "
                      "one full-batch update per epoch, each loss recorded before its update, as in lecture 05")


@pytest.mark.task("ch05.train")
@pytest.mark.points(2)
def test_train_matches_loop_on_held_out_data(probes):
    runs = [(_start(5), X_LECTURE, Y_LECTURE, 10, 0.01, "on the lecture's data from held-out starting weights"),
            (_start(3), X_HELD_OUT, Y_HELD_OUT, 25, 0.02, "on held-out data (6 samples of y = -1.5x + 0.5)")]
    for start, x, y, epochs, lr, what in runs:
        got, _ = probes.train_lecture_model(start, x, y, epochs=epochs, lr=lr)
        _check_losses(_as_losses(got, epochs), start, x, y, epochs, lr, what)


@pytest.mark.task("ch05.train")
@pytest.mark.points(1)
def test_train_with_another_optimizer(probes):
    start = _start(8)
    got, w = probes.train_lecture_model(start, X_HELD_OUT, Y_HELD_OUT, epochs=15, lr=0.1,
                                        optimizer_cls=torch.optim.Adam)
    want, want_w = _reference_with(torch.optim.Adam, start, X_HELD_OUT, Y_HELD_OUT, 15, 0.1)
    assert_close(_as_losses(got, 15), torch.tensor(want), "the loss of each epoch with optimizer_cls=Adam "
                 "on held-out data", rtol=1e-4,
                 hint="build the optimizer with optimizer_cls(model.parameters(), lr=lr), whatever the class")
    assert_close(w["weight"], want_w["weight"], "the weight after 15 Adam epochs on held-out data", rtol=1e-4)


@pytest.mark.task("ch05.train")
@pytest.mark.points(1)
def test_train_fits_held_out_line(probes):
    x = torch.tensor([[0.5], [1.0], [1.5], [2.0]])
    y = 3.0 * x - 1.0
    start = _start(2)
    # stable below lr=0.09 on these 4 samples; from 20 starting points the loss ends below 1e-11 of its start
    losses, w = probes.train_lecture_model(start, x, y, epochs=200, lr=0.07)
    losses = _as_losses(losses, 200)
    assert losses[-1] < 1e-3 * losses[0], \
        f"after 200 epochs on held-out data (y = 3x - 1) the loss is {losses[-1]:.4g}, from {losses[0]:.4g}: " \
        "it should be nearly 0"
    _, want = _reference(start, x, y, 200, 0.07)
    assert_close(torch.cat([w["weight"].flatten(), w["bias"]]),
                 torch.cat([want["weight"].flatten(), want["bias"]]),
                 "the weight and bias after 200 epochs on held-out data (y = 3x - 1)", atol=1e-3)


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


@pytest.mark.task("ch05.two_layer")
@pytest.mark.points(1)
def test_two_layer_held_out_sizes(impl):
    for d_in, hidden, d_out, n in [(6, 9, 4, 11), (1, 3, 2, 1)]:
        net = impl.TwoLayerNet(d_in, hidden, d_out)
        w = _two_layer_weights(net, d_in, hidden, d_out)
        x = torch.randn(n, d_in) * 2
        got = net(x)
        assert isinstance(got, torch.Tensor) and got.shape == (n, d_out), \
            f"TwoLayerNet({d_in}, {hidden}, {d_out}) should map [{n}, {d_in}] to [{n}, {d_out}]"
        first = F.linear(x, w["w1"], w["b1"])
        want = F.linear(torch.relu(first), w["w2"], w["b2"])
        hint = None
        if torch.allclose(got, F.linear(first, w["w2"], w["b2"]), atol=1e-5):
            hint = "the ReLU is missing: clamp(min=0) between the layers"
        elif torch.allclose(got, torch.relu(want), atol=1e-5):
            hint = "a ReLU after the output layer cuts every negative output to 0: the ReLU goes between the " \
                   "layers only, linear2's output is returned as it is"
        assert_close(got, want, f"TwoLayerNet({d_in}, {hidden}, {d_out})'s output on held-out inputs", hint=hint)


# --------------------------------------------------------------------------- ch05.dynamic

@pytest.mark.task("ch05.dynamic")
@pytest.mark.points(1)
def test_dynamic_held_out_sizes(impl, student):
    net = impl.DynamicNet(5, 7, 3)
    x, wants = _distinct_input(_dynamic_weights(net, 5, 7, 3), 5, range(6), seed=21)
    for depth in (3, 0, 2, 1):
        assert_close(net(x, depth=depth), wants[depth], f"DynamicNet(5, 7, 3)'s output with depth={depth} on "
                     "held-out inputs", hint="apply the same middle_linear `depth` times, with a ReLU after each")
    student.seed(29)
    seen = [_depth_of(out, wants) for out in student.probes.outputs(net, x, [None] * 40)]  # net(x), 40 times
    assert None not in seen and sorted(set(seen)) == [0, 1, 2, 3], \
        f"with depth=None, forward should pick a random depth from 0 to 3 each call (both ends included); " \
        f"40 calls on held-out inputs used depths {sorted(set(seen), key=str)}"
