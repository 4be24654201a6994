"""Chapter 05 probes: run beside the student's code, return plain data to the tests.

A probe is a function `name(impl, *args)`; `impl` is the student's chapter module. It may
build spies and callbacks (anything that has to run inside the student's process) and
returns numbers, strings, tensors, lists or dicts. It never holds an expected value: the
test compares. This file ships with the public tests.

The training probes hand train() the lecture's own model, a plain nn.Linear(1, 1), instead
of the student's LinearModel: train() is then observed alone, whatever LinearModel.forward
does (it has tests of its own).
"""
import torch
from torch import nn


def train_lecture_model(impl, start, x, y, **kwargs):
    """impl.train(model, x, y, **kwargs) with model = nn.Linear(1, 1) loaded with `start`.
    Returns what train returned and the layer's state_dict after training."""
    model = nn.Linear(1, 1)
    model.load_state_dict(start)
    losses = impl.train(model, x, y, **kwargs)
    return losses, dict(model.state_dict())


def optimizer_use(impl, start, x, y, epochs, lr):
    """train() with a spy SGD class as optimizer_cls, on nn.Linear(1, 1) loaded with `start`.
    Returns {"built": optimizers built, "steps": step() calls, "lrs": the lr of each
    optimizer built, "params": how many of the model's parameters each optimizer holds,
    "sizes": how many parameters each optimizer holds in all}."""
    seen = {"built": 0, "steps": 0, "lrs": [], "params": [], "sizes": []}
    model = nn.Linear(1, 1)
    model.load_state_dict(start)
    mine = {id(p) for p in model.parameters()}

    class Spy(torch.optim.SGD):
        def __init__(self, params, *args, **kwargs):
            super().__init__(params, *args, **kwargs)
            held = [p for group in self.param_groups for p in group["params"]]
            seen["built"] += 1
            seen["lrs"].append(float(self.param_groups[0]["lr"]))
            seen["params"].append(sum(id(p) in mine for p in held))
            seen["sizes"].append(len(held))

        def step(self, closure=None):
            seen["steps"] += 1
            return super().step(closure)

    impl.train(model, x, y, epochs=epochs, lr=lr, optimizer_cls=Spy)
    return seen


def outputs(impl, net, x, depths):
    """The network `net` (a handle from the test) called on x once per entry of `depths`, in
    order: net(x) for None, net(x, depth=d) otherwise. Returns what each call returned: one
    request for many calls."""
    return [net(x) if depth is None else net(x, depth=depth) for depth in depths]
