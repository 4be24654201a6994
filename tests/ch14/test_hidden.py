"""Chapter 14, hidden tests: values, the training wiring, checkpoints, hooks, inference mode."""
import io
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grader.remote import is_instance, type_name
from grader.testing import assert_close


# --------------------------------------------------------------------------- ch14.model

def _lenet_reference(w, x, *, relu_convs=True, relu_fcs=True, relu_out=False, softmax=False):
    """LeNet's forward computed from the student's own weights (its state_dict), and the usual slips."""

    def layer(name, t):
        op = F.conv2d if name.startswith("conv") else F.linear
        return op(t, w[f"{name}.weight"], w.get(f"{name}.bias"))

    act = torch.relu if relu_convs else (lambda t: t)
    x = F.max_pool2d(act(layer("conv1", x)), 2)
    x = F.max_pool2d(act(layer("conv2", x)), 2)
    x = x.flatten(1)
    act = torch.relu if relu_fcs else (lambda t: t)
    x = act(layer("fc2", act(layer("fc1", x))))
    x = layer("fc3", x)
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
        assert is_instance(layer, cls), f"LeNet.{name} should be an nn.Conv2d, got {type_name(layer)}"
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
    w = model.state_dict()
    x = torch.randn(3, 3, 32, 32)
    got = model(x)
    with torch.no_grad():
        if torch.allclose(got, _lenet_reference(w, x, softmax=True), atol=1e-6):
            raise AssertionError("LeNet returns probabilities: return the logits of fc3 without softmax; "
                                 "nn.CrossEntropyLoss applies log-softmax itself")
        for kwargs, mistake in [
            (dict(relu_out=True), "there is a ReLU after fc3: the logits must be able to go negative"),
            (dict(relu_convs=False), "the ReLU after conv1/conv2 is missing: pool(relu(conv(x)))"),
            (dict(relu_fcs=False), "the ReLU after fc1/fc2 is missing"),
        ]:
            if torch.allclose(got, _lenet_reference(w, x, **kwargs), atol=1e-6):
                raise AssertionError(f"LeNet's output follows a known mistake: {mistake}")
        want = _lenet_reference(w, x)
    assert_close(got, want, "LeNet's logits",
                 hint="pool(relu(conv1)), pool(relu(conv2)), flatten(1), relu(fc1), relu(fc2), fc3")
    assert got.requires_grad, "LeNet's output does not require grad: do not detach inside forward"


@pytest.mark.task("ch14.model")
@pytest.mark.points(1)
def test_lenet_samples_are_independent(impl):
    torch.manual_seed(0)  # for x
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


def _weights_match(state, model, same):
    want = model.state_dict()
    return set(state) == set(want) and all(same(state[k], want[k]) for k in want)


@pytest.mark.task("ch14.model")
@pytest.mark.points(3)
def test_train_epoch_matches_the_loop(probes):
    torch.manual_seed(0)
    batches = [(torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))) for _ in range(3)]
    # train_epoch(model, batches, SGD(model.parameters(), lr=0.1, momentum=0.9), nn.CrossEntropyLoss())
    run = probes.train_epoch(_small_net(), batches, torch.optim.SGD, {"lr": 0.1, "momentum": 0.9},
                             nn.CrossEntropyLoss())
    got, state = run["losses"][0], run["state"]
    reference = _small_net()
    losses = _reference_epoch(reference, batches, 0.1)
    params_ok = _weights_match(state, reference, lambda a, b: torch.allclose(a, b, atol=1e-6))
    if not params_ok:
        wrong = _small_net()
        _reference_epoch(wrong, batches, 0.1, zero_grad=False)
        if _weights_match(state, wrong, lambda a, b: torch.allclose(a, b, atol=1e-6)):
            raise AssertionError("the gradients pile up across batches: call optimizer.zero_grad() "
                                 "for every batch, before loss.backward()")
        if _weights_match(state, _small_net(), torch.equal):
            raise AssertionError("train_epoch did not change the weights: call loss.backward() and "
                                 "optimizer.step() for every batch")
    assert params_ok, ("after one epoch the weights differ from the loop zero_grad -> forward -> loss -> "
                       "backward -> step, once per batch, in the loader's order")
    assert isinstance(got, float), f"train_epoch returned {type_name(got)}, expected a Python float"
    mean = sum(losses) / len(losses)
    if abs(got - losses[-1]) < 1e-6 and abs(mean - losses[-1]) > 1e-4:
        raise AssertionError("train_epoch returned the last batch's loss: return the mean over the batches")
    assert_close(got, mean, "train_epoch's return value (the mean of the batch losses)", rtol=1e-5)


