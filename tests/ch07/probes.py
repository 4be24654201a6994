"""Chapter 07 probes: run beside the student's code, return plain data to the tests.

A probe is a function `name(impl, *args)`; `impl` is the student's chapter module. It may
build spies and callbacks (anything that has to run inside the student's process) and
returns numbers, strings, tensors, lists or dicts. It never holds an expected value: the
test compares. This file ships with the public tests.
"""
import tempfile
from pathlib import Path

import torch
from torch import nn


def load_written(impl, filename, content):
    """load_diabetes on a file named `filename` holding the bytes `content`, written in a
    fresh temporary folder of the student's process."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / filename
        path.write_bytes(content)
        return impl.load_diabetes(str(path))


def backward_grads(impl, model, x):
    """model(x), then out.sum().backward() when the output requires grad: the output and
    {parameter name: its gradient (None when none reached it)}."""
    out = model(x)
    if isinstance(out, torch.Tensor) and out.requires_grad:
        out.sum().backward()
    return out, {name: p.grad for name, p in model.named_parameters()}


def train_and_weights(impl, model, x, y, epochs, lr):
    """train_full_batch on `model` (a copy sent by the test): the losses and the model's
    state_dict after training."""
    losses = impl.train_full_batch(model, x, y, epochs=epochs, lr=lr)
    return losses, model.state_dict()


class _Probabilities(nn.Module):
    """A 'model' whose output is its input: the test chooses the probabilities. It records
    whether gradient tracking was on at each call."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.grad_enabled = []

    def forward(self, x):
        self.grad_enabled.append(torch.is_grad_enabled())
        return x * self.scale


def accuracy_of(impl, probs, y):
    """accuracy() of a model whose output is `probs` itself, against `y`, and whether grad
    mode was on at each of the model's calls."""
    model = _Probabilities()
    got = impl.accuracy(model, probs, y)
    return got, list(model.grad_enabled)
