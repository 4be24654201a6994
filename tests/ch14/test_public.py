"""Chapter 14, public tests: LeNet against its formula, the training loop, checkpoints, hooks and
inference mode, each on inputs made from fixed seeds, with the common mistakes named.

LeNet's layers are found by their weights' shapes, so any names, registration order or
nn.Sequential blocks work. The hidden tests run the same checks on other seeds, sizes,
models and optimizers, so code fitted to these inputs fails there.
"""
import io
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grader.remote import type_name
from grader.testing import assert_close


def _shape(value):
    return list(value.shape) if isinstance(value, torch.Tensor) else type_name(value)


# --------------------------------------------------------------------------- ch14.model

FC1_SIZE = ("expected 400 = 16 channels x 5 x 5: a 32x32 image becomes 28 after conv1 (5x5, no padding), "
            "14 after pooling, 10 after conv2, 5 after pooling")
_LENET = "Conv2d(3, 6, 5), Conv2d(6, 16, 5), Linear(400, 120), Linear(120, 84), Linear(84, 10)"


def _lenet_layers(state):
    """{role: (weight, bias)} for conv1, conv2, fc1, fc2, fc3, found in a state_dict by the weights'
    shapes (a conv's out_channels, a Linear's out_features), whatever the names; an AssertionError
    that says what is off otherwise."""
    layers, found = {}, []
    for key, weight in state.items():
        if not key.endswith("weight") or weight.dim() not in (2, 4):
            continue
        prefix = key[:-len("weight")]
        bias = state.get(prefix + "bias")
        found.append(f"{key} {list(weight.shape)}")
        kind = "conv" if weight.dim() == 4 else "fc"
        role = {("conv", 6): "conv1", ("conv", 16): "conv2", ("fc", 120): "fc1", ("fc", 84): "fc2",
                ("fc", 10): "fc3"}.get((kind, weight.shape[0]))
        if role is None or role in layers:
            raise AssertionError(f"LeNet's layers should be {_LENET}; found the weights {', '.join(found)}")
        layers[role] = (weight, bias)
    missing = [r for r in ("conv1", "conv2", "fc1", "fc2", "fc3") if r not in layers]
    assert not missing, f"LeNet's layers should be {_LENET}; found the weights {', '.join(found) or 'none'}"
    fc1 = layers["fc1"][0]
    assert fc1.shape[1] == 400, f"fc1 (the Linear with 120 outputs) takes {fc1.shape[1]} inputs, {FC1_SIZE}"
    for role, want in [("conv1", (6, 3, 5, 5)), ("conv2", (16, 6, 5, 5)), ("fc2", (84, 120)), ("fc3", (10, 84))]:
        got = tuple(layers[role][0].shape)
        assert got == want, f"{role}'s weight has shape {list(got)}, expected {list(want)}: LeNet is {_LENET}"
    return layers


def _lenet_reference(layers, x, *, relu_convs=True, relu_fcs=True, relu_out=False, softmax=False):
    """LeNet's forward from the student's own weights, and the usual slips."""

    def layer(role, t):
        op = F.conv2d if role.startswith("conv") else F.linear
        return op(t, *layers[role])

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


def _lenet_forward(model, x):
    return _lenet_call(lambda: model(x))


def _lenet_call(call):
    """call() (which runs LeNet), with a Linear layer's shape error turned into a message about fc1."""
    try:
        return call()
    except RuntimeError as exc:
        if "cannot be multiplied" in str(exc):
            raise AssertionError(f"LeNet's forward fails in a Linear layer: fc1 must take the flattened output "
                                 f"of the second pooling, {FC1_SIZE}") from None
        raise