@pytest.mark.task("ch14.model")
@pytest.mark.points(1)
def test_train_epoch_switches_to_train_mode(probes):
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(3 * 8 * 8, 10))
    model.eval()
    run = probes.train_epoch(model, [(torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,)))],
                             torch.optim.SGD, {"lr": 0.1}, nn.CrossEntropyLoss())
    assert run["training"], ("train_epoch left the model in eval mode: call model.train() first, "
                            "a model evaluated before (predict, accuracy) is still in eval mode")


@pytest.mark.task("ch14.model")
@pytest.mark.points(1)
def test_train_epoch_moves_batches_to_device(probes):
    # a model and a criterion that record the devices they are given (probes.py)
    batches = [(torch.randn(2, 3, 8, 8), torch.tensor([1, 2])) for _ in range(2)]
    seen = probes.train_epoch_devices(batches, "meta")
    assert seen["images"] == ["meta", "meta"], \
        f"with device='meta' the model saw images on {seen['images']}: move every batch with images.to(device)"
    assert seen["labels"] == ["meta", "meta"], \
        f"with device='meta' the loss saw labels on {seen['labels']}: move the labels too, labels.to(device)"


@pytest.mark.task("ch14.model")
@pytest.mark.points(3)
def test_lenet_overfits_one_batch(impl, probes):
    torch.manual_seed(0)
    images, labels = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    model = impl.LeNet()
    # one Adam(model.parameters(), lr=1e-3), then train_epoch(model, [(images, labels)], optimizer,
    # nn.CrossEntropyLoss()) 100 times
    losses = probes.train_epoch(model, [(images, labels)], torch.optim.Adam, {"lr": 1e-3}, nn.CrossEntropyLoss(),
                                epochs=100)["losses"]
    assert losses[-1] < losses[0], "the loss did not decrease at all in 100 steps on one batch"
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


def _sent(optimizer):
    """An optimizer as the probes rebuild it around the model: (class, arguments, state)."""
    return type(optimizer), {"lr": optimizer.param_groups[0]["lr"]}, optimizer.state_dict()


def _save(probes, model, optimizer, epoch):
    """save_checkpoint(path, model, optimizer, epoch): the bytes of the file written at path."""
    data = probes.save_checkpoint(model, _sent(optimizer), epoch)
    assert data is not None, "save_checkpoint(path, ...) did not write the file at path"
    return data


def _load_into(run, model, optimizer=None):
    """What load_checkpoint did to the copies it got, applied to the test's own model and optimizer."""
    model.load_state_dict(run["model"])
    if optimizer is not None:
        optimizer.load_state_dict(run["optimizer"])
    return run["epoch"]


@pytest.mark.task("ch14.checkpoint")
@pytest.mark.points(2)
def test_checkpoint_holds_state_dicts_not_modules(probes):
    model, optimizer, _ = _adam_run(2)
    data = _save(probes, model, optimizer, 2)
    try:
        saved = torch.load(io.BytesIO(data), weights_only=True)
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
def test_round_trip_resumes_training_exactly(probes):
    model, optimizer, (x, y) = _adam_run(3)
    data = _save(probes, model, optimizer, 7)

    fresh_model, fresh_optimizer, _ = _adam_run(0, seed=5)
    # load_checkpoint(path, fresh_model, fresh_optimizer) on copies; then the same state here
    epoch = _load_into(probes.load_checkpoint(data, fresh_model, _sent(fresh_optimizer)),
                       fresh_model, fresh_optimizer)
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
def test_load_without_optimizer(probes):
    model, optimizer, _ = _adam_run(1)
    data = _save(probes, model, optimizer, 4)
    fresh, _, _ = _adam_run(0, seed=3)
    epoch = _load_into(probes.load_checkpoint(data, fresh), fresh)  # load_checkpoint(path, fresh)
    assert epoch == 4, f"load_checkpoint(path, model) returned {epoch!r}, expected 4"
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values())), \
        "load_checkpoint(path, model) without an optimizer did not restore the model"


@pytest.mark.task("ch14.checkpoint")
@pytest.mark.points(1)
def test_map_location_is_passed_to_torch_load(probes):
    model, optimizer, _ = _adam_run(1)
    data = _save(probes, model, optimizer, 1)
    # load_checkpoint(path, model, map_location=a function that records its calls)
    calls = probes.load_checkpoint(data, _adam_run(0)[0], record_map_location=True)["map_location_calls"]
    assert calls, ("map_location was ignored: pass it on, torch.load(path, map_location=map_location, ...), "
                   "so a checkpoint saved on a GPU loads on a CPU-only machine")


