"""Chapter 14, hidden tests: values, the training wiring, checkpoints, hooks, inference mode."""
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grader.testing import assert_close


# --------------------------------------------------------------------------- ch14.model

def _lenet_reference(m, x, *, relu_convs=True, relu_fcs=True, relu_out=False, softmax=False):
    """LeNet's forward computed from the student's own layers, and the usual slips."""
    act = torch.relu if relu_convs else (lambda t: t)
    x = F.max_pool2d(act(m.conv1(x)), 2)
    x = F.max_pool2d(act(m.conv2(x)), 2)
    x = x.flatten(1)
    act = torch.relu if relu_fcs else (lambda t: t)
    x = act(m.fc2(act(m.fc1(x))))
    x = m.fc3(x)
    if relu_out:
        x = torch.relu(x)
    if softmax:
        x = torch.softmax(x, dim=1)
    return x


@pytest.mark.task("ch14.model")
@pytest.mark.points(2)
def test_lenet_layers(impl):
    model = impl.LeNet()
    missing = [n for n in ("conv1", "pool", "conv2", "fc1", "fc2", "fc3") if not hasattr(model, n)]
    assert not missing, f"LeNet has no layer named {', '.join(missing)}: use the names given in the TODO"
    for name, cls, want in [("conv1", nn.Conv2d, (3, 6, (5, 5))), ("conv2", nn.Conv2d, (6, 16, (5, 5)))]:
        layer = getattr(model, name)
        assert isinstance(layer, cls), f"LeNet.{name} should be an nn.Conv2d, got {type(layer).__name__}"
        got = (layer.in_channels, layer.out_channels, layer.kernel_size)
        assert got == want, f"LeNet.{name} is Conv2d{got}, expected Conv2d{want}"
    assert model.fc1.in_features == 400, \
        (f"fc1 takes {model.fc1.in_features} inputs, expected 400 = 16 channels x 5 x 5: a 32x32 image "
         "becomes 28 after conv1 (5x5, no padding), 14 after pooling, 10 after conv2, 5 after pooling")
    for name, want in [("fc1", (400, 120)), ("fc2", (120, 84)), ("fc3", (84, 10))]:
        layer = getattr(model, name)
        got = (layer.in_features, layer.out_features)
        assert got == want, f"LeNet.{name} is Linear{got}, expected Linear{want}"


@pytest.mark.task("ch14.model")
@pytest.mark.points(3)
def test_lenet_forward_values(impl):
    torch.manual_seed(0)
    model = impl.LeNet()
    x = torch.randn(3, 3, 32, 32)
    got = model(x)
    with torch.no_grad():
        if torch.allclose(got, _lenet_reference(model, x, softmax=True), atol=1e-6):
            raise AssertionError("LeNet returns probabilities: return the logits of fc3 without softmax; "
                                 "nn.CrossEntropyLoss applies log-softmax itself")
        for kwargs, mistake in [
            (dict(relu_out=True), "there is a ReLU after fc3: the logits must be able to go negative"),
            (dict(relu_convs=False), "the ReLU after conv1/conv2 is missing: pool(relu(conv(x)))"),
            (dict(relu_fcs=False), "the ReLU after fc1/fc2 is missing"),
        ]:
            if torch.allclose(got, _lenet_reference(model, x, **kwargs), atol=1e-6):
                raise AssertionError(f"LeNet's output follows a known mistake: {mistake}")
        want = _lenet_reference(model, x)
    assert_close(got, want, "LeNet's logits",
                 hint="pool(relu(conv1)), pool(relu(conv2)), flatten(1), relu(fc1), relu(fc2), fc3")
    assert got.requires_grad, "LeNet's output does not require grad: do not detach inside forward"


@pytest.mark.task("ch14.model")
@pytest.mark.points(1)
def test_lenet_samples_are_independent(impl):
    torch.manual_seed(0)
    model = impl.LeNet()
    x = torch.randn(5, 3, 32, 32)
    batch = model(x)
    single = torch.cat([model(x[i:i + 1]) for i in range(5)])
    assert_close(batch, single, "the logits of a batch compared with the same images one at a time",
                 hint="flatten each image on its own: x.flatten(1) or x.view(x.size(0), -1)")


