"""Chapter 09 probes: run beside the student's code, return plain data to the tests.

A probe is a function `name(impl, *args)`; `impl` is the student's chapter module. It may
build spies and callbacks (anything that has to run inside the student's process) and
returns numbers, strings, tensors, lists or dicts. It never holds an expected value: the
test compares. This file ships with the public tests.
"""
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def gradients(impl, name, args, wrt, weights=None):
    """Call out = impl.<name>(*args) with args[i] (i in `wrt`) made fresh leaves; return
    whether it requires grad, and autograd's gradients of (out * weights).sum()
    (of out.sum() when `weights` is None) for each of those leaves (None where none reaches it)."""
    args = list(args)
    leaves = []
    for i in wrt:
        args[i] = args[i].detach().clone().requires_grad_(True)
        leaves.append(args[i])
    out = getattr(impl, name)(*args)
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        return {"requires_grad": False, "grads": None}
    objective = out.sum() if weights is None else (out * weights).sum()
    grads = torch.autograd.grad(objective, leaves, allow_unused=True)
    return {"requires_grad": True, "grads": list(grads)}


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
