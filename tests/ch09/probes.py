"""Chapter 09 probes: run beside the student's code, return plain data to the tests.

A probe is a function `name(impl, *args)`; `impl` is the student's chapter module. It may
build spies and callbacks (anything that has to run inside the student's process) and
returns numbers, strings, tensors, lists or dicts. It never holds an expected value: the
test compares. This file ships with the public tests.
"""
import contextlib

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

# The built-ins a function written "by hand" must not call: (owner, attribute, name in messages).
_BUILT_INS = [
    (torch, "softmax", "torch.softmax"),
    (torch, "log_softmax", "torch.log_softmax"),
    (torch.special, "softmax", "torch.special.softmax"),
    (torch.special, "log_softmax", "torch.special.log_softmax"),
    (F, "softmax", "F.softmax (or nn.Softmax)"),
    (F, "log_softmax", "F.log_softmax (or nn.LogSoftmax)"),
    (torch.Tensor, "softmax", "Tensor.softmax"),
    (torch.Tensor, "log_softmax", "Tensor.log_softmax"),
    (F, "cross_entropy", "F.cross_entropy (or nn.CrossEntropyLoss)"),
    (F, "nll_loss", "F.nll_loss (or nn.NLLLoss)"),
]


@contextlib.contextmanager
def _spying(impl):
    """Every built-in of _BUILT_INS (and any name the student's module bound to one of them)
    replaced by a wrapper that records its name, outermost calls only, then calls it."""
    called, depth = [], [0]

    def spy(original, label):
        def wrapper(*args, **kwargs):
            if depth[0] == 0:
                called.append(label)
            depth[0] += 1
            try:
                return original(*args, **kwargs)
            finally:
                depth[0] -= 1
        return wrapper

    restore, wrappers = [], {}
    try:
        for owner, name, label in _BUILT_INS:
            original = getattr(owner, name)
            restore.append((owner, name, name in vars(owner), vars(owner).get(name)))
            wrappers[id(original)] = spy(original, label)
            setattr(owner, name, wrappers[id(original)])
        for name, value in list(vars(impl).items()):
            if id(value) in wrappers:
                restore.append((impl, name, True, value))
                setattr(impl, name, wrappers[id(value)])
        yield called
    finally:
        for owner, name, had, value in reversed(restore):
            if had:
                setattr(owner, name, value)
            else:
                delattr(owner, name)


def by_hand(impl, name, args, wrt=(), weights=None):
    """out = impl.<name>(*args) with torch's softmax, log-softmax and cross-entropy built-ins
    spied on. With `wrt`, args[i] (i in wrt) are made fresh leaves first, and autograd's
    gradients of (out * weights).sum() (out.sum() when weights is None) are taken for them.
    Returns {"out", "called": the built-ins the call used (outermost calls, in order),
    "requires_grad", "grads": one per leaf, None where none reached it}."""
    args = list(args)
    leaves = []
    for i in wrt:
        args[i] = args[i].detach().clone().requires_grad_(True)
        leaves.append(args[i])
    with _spying(impl) as called:
        out = getattr(impl, name)(*args)
    seen = {"out": out, "called": list(called), "requires_grad": False, "grads": None}
    if leaves and isinstance(out, torch.Tensor) and out.requires_grad:
        objective = out.sum() if weights is None else (out * weights).sum()
        seen["requires_grad"] = True
        seen["grads"] = list(torch.autograd.grad(objective, leaves, allow_unused=True))
    return seen


def overfit_logits(impl, x, y, steps, lr):
    """A new MnistMLP trained with full-batch Adam(lr) and CrossEntropyLoss for `steps` steps
    on (x, y); its logits for x afterwards."""
    model = impl.MnistMLP()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    criterion = nn.CrossEntropyLoss()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return model(x)


def train_epochs(impl, model, loader, optimizer_cls, optimizer_kwargs, criterion, epochs, eval_loader=None):
    """train_epoch(model, loader, optimizer, criterion) `epochs` times with one optimizer
    optimizer_cls(model.parameters(), **optimizer_kwargs); then, with `eval_loader`,
    evaluate(model, eval_loader). Returns the values they returned and the trained weights."""
    optimizer = optimizer_cls(model.parameters(), **optimizer_kwargs)
    losses = [impl.train_epoch(model, loader, optimizer, criterion) for _ in range(epochs)]
    accuracy = impl.evaluate(model, eval_loader) if eval_loader is not None else None
    return {"losses": losses, "accuracy": accuracy,
            "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}


class ModeSpy(nn.Module):
    """A linear classifier that records, at each forward, training mode and grad mode."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(784, 10)
        self.seen = []

    def forward(self, x):
        self.seen.append((self.training, torch.is_grad_enabled()))
        return self.linear(x.view(-1, 784))


def modes_seen(impl, function, x, y, batch_size, training):
    """Run train_epoch (with SGD and CrossEntropyLoss) or evaluate on a ModeSpy put in
    training mode `training` first; the (training, grad enabled) pairs seen at each forward."""
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size)
    model = ModeSpy()
    model.train(training)
    if function == "train_epoch":
        impl.train_epoch(model, loader, torch.optim.SGD(model.parameters(), lr=0.01), nn.CrossEntropyLoss())
    elif function == "evaluate":
        impl.evaluate(model, loader)
    else:
        raise ValueError(f"unknown function {function!r}")
    return model.seen
