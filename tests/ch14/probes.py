"""Chapter 14 probes: run beside the student's code, return plain data to the tests.

A probe is a function `name(impl, *args)`; `impl` is the student's chapter module. It may
build spies and callbacks (anything that has to run inside the student's process) and
returns numbers, strings, tensors, lists or dicts. It never holds an expected value: the
test compares. This file ships with the public tests.

Models the tests send are copies: the probes hand them to the student's functions and
send back what became of them (state_dict, training mode, hooks left).
"""
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn


class ForwardFailed(Exception):
    """Raised by the models below; nothing in a solution raises it."""


def _training_modes(model):
    return [m.training for m in model.modules()]


def _threads_one():
    """One intra-op thread, as in every test process (`grader check --split` does not set it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    return threads


# --------------------------------------------------------------------------- ch14.model

def train_epoch(impl, model, loader, optimizer_cls, optimizer_kwargs, criterion, *, epochs=1, **kwargs):
    """optimizer_cls(model.parameters(), **optimizer_kwargs) once, then
    impl.train_epoch(model, loader, optimizer, criterion, **kwargs) `epochs` times.
    `model` is a module the test sent or a handle on the student's own (e.g. impl.LeNet()).
    Returns train_epoch's return values, the model's state_dict and training mode afterwards."""
    optimizer = optimizer_cls(model.parameters(), **optimizer_kwargs)
    threads = _threads_one()
    try:
        losses = [impl.train_epoch(model, loader, optimizer, criterion, **kwargs) for _ in range(epochs)]
    finally:
        torch.set_num_threads(threads)
    return {"losses": losses, "state": model.state_dict(), "training": model.training}


class _DeviceSpy(nn.Module):
    """Records the device of its inputs; computes on the CPU so the loss stays real. Moving it
    (model.to(device), as code that puts the model on the device may do) is recorded and ignored."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(10))
        self.seen = []

    def _apply(self, fn, *args, **kwargs):
        return self

    def forward(self, x):
        self.seen.append(x.device.type)
        return self.w.expand(x.shape[0], 10)


class _LabelSpy(nn.Module):
    """A criterion that records the device of the labels it is given; moving it is ignored."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def _apply(self, fn, *args, **kwargs):
        return self

    def forward(self, out, labels):
        self.seen.append(labels.device.type)
        return (out ** 2).sum()


def train_epoch_devices(impl, loader, device):
    """impl.train_epoch(spy, loader, SGD, criterion, device=device) with a model and a criterion
    that record the device of the images and of the labels they are given."""
    model, criterion = _DeviceSpy(), _LabelSpy()
    impl.train_epoch(model, loader, torch.optim.SGD(model.parameters(), lr=0.1), criterion, device=device)
    return {"images": list(model.seen), "labels": list(criterion.seen)}


# --------------------------------------------------------------------------- ch14.checkpoint

def _optimizer(model, optimizer):
    """optimizer = (class, keyword arguments, state_dict or None), rebuilt around the model."""
    optimizer_cls, optimizer_kwargs, optimizer_state = optimizer
    built = optimizer_cls(model.parameters(), **optimizer_kwargs)
    if optimizer_state is not None:
        built.load_state_dict(optimizer_state)
    return built


def save_checkpoint(impl, model, optimizer, epoch):
    """impl.save_checkpoint(path, model, optimizer, epoch) into a fresh folder; `optimizer` is
    (class, keyword arguments, state_dict or None), built around the model. Returns the
    bytes of the file at path, or None when there is no file there."""
    built = _optimizer(model, optimizer)
    folder = Path(tempfile.mkdtemp(prefix="ch14-"))
    try:
        path = folder / "ckpt.pth"
        impl.save_checkpoint(path, model, built, epoch)
        return path.read_bytes() if path.is_file() else None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def load_checkpoint(impl, data, model, optimizer=None, *, record_map_location=False, **kwargs):
    """impl.load_checkpoint(path, model[, optimizer], **kwargs) on a file holding `data`; the
    optimizer is passed only when given, as (class, keyword arguments, state_dict or None),
    built around the model. record_map_location=True passes map_location=a function that
    records the locations it is called with and returns the storage unchanged.
    Returns the return value, the model's and the optimizer's state_dict afterwards, and the
    recorded locations."""
    calls = []
    if record_map_location:
        def to_cpu(storage, location):
            calls.append(str(location))
            return storage
        kwargs["map_location"] = to_cpu
    built = _optimizer(model, optimizer) if optimizer is not None else None
    folder = Path(tempfile.mkdtemp(prefix="ch14-"))
    try:
        path = folder / "ckpt.pth"
        path.write_bytes(data)
        epoch = impl.load_checkpoint(path, model, *([built] if built is not None else []), **kwargs)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"epoch": epoch, "model": model.state_dict(),
            "optimizer": built.state_dict() if built is not None else None, "map_location_calls": calls}


# --------------------------------------------------------------------------- ch14.hooks

def _hooks_left(model):
    return {name: len(m._forward_hooks) for name, m in model.named_modules() if m._forward_hooks}


def hooks_left(impl, model, layer_names, x):
    """impl.capture_activations(model, layer_names, x), then the forward hooks still registered
    on the model: {module name: count}."""
    impl.capture_activations(model, layer_names, x)
    return _hooks_left(model)


class _Boom(nn.Module):
    def forward(self, x):
        raise ForwardFailed("boom")


def hooks_left_when_forward_raises(impl, layer_names, x):
    """impl.capture_activations on nn.Sequential(nn.Linear(3, 3), a layer that raises
    ForwardFailed): whether ForwardFailed came out, and the forward hooks still registered."""
    model = nn.Sequential(nn.Linear(3, 3), _Boom())
    raised = False
    try:
        impl.capture_activations(model, layer_names, x)
    except ForwardFailed:
        raised = True
    return {"raised": raised, "hooks": _hooks_left(model)}


# --------------------------------------------------------------------------- ch14.predict

def predict(impl, model, x, seeds=(None,)):
    """impl.predict(model, x) once per seed, torch.manual_seed(seed) before each call (None: no
    seeding). Returns the predictions, the model's state_dict (buffers such as BatchNorm's
    running statistics included) and the training mode of every module afterwards."""
    outs = []
    for seed in seeds:
        if seed is not None:
            torch.manual_seed(seed)
        outs.append(impl.predict(model, x))
    return {"outs": outs, "state": model.state_dict(), "training": _training_modes(model)}


class _GradSpy(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 4)
        self.grad_enabled = []

    def forward(self, x):
        self.grad_enabled.append(torch.is_grad_enabled())
        return self.linear(x)


def predict_grad_mode(impl, x):
    """impl.predict on a Linear(3, 4) that records the grad mode of its forward passes.
    Returns the prediction, the grad modes seen, and the grad mode after predict returned."""
    model = _GradSpy()
    out = impl.predict(model, x)
    return {"out": out, "grad_enabled": list(model.grad_enabled), "grad_enabled_after": torch.is_grad_enabled()}


class _FailingForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)

    def forward(self, x):
        raise ForwardFailed("forward failed")


def predict_when_forward_raises(impl, x):
    """impl.predict on a model in training mode whose forward raises ForwardFailed: whether
    ForwardFailed came out, and the model's training mode afterwards."""
    model = _FailingForward()
    model.train()
    raised = False
    try:
        impl.predict(model, x)
    except ForwardFailed:
        raised = True
    return {"raised": raised, "training": model.training}