def _check_lenet_values(impl, student, seed, batch):
    student.seed(seed)
    model = impl.LeNet()
    layers = _lenet_layers(model.state_dict())
    torch.manual_seed(seed)
    x = torch.randn(batch, 3, 32, 32)
    got = _lenet_forward(model, x)
    assert isinstance(got, torch.Tensor) and tuple(got.shape) == (batch, 10), \
        f"LeNet maps [{batch}, 3, 32, 32] to {_shape(got)}, expected [{batch}, 10]"
    with torch.no_grad():
        if torch.allclose(got, _lenet_reference(layers, x, softmax=True), rtol=1e-5, atol=1e-6):
            raise AssertionError("LeNet returns probabilities: return the logits of fc3 without softmax; "
                                 "nn.CrossEntropyLoss applies log-softmax itself")
        for kwargs, mistake in [
            (dict(relu_out=True), "there is a ReLU after fc3: the logits must be able to go negative"),
            (dict(relu_convs=False), "the ReLU after conv1/conv2 is missing: pool(relu(conv(x)))"),
            (dict(relu_fcs=False), "the ReLU after fc1/fc2 is missing"),
        ]:
            if torch.allclose(got, _lenet_reference(layers, x, **kwargs), rtol=1e-5, atol=1e-6):
                raise AssertionError(f"LeNet's output follows a known mistake: {mistake}")
        want = _lenet_reference(layers, x)
    assert_close(got, want, "LeNet's logits",
                 hint="pool(relu(conv1)), pool(relu(conv2)), flatten(1), relu(fc1), relu(fc2), fc3")
    assert got.requires_grad, "LeNet's output does not require grad: do not detach inside forward"


def _reference_epoch(model, batches, lr, momentum, *, zero_grad=True):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
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


def _small_net(seed, size):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, 10))


def _weights_match(state, model, same):
    want = model.state_dict()
    return set(state) == set(want) and all(same(state[k], want[k]) for k in want)


def _check_train_epoch(probes, seed, n_batches, batch, size, lr, momentum):
    """train_epoch on a small net against the loop zero_grad -> forward -> loss -> backward -> step."""
    torch.manual_seed(seed + 100)
    batches = [(torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))) for _ in range(n_batches)]
    # train_epoch(model, batches, SGD(model.parameters(), lr=lr, momentum=momentum), nn.CrossEntropyLoss())
    run = probes.train_epoch(_small_net(seed, size), batches, torch.optim.SGD, {"lr": lr, "momentum": momentum},
                             nn.CrossEntropyLoss())
    got, state = run["losses"][0], run["state"]
    reference = _small_net(seed, size)
    losses = _reference_epoch(reference, batches, lr, momentum)
    same = lambda a, b: torch.allclose(a, b, rtol=1e-5, atol=1e-6)  # noqa: E731
    params_ok = _weights_match(state, reference, same)
    if not params_ok:
        wrong = _small_net(seed, size)
        _reference_epoch(wrong, batches, lr, momentum, zero_grad=False)
        if _weights_match(state, wrong, same):
            raise AssertionError("the gradients pile up across batches: call optimizer.zero_grad() "
                                 "for every batch, before loss.backward()")
        if _weights_match(state, _small_net(seed, size), torch.equal):
            raise AssertionError("train_epoch did not change the weights: call loss.backward() and "
                                 "optimizer.step() for every batch")
    assert params_ok, ("after one epoch the weights differ from the loop zero_grad -> forward -> loss -> "
                       "backward -> step, once per batch, in the loader's order")
    assert isinstance(got, float), f"train_epoch returned {type_name(got)}, expected a Python float"
    mean = sum(losses) / len(losses)
    if abs(got - losses[-1]) < 1e-6 and abs(mean - losses[-1]) > 1e-4:
        raise AssertionError("train_epoch returned the last batch's loss: return the mean over the batches")
    assert_close(got, mean, "train_epoch's return value (the mean of the batch losses)", rtol=1e-5)


def _check_overfits(impl, probes, student, seed, n, steps):
    torch.manual_seed(seed)
    images, labels = torch.randn(n, 3, 32, 32), torch.randint(0, 10, (n,))
    student.seed(seed)
    model = impl.LeNet()
    # one Adam(model.parameters(), lr=1e-3), then train_epoch(model, [(images, labels)], optimizer,
    # nn.CrossEntropyLoss()) `steps` times
    losses = _lenet_call(lambda: probes.train_epoch(model, [(images, labels)], torch.optim.Adam, {"lr": 1e-3},
                                                    nn.CrossEntropyLoss(), epochs=steps)["losses"])
    assert losses[-1] < losses[0], f"the loss did not decrease at all in {steps} steps on one batch"
    correct = int((_lenet_forward(model, images).argmax(1) == labels).sum())
    assert losses[-1] < 0.05 and correct == n, \
        (f"after {steps} Adam steps on one batch of {n} images the loss is {losses[-1]:.3f} and {correct}/{n} "
         f"are right; a correctly wired LeNet memorises them (loss < 0.05, {n}/{n})")