@pytest.mark.gpu
@pytest.mark.task("ch14.checkpoint")
@pytest.mark.points(1)
def test_cuda_checkpoint_loads_on_cpu(probes):
    model = nn.Linear(3, 2).cuda()
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 3, device="cuda")).sum().backward()
    optimizer.step()
    data = _save(probes, model, optimizer, 1)
    cpu_model = nn.Linear(3, 2)
    cpu_optimizer = torch.optim.Adam(cpu_model.parameters())
    # load_checkpoint(path, cpu_model, cpu_optimizer, map_location="cpu") on copies
    run = probes.load_checkpoint(data, cpu_model, _sent(cpu_optimizer), map_location="cpu")
    assert_close(run["model"]["weight"], model.weight.cpu(), "the weight loaded with map_location='cpu'")
    state = run["optimizer"]["state"].get(0, {})
    assert "exp_avg" in state and state["exp_avg"].device.type == "cpu", \
        "Adam's state loaded with map_location='cpu' is still on the GPU: pass map_location to torch.load"


# --------------------------------------------------------------------------- ch14.hooks

def _nested_net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Flatten(),
        nn.Linear(4 * 3 * 3, 6), nn.ReLU(), nn.Linear(6, 2),
    )


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
    assert isinstance(acts, dict), f"capture_activations returned {type_name(acts)}, expected a dict"
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
def test_hooks_are_removed(probes):
    # capture_activations(model, ...), then the forward hooks still registered on the model
    left = probes.hooks_left(_nested_net(), ["0.0", "2", "4"], torch.randn(2, 3, 8, 8))
    assert not left, (f"forward hooks are still registered on {sorted(left)} after capture_activations: "
                      "keep the handles that register_forward_hook returns and call handle.remove()")


@pytest.mark.task("ch14.hooks")
@pytest.mark.points(1)
def test_hooks_are_removed_when_forward_raises(probes):
    # capture_activations on nn.Sequential(nn.Linear(3, 3), a layer whose forward raises ForwardFailed)
    run = probes.hooks_left_when_forward_raises(["0"], torch.randn(2, 3))
    assert run["raised"], ("capture_activations did not let the exception of the forward pass out: "
                           "remove the hooks in a try/finally block, without catching the exception")
    left = run["hooks"]
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
def test_predict_uses_eval_mode(probes):
    model = _noisy_net()
    with torch.no_grad():  # give BatchNorm running statistics unlike one batch's own
        for _ in range(5):
            model(torch.randn(32, 6) * 3 + 1)
    model.train()
    x = torch.randn(20, 6)
    mean_before = model[1].running_mean.clone()
    # predict(model, x) after torch.manual_seed(1), again after torch.manual_seed(2)
    run = probes.predict(model, x, seeds=[1, 2])
    first, second = run["outs"]
    model.eval()
    with torch.no_grad():
        want = model(x).argmax(dim=1)
    model.train()
    assert torch.equal(run["state"]["1.running_mean"], mean_before), \
        ("predict changed BatchNorm's running statistics: call model.eval() before the forward pass, "
         "so batch-norm uses (and does not update) its running mean and variance")
    assert torch.equal(first, second), ("predict gave different answers for the same input: dropout is still "
                                        "active; call model.eval() before the forward pass")
    assert torch.equal(first.cpu(), want), \
        ("predict's classes differ from the arg-max of the model's eval-mode scores: call model.eval(), "
         "then take argmax over dim=1")


@pytest.mark.task("ch14.predict")
@pytest.mark.points(2)
def test_predict_restores_the_previous_mode(probes):
    model = _noisy_net()
    model.train()
    modes = probes.predict(model, torch.randn(4, 6))["training"]  # of model.modules(), the model first
    assert modes[0] and all(modes), \
        ("predict left a model that was training in eval mode: remember model.training and restore the "
         "previous mode with model.train(was_training) afterwards")
    model.eval()
    modes = probes.predict(model, torch.randn(4, 6))["training"]
    assert not any(modes), \
        ("predict switched a model that was in eval mode to training mode: restore the previous mode "
         "with model.train(was_training), do not call model.train() unconditionally")


@pytest.mark.task("ch14.predict")
@pytest.mark.points(1)
def test_predict_builds_no_graph(probes):
    # predict on a Linear(3, 4) that records the grad mode of its forward passes
    run = probes.predict_grad_mode(torch.randn(5, 3))
    out = run["out"]
    assert run["grad_enabled"] == [False], \
        ("predict ran the forward pass with gradient tracking on: wrap it in `with torch.no_grad():` "
         "(inference needs no graph, and building one costs memory)")
    assert not out.requires_grad, "predict's result requires grad: compute it under torch.no_grad()"
    assert run["grad_enabled_after"], \
        "gradient tracking is still off after predict: use `with torch.no_grad():`"


@pytest.mark.task("ch14.predict")
@pytest.mark.points(1)
def test_predict_restores_the_mode_when_forward_raises(probes):
    # predict on a model in training mode whose forward raises ForwardFailed
    run = probes.predict_when_forward_raises(torch.randn(2, 3))
    assert run["raised"], ("predict did not let the exception of the forward pass out: restore the mode "
                           "in a try/finally block, without catching the exception")
    assert run["training"], ("the forward pass raised inside predict and the model stayed in eval mode: "
                            "restore the previous mode in a try/finally block")
