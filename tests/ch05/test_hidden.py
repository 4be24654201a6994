"""Chapter 05, hidden tests: values against references, training behaviour, common mistakes."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grader.testing import assert_close, reference_losses


def _reference_losses(x, y, epochs, lr, *, zero_grad=True, reduction="sum", record_after=False):
    """The lecture's training loop, and the common ways of getting it wrong, for fingerprints."""
    torch.manual_seed(0)
    model = nn.Linear(1, 1)
    losses = reference_losses(model, nn.MSELoss(reduction=reduction), x, y, epochs, lr,
                              zero_grad=zero_grad, record_after=record_after)
    return losses, model


def _student_losses(impl, x, y, epochs, lr):
    model = impl.LinearModel()
    torch.manual_seed(0)  # same start as the reference: nn.Linear(1, 1) after manual_seed(0)
    model.linear.load_state_dict(nn.Linear(1, 1).state_dict())
    return impl.train(model, x, y, epochs=epochs, lr=lr), model


@pytest.mark.task("ch05.forward")
@pytest.mark.points(2)
def test_forward_values_match_linear(impl):
    model = impl.LinearModel()
    model.linear.load_state_dict({"weight": torch.tensor([[3.0]]), "bias": torch.tensor([-1.5])})
    x = torch.tensor([[0.0], [1.0], [2.5]])
    out = model(x)
    hint = None
    if torch.allclose(out, 3.0 * x, atol=1e-6):
        hint = "the bias is missing: use self.linear(x), which adds it"
    assert_close(out, 3.0 * x - 1.5, "LinearModel.forward(x) with weight 3 and bias -1.5", hint=hint)
    assert out.requires_grad, "forward's output does not require grad: do not detach or use .data/.item()"


@pytest.mark.task("ch05.train")
@pytest.mark.points(3)
def test_train_matches_lecture_loop(impl):
    x, y = impl.X_DATA, impl.Y_DATA
    got, _ = _student_losses(impl, x, y, epochs=50, lr=0.01)
    want, _ = _reference_losses(x, y, 50, 0.01)
    if len(got) == len(want) and not torch.allclose(torch.tensor(got), torch.tensor(want), rtol=1e-4):
        for kwargs, mistake in [
            (dict(zero_grad=False), "the gradients pile up: call optimizer.zero_grad() every epoch, "
                                    "before loss.backward()"),
            (dict(reduction="mean"), "the loss is the mean, not the sum: use nn.MSELoss(reduction='sum')"),
            (dict(record_after=True), "you record the loss after optimizer.step(): "
                                      "keep the loss computed before the update"),
        ]:
            wrong, _ = _reference_losses(x, y, 50, 0.01, **kwargs)
            if torch.allclose(torch.tensor(got), torch.tensor(wrong), rtol=1e-4):
                raise AssertionError(f"train's losses follow a known mistake: {mistake}")
    assert_close(torch.tensor(got), torch.tensor(want), "the loss of each epoch", rtol=1e-4,
                 hint="compare your loop with: loss, zero_grad, backward, step")


@pytest.mark.task("ch05.train")
@pytest.mark.points(3)
def test_train_learns_y_equals_2x(impl):
    model = impl.LinearModel()
    losses = impl.train(model, impl.X_DATA, impl.Y_DATA, epochs=1000, lr=0.01)
    assert losses[-1] < losses[0], \
        "the loss did not decrease: is optimizer.zero_grad() called every step, and step() after backward()?"
    pred = model(torch.tensor([[4.0]])).item()
    assert abs(pred - 8.0) < 0.1, f"after 1000 epochs the model predicts y(4) = {pred:.3f}, expected about 8"


@pytest.mark.task("ch05.train")
@pytest.mark.points(1)
def test_train_uses_given_optimizer(probes):
    steps = probes.optimizer_steps(5)
    assert steps == 5, (f"optimizer_cls.step() ran {steps} times for 5 epochs: build the optimizer "
                            "with optimizer_cls(model.parameters(), lr=lr) and step once per epoch")


@pytest.mark.task("ch05.two_layer")
@pytest.mark.points(2)
def test_two_layer_values(impl):
    net = impl.TwoLayerNet(3, 5, 2)
    w = net.state_dict()
    x = torch.randn(4, 3)
    got = net(x)
    first = F.linear(x, w["linear1.weight"], w["linear1.bias"])
    want = F.linear(torch.relu(first), w["linear2.weight"], w["linear2.bias"])
    hint = None
    if torch.allclose(got, F.linear(first, w["linear2.weight"], w["linear2.bias"]), atol=1e-6):
        hint = "the ReLU is missing: clamp(min=0) between the layers"
    assert_close(got, want, "TwoLayerNet's output", hint=hint)


@pytest.mark.task("ch05.dynamic")
@pytest.mark.points(2)
def test_dynamic_reuses_middle_layer(impl):
    net = impl.DynamicNet(3, 6, 2)
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == (3 * 6 + 6) + (6 * 6 + 6) + (6 * 2 + 2), \
        "DynamicNet should own exactly three Linear layers; do not create layers inside forward"
    w = net.state_dict()

    def layer(name, h):
        return F.linear(h, w[f"{name}.weight"], w[f"{name}.bias"])

    x = torch.randn(5, 3)
    for depth in range(4):
        h = torch.relu(layer("input_linear", x))
        for _ in range(depth):
            h = torch.relu(layer("middle_linear", h))
        assert_close(net(x, depth=depth), layer("output_linear", h), f"DynamicNet's output with depth={depth}",
                     hint="apply the same middle_linear `depth` times, with a ReLU after each")


@pytest.mark.task("ch05.dynamic")
@pytest.mark.points(1)
def test_dynamic_random_depth(impl, student):
    net = impl.DynamicNet(2, 4, 1)
    x = torch.randn(3, 2)
    outs = {tuple(net(x, depth=d).flatten().tolist()) for d in range(4)}
    student.seed(1)
    seen = {tuple(net(x).detach().flatten().tolist()) for _ in range(40)}
    assert len(seen & outs) >= 3, \
        "with depth=None, forward should pick a random depth from 0 to 3 (random.randint(0, 3)) each call"