@pytest.mark.task("ch14.model")
@pytest.mark.points(1)
def test_lenet_output_shape(impl):
    model = impl.LeNet()
    out = _lenet_forward(model, torch.randn(4, 3, 32, 32))
    assert isinstance(out, torch.Tensor), f"LeNet returned {type_name(out)}, expected a Tensor"
    assert out.shape == (4, 10), \
        f"LeNet maps [4, 3, 32, 32] to {list(out.shape)}, expected [4, 10]: one score per class per image"
    assert out.dtype == torch.float32, f"LeNet's output is {out.dtype}, expected torch.float32"


@pytest.mark.task("ch14.model")
@pytest.mark.points(1)
def test_lenet_parameter_count(impl):
    model = impl.LeNet()
    n = sum(p.numel() for p in model.parameters())
    # conv1 456 + conv2 2416 + fc1 48120 + fc2 10164 + fc3 850
    assert n == 62006, (f"LeNet has {n} parameters, expected 62006: conv(3,6,5), conv(6,16,5), "
                        "Linear(400,120), Linear(120,84), Linear(84,10); one MaxPool2d(2, 2) has none")


@pytest.mark.task("ch14.model")
@pytest.mark.points(1)
def test_lenet_layers(impl):
    _lenet_layers(impl.LeNet().state_dict())


@pytest.mark.task("ch14.model")
@pytest.mark.points(2)
def test_lenet_forward_values(impl, student):
    _check_lenet_values(impl, student, seed=0, batch=3)


@pytest.mark.task("ch14.model")
@pytest.mark.points(1)
def test_train_epoch_returns_a_float(probes):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    batches = [(torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))) for _ in range(2)]
    # train_epoch(model, batches, SGD(model.parameters(), lr=0.01), nn.CrossEntropyLoss())
    loss = probes.train_epoch(model, batches, torch.optim.SGD, {"lr": 0.01}, nn.CrossEntropyLoss())["losses"][0]
    assert isinstance(loss, float), \
        f"train_epoch returned {type_name(loss)}, expected a Python float (the mean of loss.item())"


@pytest.mark.task("ch14.model")
@pytest.mark.points(2)
def test_train_epoch_matches_the_loop(probes):
    _check_train_epoch(probes, seed=0, n_batches=3, batch=4, size=8, lr=0.1, momentum=0.9)


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
    # a model and a criterion that record the devices they are given (probes.py); the meta
    # device stands for a GPU: tensors with shapes and no data
    batches = [(torch.randn(2, 3, 8, 8), torch.tensor([1, 2])) for _ in range(2)]
    seen = probes.train_epoch_devices(batches, "meta")
    assert seen["images"] == ["meta", "meta"], \
        f"with device='meta' the model saw images on {seen['images']}: move every batch with images.to(device)"
    assert seen["labels"] == ["meta", "meta"], \
        f"with device='meta' the loss saw labels on {seen['labels']}: move the labels too, labels.to(device)"


@pytest.mark.task("ch14.model")
@pytest.mark.points(1)
def test_lenet_overfits_one_batch(impl, probes, student):
    _check_overfits(impl, probes, student, seed=0, n=8, steps=60)


# --------------------------------------------------------------------------- ch14.checkpoint

WEIGHTS_ONLY = ("the checkpoint cannot be loaded with weights_only=True: it holds pickled objects; save "
                "model.state_dict() and optimizer.state_dict(), not the model or the optimizer themselves")


def _weights_only_load(data):
    try:
        return torch.load(io.BytesIO(data), weights_only=True)
    except pickle.UnpicklingError:
        raise AssertionError(WEIGHTS_ONLY) from None


def _load(probes, data, model, *args, **kwargs):
    """probes.load_checkpoint(data, model, ...): load_checkpoint on a file holding `data`, beside your
    code; torch.load's refusal of pickled objects (its message carries terminal escapes) named."""
    try:
        return probes.load_checkpoint(data, model, *args, **kwargs)
    except Exception as exc:
        if "weights only load failed" in str(exc).lower():
            raise AssertionError(WEIGHTS_ONLY) from None
        raise


