"""Chapter 10 probes: run beside the student's code, return plain data to the tests.

A probe is a function `name(impl, *args)`; `impl` is the student's chapter module. It may
build spies and callbacks (anything that has to run inside the student's process) and
returns numbers, strings, tensors, lists or dicts. It never holds an expected value: the
test compares. This file ships with the public tests.

Device placement is observed on PyTorch's `meta` device too, where tensors have a shape
and a device but no data: a tiny model, a criterion, an optimizer and labels that refuse
to meet a tensor of another device stop the run with `Misplaced`, and the probe reports
which one was left behind. Reading a value from a meta tensor (`loss.item()`, the count
of correct predictions) is impossible, so the probe labels answer such reads with 0.
"""
import os
import traceback
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def conv_output_sizes(impl, cases):
    """conv_output_size(size, kernel_size, padding=padding, stride=stride) for each
    (size, kernel_size, padding, stride) in `cases`, in order."""
    return [impl.conv_output_size(n, k, padding=p, stride=s) for n, k, p, s in cases]


# What a machine with one CUDA GPU answers to the usual queries. A call not faked here (one
# that would start CUDA) fails with this machine's own error, which the probe reports.
_GPU = SimpleNamespace(name="Probe GPU", major=8, minor=0, total_memory=16 << 30, multi_processor_count=80)
_ONE_GPU = {
    "device_count": lambda: 1,
    "current_device": lambda: 0,
    "get_device_name": lambda device=None: _GPU.name,
    "get_device_capability": lambda device=None: (_GPU.major, _GPU.minor),
    "get_device_properties": lambda device=None: _GPU,
    "set_device": lambda device: None,
    "synchronize": lambda device=None: None,
    "empty_cache": lambda: None,
    "memory_allocated": lambda device=None: 0,
    "memory_reserved": lambda device=None: 0,
}


def get_device_when_cuda(impl, available):
    """What get_device() returns while torch.cuda answers as a machine with one CUDA GPU
    (`available`) or none: is_available, and with a GPU also the queries in _ONE_GPU.
    Returns {"device": what it returned, "error": None, "in_torch_cuda": False} or, when it
    raised, {"device": None, "error": "ExceptionType: first line", "in_torch_cuda": whether
    it was raised inside torch.cuda} (another CUDA call, which needs a real driver)."""
    saved = {name: getattr(torch.cuda, name) for name in ["is_available", *_ONE_GPU]}
    torch.cuda.is_available = lambda: bool(available)
    if available:
        for name, fake in _ONE_GPU.items():
            setattr(torch.cuda, name, fake)
    try:
        return {"device": impl.get_device(), "error": None, "in_torch_cuda": False}
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 - reported to the test, which judges it
        files = [frame.filename for frame in traceback.extract_tb(exc.__traceback__)]
        cuda_dir = os.path.join("torch", "cuda", "")
        return {"device": None, "error": f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}",
                "in_torch_cuda": any(cuda_dir in name for name in files)}
    finally:
        for name, real in saved.items():
            setattr(torch.cuda, name, real)


def backward(impl, model, x, power=1):
    """model(x).pow(power).sum().backward() on the student's model (a handle from the test);
    the test then reads the parameters' .grad through the handle."""
    model(x).pow(power).sum().backward()


