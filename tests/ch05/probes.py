"""Chapter 05 probes: run beside the student's code, return plain data to the tests.

A probe is a function `name(impl, *args)`; `impl` is the student's chapter module. It may
build spies and callbacks (anything that has to run inside the student's process) and
returns numbers, strings, tensors, lists or dicts. It never holds an expected value: the
test compares. This file ships with the public tests.
"""
import torch


def optimizer_steps(impl, epochs):
    """How many times train() steps an optimizer class it is given."""
    used = []

    class Spy(torch.optim.SGD):
        def step(self, closure=None):
            used.append(1)
            return super().step(closure)

    impl.train(impl.LinearModel(), impl.X_DATA, impl.Y_DATA, epochs=epochs, lr=0.01, optimizer_cls=Spy)
    return len(used)