def _reference_epoch(model, batches, lr, *, zero_grad=True):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    losses = []
    for images, labels in batches:
        if zero_grad:
            optimizer.zero_grad()
        loss = criterion(model(images), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def _small_net():
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))


@pytest.mark.task("ch14.model")
@pytest.mark.points(3)
def test_train_epoch_matches_the_loop(impl):
    torch.manual_seed(0)
    batches = [(torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))) for _ in range(3)]
    model = _small_net()
    got = impl.train_epoch(model, batches, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                           nn.CrossEntropyLoss())
    reference = _small_net()
    losses = _reference_epoch(reference, batches, 0.1)
    params_ok = all(torch.allclose(a, b, atol=1e-6)
                    for a, b in zip(model.parameters(), reference.parameters()))
    if not params_ok:
        wrong = _small_net()
        _reference_epoch(wrong, batches, 0.1, zero_grad=False)
        if all(torch.allclose(a, b, atol=1e-6) for a, b in zip(model.parameters(), wrong.parameters())):
            raise AssertionError("the gradients pile up across batches: call optimizer.zero_grad() "
                                 "for every batch, before loss.backward()")
        untouched = _small_net()
        if all(torch.equal(a, b) for a, b in zip(model.parameters(), untouched.parameters())):
            raise AssertionError("train_epoch did not change the weights: call loss.backward() and "
                                 "optimizer.step() for every batch")
    assert params_ok, ("after one epoch the weights differ from the loop zero_grad -> forward -> loss -> "
                       "backward -> step, once per batch, in the loader's order")
    assert isinstance(got, float), f"train_epoch returned {type(got).__name__}, expected a Python float"
    mean = sum(losses) / len(losses)
    if abs(got - losses[-1]) < 1e-6 and abs(mean - losses[-1]) > 1e-4:
        raise AssertionError("train_epoch returned the last batch's loss: return the mean over the batches")
    assert_close(got, mean, "train_epoch's return value (the mean of the batch losses)", rtol=1e-5)


@pytest.mark.task("ch14.model")
@pytest.mark.points(1)
def test_train_epoch_switches_to_train_mode(impl):
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(3 * 8 * 8, 10))
    model.eval()
    impl.train_epoch(model, [(torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,)))],
                     torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss())
    assert model.training, ("train_epoch left the model in eval mode: call model.train() first, "
                            "a model evaluated before (predict, accuracy) is still in eval mode")