def train_epoch_result(impl, model, loader, optimizer, criterion, device, evaluate=False):
    """train_epoch on these objects (the student's copies of the test's: the optimizer holds
    the model's parameters); then, with `evaluate`, evaluate(model, loader, device).
    Returns what they returned and the model's weights afterwards."""
    loss = impl.train_epoch(model, loader, optimizer, criterion, device)
    accuracy = impl.evaluate(model, loader, device) if evaluate else None
    return {"loss": loss, "accuracy": accuracy,
            "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}


def train_and_predict(impl, net, x_train, y_train, x_test, epochs, batch_size, lr, momentum, order_seed):
    """The student's CnnNet `net` (a handle from the test) trained with SGD(lr, momentum) and
    cross-entropy for `epochs` passes over (x_train, y_train) in batches of `batch_size`,
    shuffled by a generator seeded with `order_seed`; its logits for x_test afterwards."""
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum)
    order = torch.Generator().manual_seed(order_seed)
    for _ in range(epochs):
        perm = torch.randperm(len(x_train), generator=order)
        for i in range(0, len(x_train), batch_size):
            idx = perm[i:i + batch_size]
            loss = F.cross_entropy(net(x_train[idx]), y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return net(x_test).detach()


# --------------------------------------------------------------------------- placement spies

class Misplaced(Exception):
    """A tensor met a spy on another device than the one the run is meant for."""

    def __init__(self, what, found, want):
        super().__init__(f"{what} on {found}, expected {want}")
        self.what, self.found, self.want = what, found, want


class Labels(torch.Tensor):
    """Integer labels that refuse to meet a tensor on another device.

    On the meta device, reading a value (`.item()`, `int()`, `.tolist()`) gives 0, so the
    bookkeeping of a training or evaluation loop runs; the placement is what is observed.
    """

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        with torch._C.DisableTorchFunctionSubclass():
            if func in (torch.Tensor.item, torch.Tensor.__int__, torch.Tensor.__index__,
                        torch.Tensor.__float__, torch.Tensor.tolist) and args[0].device.type == "meta":
                if func is torch.Tensor.tolist:
                    return torch.zeros(args[0].shape, dtype=torch.long).tolist()
                return 0.0 if func is torch.Tensor.__float__ else 0
            mine, others = set(), set()

            def visit(a):
                if isinstance(a, torch.Tensor):
                    if a.dim() > 0:
                        (mine if isinstance(a, Labels) else others).add(a.device.type)
                elif isinstance(a, (list, tuple)):
                    for b in a:
                        visit(b)

            visit(args)
            visit(list(kwargs.values()))
        if mine and others and mine != others:
            raise Misplaced("labels", "/".join(sorted(mine)), "/".join(sorted(others)))
        return super().__torch_function__(func, types, args, kwargs)


class ProbeNet(nn.Module):
    """A tiny classifier (4 features, 3 classes) that stops at a tensor not on `want` and
    records (training, grad enabled) at every forward."""

    def __init__(self, want):
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.want = want
        self.calls = []

    def forward(self, x):
        if self.linear.weight.device != self.want:
            raise Misplaced("model", self.linear.weight.device.type, self.want.type)
        if x.device != self.want:
            raise Misplaced("inputs", x.device.type, self.want.type)
        self.calls.append((self.training, torch.is_grad_enabled()))
        return self.linear(x)


class ProbeLoss(nn.Module):
    def __init__(self, want):
        super().__init__()
        self.want = want

    def forward(self, outputs, targets):
        if targets.device != self.want:
            raise Misplaced("targets", targets.device.type, self.want.type)
        return F.cross_entropy(outputs, targets)


class ProbeOptimizer:
    """Stands in for an optimizer, which the meta device cannot run: counts zero_grad/step."""

    def __init__(self, model):
        self.model = model
        self.steps = 0
        self.zeroed = 0

    def zero_grad(self, set_to_none=True):
        self.zeroed += 1
        self.model.zero_grad(set_to_none=set_to_none)

    def step(self, closure=None):
        self.steps += 1


class Batches:
    """A loader: a fixed list of (inputs, labels) batches on the CPU, with a dataset length."""

    def __init__(self, batches):
        self.batches = batches
        self.dataset = list(range(sum(len(y) for _, y in batches)))
        self.batch_size = len(batches[0][1])

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


def _placement(run, model, optimizer=None):
    seen = {"misplaced": None, "result": None}
    try:
        seen["result"] = run()
    except Misplaced as exc:
        seen["misplaced"] = {"what": exc.what, "found": exc.found, "want": exc.want}
    seen["forward_calls"] = len(model.calls)
    seen["steps"] = optimizer.steps if optimizer is not None else None
    seen["parameter_devices"] = [p.device.type for p in model.parameters()]
    return seen


def train_epoch_placement(impl, device, n_batches, batch_size):
    """train_epoch(ProbeNet built on the CPU, CPU batches of Labels, ProbeOptimizer,
    ProbeLoss, device). Returns the first misplaced tensor (or None), what train_epoch
    returned, the number of forwards and of optimizer steps, and the parameters' devices."""
    device = torch.device(device)
    model = ProbeNet(device)
    optimizer = ProbeOptimizer(model)
    loader = _batches(n_batches, batch_size)
    return _placement(lambda: impl.train_epoch(model, loader, optimizer, ProbeLoss(device), device),
                      model, optimizer)


def evaluate_placement(impl, device, n_batches, batch_size):
    """evaluate(ProbeNet built on the CPU, CPU batches of Labels, device), observed as in
    train_epoch_placement."""
    device = torch.device(device)
    model = ProbeNet(device)
    loader = _batches(n_batches, batch_size)
    return _placement(lambda: impl.evaluate(model, loader, device), model)


def _batches(n_batches, batch_size):
    return Batches([(torch.randn(batch_size, 4), torch.randint(0, 3, (batch_size,)).as_subclass(Labels))
                    for _ in range(n_batches)])


def forward_modes(impl, function, x, y, batch_size, training, lr=0.1):
    """Run train_epoch (SGD(lr), CrossEntropyLoss) or evaluate on the CPU with a ProbeNet put
    in training mode `training` first, on (x [N, 4], y [N]) in batches of `batch_size`;
    the (training, grad enabled) pairs seen at each forward."""
    cpu = torch.device("cpu")
    model = ProbeNet(cpu)
    model.train(training)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size)
    if function == "train_epoch":
        impl.train_epoch(model, loader, torch.optim.SGD(model.parameters(), lr=lr), nn.CrossEntropyLoss(), cpu)
    elif function == "evaluate":
        impl.evaluate(model, loader, cpu)
    else:
        raise ValueError(f"unknown function {function!r}")
    return model.calls
