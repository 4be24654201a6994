"""Chapter 06 probes: run beside the student's code, return plain data to the tests.

A probe is a function `name(impl, *args)`; `impl` is the student's chapter module. It may
build spies and callbacks (anything that has to run inside the student's process) and
returns numbers, strings, tensors, lists or dicts. It never holds an expected value: the
test compares. This file ships with the public tests.
"""
import torch
import torch.nn.functional as F
from torch import nn


def forward_then_backward(impl, x):
    """A fresh LogisticRegressionModel's output for `x`, and the gradients that
    out.sum().backward() leaves on its parameters (a list, None for a parameter without
    one; every entry None when the output needs no grad)."""
    model = impl.LogisticRegressionModel()
    out = model(x)
    if isinstance(out, torch.Tensor) and out.requires_grad:
        out.sum().backward()
    return out, [p.grad for p in model.parameters()]


def bce_backward(impl, y_pred, y, summed=False):
    """binary_cross_entropy(y_pred, y) with y_pred a leaf that requires grad, and y_pred's
    gradient after loss.backward() (loss.sum().backward() with `summed`). The gradient is
    None when the loss needs no grad or does not reach y_pred."""
    leaf = y_pred.detach().clone().requires_grad_(True)
    loss = impl.binary_cross_entropy(leaf, y)
    if isinstance(loss, torch.Tensor) and loss.requires_grad:
        (loss.sum() if summed else loss).backward()
    return loss, leaf.grad


def bce_without_library(impl, y_pred, y):
    """binary_cross_entropy(y_pred, y) while PyTorch's own BCE functions are blocked:
    the names of the blocked functions it called, and its result (None when a blocked
    call ended it)."""
    called = []
    targets = [(F, "binary_cross_entropy"), (torch._C._nn, "binary_cross_entropy"),
               (F, "binary_cross_entropy_with_logits")]
    saved = [(owner, name, getattr(owner, name)) for owner, name in targets]

    def blocker(label):
        def blocked(*args, **kwargs):
            called.append(label)
            raise RuntimeError(f"{label} is not available in this exercise")
        return blocked

    for owner, name in targets:
        setattr(owner, name, blocker(f"{owner.__name__}.{name}"))
    try:
        try:
            result = impl.binary_cross_entropy(y_pred, y)
        except Exception:
            if not called:
                raise
            result = None
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)
    return called, result


class LectureModel(nn.Module):
    """The lecture's model, sigmoid(linear(x)): train() is observed on it alone, whatever
    the student's LogisticRegressionModel does (it has tests of its own)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(1, 1)

    def forward(self, x):
        return torch.sigmoid(self.linear(x))


def train_lecture_model(impl, start, x, y, **kwargs):
    """impl.train(model, x, y, **kwargs) on the lecture's model, its linear layer loaded with
    `start`. Returns what train returned and the linear layer's state_dict after training."""
    model = LectureModel()
    model.linear.load_state_dict(start)
    losses = impl.train(model, x, y, **kwargs)
    return losses, dict(model.linear.state_dict())