def _train_run(steps, seed=0, sizes=(4, 6, 3), optimizer=("Adam", {"lr": 0.01})):
    """A small model with BatchNorm buffers and its optimizer after `steps` steps."""
    torch.manual_seed(seed)
    n_in, n_hidden, n_out = sizes
    model = nn.Sequential(nn.Linear(n_in, n_hidden), nn.ReLU(), nn.Linear(n_hidden, n_out), nn.BatchNorm1d(n_out))
    name, kwargs = optimizer
    opt = getattr(torch.optim, name)(model.parameters(), **kwargs)
    torch.manual_seed(100 + seed)
    x, y = torch.randn(8, n_in), torch.randint(0, n_out, (8,))
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model, opt, (x, y)


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


def _check_saved_state_dicts(probes, run, epoch):
    model, optimizer, _ = run
    saved = _weights_only_load(_save(probes, model, optimizer, epoch))
    assert isinstance(saved, dict) and set(saved) == {"model", "optimizer", "epoch"}, \
        (f"the checkpoint should be a dict with exactly the keys 'model', 'optimizer', 'epoch', got "
         f"{sorted(map(str, saved)) if isinstance(saved, dict) else type(saved).__name__}")
    assert type(saved["epoch"]) is int and saved["epoch"] == epoch, \
        f"checkpoint['epoch'] is {saved['epoch']!r:.40}, expected the int {epoch}"
    want = model.state_dict()
    assert isinstance(saved["model"], dict) and set(saved["model"]) == set(want), \
        ("checkpoint['model'] should be model.state_dict() (parameters and buffers such as "
         "BatchNorm's running_mean)")
    for key, value in want.items():
        assert torch.equal(saved["model"][key], value), f"checkpoint['model'][{key!r}] differs from the model's"
    assert isinstance(saved["optimizer"], dict) and "state" in saved["optimizer"] \
        and "param_groups" in saved["optimizer"], "checkpoint['optimizer'] should be optimizer.state_dict()"


def _check_round_trip(probes, run, fresh, epoch, moments):
    """Save `run`, load into `fresh` (copies beside your code, then the same state here), and check
    that one more step after resuming equals one more step of uninterrupted training."""
    model, optimizer, (x, y) = run
    fresh_model, fresh_optimizer, _ = fresh
    data = _save(probes, model, optimizer, epoch)
    # load_checkpoint(path, fresh_model, fresh_optimizer) on copies; then the same state here
    got = _load_into(_load(probes, data, fresh_model, _sent(fresh_optimizer)), fresh_model,
                     fresh_optimizer)
    assert got == epoch and isinstance(got, int), \
        f"load_checkpoint returned {got!r:.40}, expected the saved epoch {epoch}"
    for (name, a), b in zip(model.state_dict().items(), fresh_model.state_dict().values()):
        assert torch.equal(a, b), f"after load_checkpoint the model's {name} differs from the saved one"
    first = next(iter(model.parameters()))
    state = fresh_optimizer.state.get(next(iter(fresh_model.parameters())), {})
    kind = type(optimizer).__name__
    assert moments[0] in state, (f"{kind}'s state ({', '.join(moments)}) was not restored: load "
                                 "checkpoint['optimizer'] into the optimizer with optimizer.load_state_dict")
    assert_close(state[moments[0]], optimizer.state[first][moments[0]], f"{kind}'s restored {moments[0]}")
    assert fresh_optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"], \
        "the optimizer's learning rate was not restored"
    for m, opt in ((model, optimizer), (fresh_model, fresh_optimizer)):
        opt.zero_grad()
        F.cross_entropy(m(x), y).backward()
        opt.step()
    for (name, a), b in zip(model.state_dict().items(), fresh_model.state_dict().values()):
        assert_close(b, a, f"{name} one step after resuming",
                     hint="resuming must continue exactly like uninterrupted training")