class _DeviceSpy(nn.Module):
    """Records the device of its inputs; computes on the CPU so the loss stays real."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(10))
        self.seen = []

    def forward(self, x):
        self.seen.append(x.device.type)
        return self.w.expand(x.shape[0], 10)


@pytest.mark.task("ch14.model")
@pytest.mark.points(1)
def test_train_epoch_moves_batches_to_device(impl):
    model, labels_seen = _DeviceSpy(), []

    def criterion(out, labels):
        labels_seen.append(labels.device.type)
        return (out ** 2).sum()

    batches = [(torch.randn(2, 3, 8, 8), torch.tensor([1, 2])) for _ in range(2)]
    impl.train_epoch(model, batches, torch.optim.SGD(model.parameters(), lr=0.1), criterion, device="meta")
    assert model.seen == ["meta", "meta"], \
        f"with device='meta' the model saw images on {model.seen}: move every batch with images.to(device)"
    assert labels_seen == ["meta", "meta"], \
        f"with device='meta' the loss saw labels on {labels_seen}: move the labels too, labels.to(device)"


@pytest.mark.task("ch14.model")
@pytest.mark.points(3)
def test_lenet_overfits_one_batch(impl):
    torch.manual_seed(0)
    images, labels = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    model = impl.LeNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    losses = [impl.train_epoch(model, [(images, labels)], optimizer, criterion) for _ in range(100)]
    assert losses[-1] < losses[0], "the loss did not decrease at all in 100 steps on one batch"
    with torch.no_grad():
        correct = int((model(images).argmax(1) == labels).sum())
    assert losses[-1] < 0.05 and correct == 16, \
        (f"after 100 Adam steps on one batch of 16 images the loss is {losses[-1]:.3f} and {correct}/16 are "
         "right; a correctly wired LeNet memorises them (loss < 0.05, 16/16)")


# --------------------------------------------------------------------------- ch14.checkpoint

def _adam_run(steps, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3), nn.BatchNorm1d(3))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    torch.manual_seed(100)
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model, optimizer, (x, y)


@pytest.mark.task("ch14.checkpoint")
@pytest.mark.points(2)
def test_checkpoint_holds_state_dicts_not_modules(impl, tmp_path):
    model, optimizer, _ = _adam_run(2)
    path = tmp_path / "ckpt.pth"
    impl.save_checkpoint(path, model, optimizer, 2)
    try:
        saved = torch.load(path, weights_only=True)
    except pickle.UnpicklingError:
        raise AssertionError("the checkpoint cannot be loaded with weights_only=True: it holds pickled "
                             "objects; save model.state_dict() and optimizer.state_dict(), not the model or "
                             "the optimizer themselves") from None
    assert isinstance(saved, dict) and set(saved) == {"model", "optimizer", "epoch"}, \
        "the checkpoint should be a dict with exactly the keys 'model', 'optimizer', 'epoch'"
    assert type(saved["epoch"]) is int, \
        f"checkpoint['epoch'] is a {type(saved['epoch']).__name__}, expected int"
    want = model.state_dict()
    assert set(saved["model"]) == set(want), \
        ("checkpoint['model'] should be model.state_dict() (parameters and buffers such as "
         "BatchNorm's running_mean)")
    for key, value in want.items():
        assert torch.equal(saved["model"][key], value), \
            f"checkpoint['model'][{key!r}] differs from the model's"
    assert "state" in saved["optimizer"] and "param_groups" in saved["optimizer"], \
        "checkpoint['optimizer'] should be optimizer.state_dict()"


@pytest.mark.task("ch14.checkpoint")
@pytest.mark.points(3)
def test_round_trip_resumes_training_exactly(impl, tmp_path):
    model, optimizer, (x, y) = _adam_run(3)
    path = tmp_path / "ckpt.pth"
    impl.save_checkpoint(path, model, optimizer, 7)

    fresh_model, fresh_optimizer, _ = _adam_run(0, seed=5)
    epoch = impl.load_checkpoint(path, fresh_model, fresh_optimizer)
    assert epoch == 7 and isinstance(epoch, int), \
        f"load_checkpoint returned {epoch!r}, expected the saved epoch 7"
    for (name, a), b in zip(model.state_dict().items(), fresh_model.state_dict().values()):
        assert torch.equal(a, b), f"after load_checkpoint the model's {name} differs from the saved one"
    first = model[0].weight
    state = fresh_optimizer.state.get(fresh_model[0].weight, {})
    assert "exp_avg" in state, ("Adam's state (exp_avg, exp_avg_sq, step) was not restored: load "
                                "checkpoint['optimizer'] into the optimizer with optimizer.load_state_dict")
    assert_close(state["exp_avg"], optimizer.state[first]["exp_avg"], "Adam's restored exp_avg")
    assert fresh_optimizer.param_groups[0]["lr"] == 0.01, "the optimizer's learning rate was not restored"

    for m, opt in ((model, optimizer), (fresh_model, fresh_optimizer)):
        opt.zero_grad()
        F.cross_entropy(m(x), y).backward()
        opt.step()
    for (name, a), b in zip(model.state_dict().items(), fresh_model.state_dict().values()):
        assert_close(b, a, f"{name} one step after resuming",
                     hint="resuming must continue exactly like uninterrupted training")


@pytest.mark.task("ch14.checkpoint")
@pytest.mark.points(1)
def test_load_without_optimizer(impl, tmp_path):
    model, optimizer, _ = _adam_run(1)
    path = tmp_path / "ckpt.pth"
    impl.save_checkpoint(path, model, optimizer, 4)
    fresh, _, _ = _adam_run(0, seed=3)
    epoch = impl.load_checkpoint(path, fresh)
    assert epoch == 4, f"load_checkpoint(path, model) returned {epoch!r}, expected 4"
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values())), \
        "load_checkpoint(path, model) without an optimizer did not restore the model"


@pytest.mark.task("ch14.checkpoint")
@pytest.mark.points(1)
def test_map_location_is_passed_to_torch_load(impl, tmp_path):
    model, optimizer, _ = _adam_run(1)
    path = tmp_path / "ckpt.pth"
    impl.save_checkpoint(path, model, optimizer, 1)
    calls = []

    def to_cpu(storage, location):
        calls.append(location)
        return storage

    impl.load_checkpoint(path, _adam_run(0)[0], map_location=to_cpu)
    assert calls, ("map_location was ignored: pass it on, torch.load(path, map_location=map_location, ...), "
                   "so a checkpoint saved on a GPU loads on a CPU-only machine")


@pytest.mark.gpu
@pytest.mark.task("ch14.checkpoint")
@pytest.mark.points(1)
def test_cuda_checkpoint_loads_on_cpu(impl, tmp_path):
    model = nn.Linear(3, 2).cuda()
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 3, device="cuda")).sum().backward()
    optimizer.step()
    path = tmp_path / "ckpt.pth"
    impl.save_checkpoint(path, model, optimizer, 1)
    cpu_model = nn.Linear(3, 2)
    cpu_optimizer = torch.optim.Adam(cpu_model.parameters())
    impl.load_checkpoint(path, cpu_model, cpu_optimizer, map_location="cpu")
    assert_close(cpu_model.weight, model.weight.cpu(), "the weight loaded with map_location='cpu'")
    state = cpu_optimizer.state[cpu_model.weight]
    assert state["exp_avg"].device.type == "cpu", \
        "Adam's state loaded with map_location='cpu' is still on the GPU: pass map_location to torch.load"


# --------------------------------------------------------------------------- ch14.hooks

def _nested_net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Flatten(),
        nn.Linear(4 * 3 * 3, 6), nn.ReLU(), nn.Linear(6, 2),
    )


def _all_hooks(model):
    return {name: len(m._forward_hooks) for name, m in model.named_modules() if m._forward_hooks}


@pytest.mark.task("ch14.hooks")
@pytest.mark.points(3)
def test_activations_are_the_layer_outputs(impl):
    model = _nested_net()
    x = torch.randn(2, 3, 8, 8)
    names = ["0.0", "0", "2", "4"]
    acts = impl.capture_activations(model, names, x)
    with torch.no_grad():
        conv = model[0][0](x)
        block = model[0](x)
        fc1 = model[2](model[1](block))
        want = {"0.0": conv, "0": block, "2": fc1, "4": model[4](torch.relu(fc1))}
        inputs = {"0.0": x, "0": x, "2": model[1](block), "4": torch.relu(fc1)}
    assert isinstance(acts, dict), f"capture_activations returned {type(acts).__name__}, expected a dict"
    if list(acts) == [names[-1]]:
        raise AssertionError("only the last name is in the dict: every hook looks up the loop variable "
                             "`name` when it runs (late binding), after the loop has ended; bind it when "
                             "you define the hook, e.g. def hook(module, inputs, output, name=name)")
    assert set(acts) == set(names), f"capture_activations returned keys {sorted(acts)}, expected {names}"
    for n in names:
        got = acts[n]
        if isinstance(got, tuple) or got.shape == inputs[n].shape:
            raise AssertionError(f"the activation of {n!r} is the layer's input: a forward hook is called as "
                                 "hook(module, inputs, output); store output")
        assert_close(acts[n], want[n], f"the activation of layer {n!r}")


@pytest.mark.task("ch14.hooks")
@pytest.mark.points(2)
def test_hooks_are_removed(impl):
    model = _nested_net()
    impl.capture_activations(model, ["0.0", "2", "4"], torch.randn(2, 3, 8, 8))
    left = _all_hooks(model)
    assert not left, (f"forward hooks are still registered on {sorted(left)} after capture_activations: "
                      "keep the handles that register_forward_hook returns and call handle.remove()")


class _ForwardFailed(Exception):
    """Raised by the test models below; nothing in a solution raises it."""


class _Boom(nn.Module):
    def forward(self, x):
        raise _ForwardFailed("boom")


@pytest.mark.task("ch14.hooks")
@pytest.mark.points(1)
def test_hooks_are_removed_when_forward_raises(impl):
    model = nn.Sequential(nn.Linear(3, 3), _Boom())
    with pytest.raises(_ForwardFailed):
        impl.capture_activations(model, ["0"], torch.randn(2, 3))
    left = _all_hooks(model)
    assert not left, ("the forward pass raised and a hook stayed registered: remove the handles in a "
                      "try/finally block, so a failed forward does not leave hooks behind")


@pytest.mark.task("ch14.hooks")
@pytest.mark.points(1)
def test_activations_are_detached(impl):
    model = _nested_net()
    acts = impl.capture_activations(model, ["2"], torch.randn(2, 3, 8, 8))
    assert not acts["2"].requires_grad, ("the stored activation is still attached to the graph: store "
                                         "output.detach(), so keeping activations does not keep every "
                                         "intermediate result of the forward pass alive")


# --------------------------------------------------------------------------- ch14.predict

def _noisy_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 4))


@pytest.mark.task("ch14.predict")
@pytest.mark.points(3)
def test_predict_uses_eval_mode(impl):
    model = _noisy_net()
    with torch.no_grad():  # give BatchNorm running statistics unlike one batch's own
        for _ in range(5):
            model(torch.randn(32, 6) * 3 + 1)
    model.train()
    x = torch.randn(20, 6)
    mean_before = model[1].running_mean.clone()
    torch.manual_seed(1)
    first = impl.predict(model, x)
    torch.manual_seed(2)
    second = impl.predict(model, x)
    model.eval()
    with torch.no_grad():
        want = model(x).argmax(dim=1)
    model.train()
    assert torch.equal(model[1].running_mean, mean_before), \
        ("predict changed BatchNorm's running statistics: call model.eval() before the forward pass, "
         "so batch-norm uses (and does not update) its running mean and variance")
    assert torch.equal(first, second), ("predict gave different answers for the same input: dropout is still "
                                        "active; call model.eval() before the forward pass")
    assert torch.equal(first.cpu(), want), \
        ("predict's classes differ from the arg-max of the model's eval-mode scores: call model.eval(), "
         "then take argmax over dim=1")


@pytest.mark.task("ch14.predict")
@pytest.mark.points(2)
def test_predict_restores_the_previous_mode(impl):
    model = _noisy_net()
    model.train()
    impl.predict(model, torch.randn(4, 6))
    assert model.training and all(m.training for m in model.modules()), \
        ("predict left a model that was training in eval mode: remember model.training and restore the "
         "previous mode with model.train(was_training) afterwards")
    model.eval()
    impl.predict(model, torch.randn(4, 6))
    assert not any(m.training for m in model.modules()), \
        ("predict switched a model that was in eval mode to training mode: restore the previous mode "
         "with model.train(was_training), do not call model.train() unconditionally")


class _GradSpy(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 4)
        self.grad_enabled = []

    def forward(self, x):
        self.grad_enabled.append(torch.is_grad_enabled())
        return self.linear(x)


@pytest.mark.task("ch14.predict")
@pytest.mark.points(1)
def test_predict_builds_no_graph(impl):
    model = _GradSpy()
    out = impl.predict(model, torch.randn(5, 3))
    assert model.grad_enabled == [False], \
        ("predict ran the forward pass with gradient tracking on: wrap it in `with torch.no_grad():` "
         "(inference needs no graph, and building one costs memory)")
    assert not out.requires_grad, "predict's result requires grad: compute it under torch.no_grad()"
    assert torch.is_grad_enabled(), \
        "gradient tracking is still off after predict: use `with torch.no_grad():`"


class _FailingInEval(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)

    def forward(self, x):
        raise _ForwardFailed("forward failed")


@pytest.mark.task("ch14.predict")
@pytest.mark.points(1)
def test_predict_restores_the_mode_when_forward_raises(impl):
    model = _FailingInEval()
    model.train()
    with pytest.raises(_ForwardFailed):
        impl.predict(model, torch.randn(2, 3))
    assert model.training, ("the forward pass raised inside predict and the model stayed in eval mode: "
                            "restore the previous mode in a try/finally block")