@pytest.mark.task("ch14.checkpoint")
@pytest.mark.points(1)
def test_checkpoint_file_holds_a_dict(probes):
    model = nn.Linear(3, 2)
    # save_checkpoint(path, model, SGD(model.parameters(), lr=0.1), 3): the bytes of the file at path
    data = probes.save_checkpoint(model, (torch.optim.SGD, {"lr": 0.1}, None), 3)
    assert data is not None, "save_checkpoint(path, ...) did not write the file at path"
    saved = _weights_only_load(data)
    assert isinstance(saved, dict) and set(saved) == {"model", "optimizer", "epoch"}, \
        (f"the checkpoint should be a dict with keys 'model', 'optimizer', 'epoch', "
         f"got {sorted(map(str, saved)) if isinstance(saved, dict) else type(saved).__name__}")
    epoch = _load(probes, data, nn.Linear(3, 2))["epoch"]  # load_checkpoint(path, nn.Linear(3, 2))
    assert epoch == 3, f"load_checkpoint returned {epoch!r:.40}, expected the saved epoch 3"


@pytest.mark.task("ch14.checkpoint")
@pytest.mark.points(1)
def test_checkpoint_holds_state_dicts_not_modules(probes):
    _check_saved_state_dicts(probes, _train_run(2), epoch=2)


@pytest.mark.task("ch14.checkpoint")
@pytest.mark.points(2)
def test_round_trip_resumes_training_exactly(probes):
    _check_round_trip(probes, _train_run(3), _train_run(0, seed=5), epoch=7,
                      moments=("exp_avg", "exp_avg_sq", "step"))


@pytest.mark.task("ch14.checkpoint")
@pytest.mark.points(1)
def test_load_without_optimizer(probes):
    model, optimizer, _ = _train_run(1)
    data = _save(probes, model, optimizer, 4)
    fresh, _, _ = _train_run(0, seed=3)
    epoch = _load_into(_load(probes, data, fresh), fresh)  # load_checkpoint(path, fresh)
    assert epoch == 4, f"load_checkpoint(path, model) returned {epoch!r:.40}, expected 4"
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values())), \
        "load_checkpoint(path, model) without an optimizer did not restore the model"


@pytest.mark.task("ch14.checkpoint")
@pytest.mark.points(1)
def test_map_location_is_passed_to_torch_load(probes):
    model, optimizer, _ = _train_run(1)
    data = _save(probes, model, optimizer, 1)
    # load_checkpoint(path, model, map_location=a function that records its calls)
    calls = _load(probes, data, _train_run(0)[0], record_map_location=True)["map_location_calls"]
    assert calls, ("map_location was ignored: pass it on, torch.load(path, map_location=map_location, ...), "
                   "so a checkpoint saved on a GPU loads on a CPU-only machine")


# --------------------------------------------------------------------------- ch14.hooks

LATE_BINDING = ("only the last name is in the dict: every hook looks up the loop variable `name` when it runs "
                "(late binding), after the loop has ended; bind it when you define the hook, e.g. "
                "def hook(module, inputs, output, name=name)")


def _nested_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Flatten(),
        nn.Linear(4 * 3 * 3, 6), nn.ReLU(), nn.Linear(6, 2),
    )


def _check_activations(impl, model, names, x):
    """capture_activations(model, names, x) against each named layer's output and input, computed
    here by running the model's modules layer by layer (model is built in the test)."""
    outputs, inputs = {}, {}
    modules = dict(model.named_modules())

    def record(name):
        def hook(module, args, output):
            outputs[name], inputs[name] = output.detach(), args[0].detach()
        return hook

    handles = [modules[n].register_forward_hook(record(n)) for n in names]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    acts = impl.capture_activations(model, names, x)
    assert isinstance(acts, dict), f"capture_activations returned {type_name(acts)}, expected a dict"
    if len(names) > 1 and list(acts) == [names[-1]]:
        raise AssertionError(LATE_BINDING)
    assert set(acts) == set(names), \
        f"capture_activations returned the keys {sorted(map(str, acts))[:8]}, expected {names}"
    for n in names:
        got = acts[n]
        if isinstance(got, (tuple, list)) or (isinstance(got, torch.Tensor) and got.shape == inputs[n].shape
                                              and got.shape != outputs[n].shape):
            raise AssertionError(f"the activation of {n!r} is the layer's input: a forward hook is called as "
                                 "hook(module, inputs, output); store output")
        assert isinstance(got, torch.Tensor), f"the activation of {n!r} is {type_name(got)}, expected a Tensor"
        assert_close(got, outputs[n], f"the activation of layer {n!r}")


@pytest.mark.task("ch14.hooks")
@pytest.mark.points(1)
def test_capture_activations_shapes(impl):
    model = nn.Sequential()
    model.add_module("conv", nn.Conv2d(3, 4, 3))
    model.add_module("flat", nn.Flatten())
    model.add_module("fc", nn.Linear(4 * 6 * 6, 5))
    acts = impl.capture_activations(model, ["conv", "fc"], torch.randn(2, 3, 8, 8))
    assert isinstance(acts, dict), f"capture_activations returned {type_name(acts)}, expected a dict"
    if list(acts) == ["fc"]:
        raise AssertionError(LATE_BINDING)
    assert set(acts) == {"conv", "fc"}, \
        f"capture_activations should return a dict keyed by the layer names ['conv', 'fc'], got the keys " \
        f"{sorted(map(str, acts))[:8]}"
    assert _shape(acts["conv"]) == [2, 4, 6, 6], \
        f"activation of 'conv' has shape {_shape(acts['conv'])}, expected [2, 4, 6, 6]"
    assert _shape(acts["fc"]) == [2, 5], f"activation of 'fc' has shape {_shape(acts['fc'])}, expected [2, 5]"


@pytest.mark.task("ch14.hooks")
@pytest.mark.points(2)
def test_activations_are_the_layer_outputs(impl):
    torch.manual_seed(0)
    _check_activations(impl, _nested_net(), ["0.0", "0", "2", "4"], torch.randn(2, 3, 8, 8))


@pytest.mark.task("ch14.hooks")
@pytest.mark.points(1)
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
    assert not run["hooks"], ("the forward pass raised and a hook stayed registered: remove the handles in a "
                              "try/finally block, so a failed forward does not leave hooks behind")


@pytest.mark.task("ch14.hooks")
@pytest.mark.points(1)
def test_activations_are_detached(impl):
    acts = impl.capture_activations(_nested_net(), ["2"], torch.randn(2, 3, 8, 8))
    assert isinstance(acts, dict) and "2" in acts, "capture_activations(model, ['2'], x) has no entry '2'"
    assert not acts["2"].requires_grad, ("the stored activation is still attached to the graph: store "
                                         "output.detach(), so keeping activations does not keep every "
                                         "intermediate result of the forward pass alive")


# --------------------------------------------------------------------------- ch14.predict

def _noisy_net(seed=0, width=16, p=0.5):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(p), nn.Linear(width, 4))


def _check_predict_eval(probes, seed, n, width=16, p=0.5):
    model = _noisy_net(seed, width, p)
    with torch.no_grad():  # give BatchNorm running statistics unlike one batch's own
        for _ in range(5):
            model(torch.randn(32, 6) * 3 + 1)
    model.train()
    x = torch.randn(n, 6)
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
    assert isinstance(first, torch.Tensor) and first.shape == (n,), \
        f"predict returned {_shape(first)} for {n} samples, expected [{n}]"
    assert torch.equal(first, second), ("predict gave different answers for the same input: dropout is still "
                                        "active; call model.eval() before the forward pass")
    assert torch.equal(first.cpu(), want), \
        ("predict's classes differ from the arg-max of the model's eval-mode scores: call model.eval(), "
         "then take argmax over dim=1")


@pytest.mark.task("ch14.predict")
@pytest.mark.points(1)
def test_predict_shape_and_dtype(impl):
    model = nn.Linear(6, 4)
    out = impl.predict(model, torch.randn(5, 6))
    assert isinstance(out, torch.Tensor), f"predict returned {type_name(out)}, expected a Tensor"
    assert out.shape == (5,), f"predict returned shape {list(out.shape)} for 5 samples, expected [5]: " \
                              "one class index per sample (arg-max over dim=1)"
    assert out.dtype == torch.int64, f"predict returned {out.dtype}, expected class indices (torch.int64)"


@pytest.mark.task("ch14.predict")
@pytest.mark.points(2)
def test_predict_uses_eval_mode(probes):
    _check_predict_eval(probes, seed=0, n=20)


@pytest.mark.task("ch14.predict")
@pytest.mark.points(1)
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
