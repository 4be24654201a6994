"""Chapter 04 probes: run beside the student's code, return plain data to the tests.

A probe is a function `name(impl, *args)`; `impl` is the student's chapter module. It may
build spies and autograd graphs (anything that has to run inside the student's process)
and returns numbers, strings, tensors, lists or dicts. It never holds an expected value:
the test compares. This file ships with the public tests.
"""
import torch
import torch.autograd


class _CountingAutograd:
    """Within `with`: every call of torch.autograd.backward, torch.autograd.grad and the engine
    both run through (so `from torch.autograd import grad` is seen too) is appended to .calls."""

    NAMES = ("backward", "grad", "_engine_run_backward")

    def __enter__(self):
        self.calls = []
        self.real = {n: getattr(torch.autograd, n) for n in self.NAMES if hasattr(torch.autograd, n)}
        for name, real in self.real.items():
            setattr(torch.autograd, name, self._spy(name, real))
        return self

    def _spy(self, name, real):
        def counted(*args, **kwargs):
            self.calls.append(name)
            return real(*args, **kwargs)
        return counted

    def __exit__(self, *exc):
        for name, real in self.real.items():
            setattr(torch.autograd, name, real)
        return False


def autograd_calls(impl, xs, ys, w):
    """autograd_gradient(xs, ys, w) with autograd's backward passes counted: (the names of the
    calls, in order: "backward", "grad", "_engine_run_backward"; what autograd_gradient returned)."""
    with _CountingAutograd() as spy:
        value = impl.autograd_gradient(xs, ys, w)
    return spy.calls, value


def two_layer_backward_and_arguments(impl, x, y, w1, w2):
    """two_layer_backward(x, y, w1, w2) with autograd's backward passes counted:
    (what it returned, [x, y, w1, w2] after the call, the number of backward passes)."""
    with _CountingAutograd() as spy:
        out = impl.two_layer_backward(x, y, w1, w2)
    return out, [x, y, w1, w2], len(spy.calls)



def relu_input_grads(impl, x, grad_outputs):
    """One MyReLU.apply on a fresh leaf copy of x, then one backward per upstream gradient
    in `grad_outputs` (the graph is kept between them): (whether the output is a tensor
    that requires grad; [the leaf's .grad after each backward, None where there is none])."""
    leaf = x.detach().clone().requires_grad_(True)
    out = impl.MyReLU.apply(leaf)
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        return False, []
    grads = []
    for i, grad_output in enumerate(grad_outputs):
        leaf.grad = None
        out.backward(grad_output, retain_graph=i < len(grad_outputs) - 1)
        grads.append(leaf.grad)
    return True, grads


def relu_outputs(impl, inputs):
    """MyReLU.apply(t) for each tensor t of `inputs` (forward only)."""
    return [impl.MyReLU.apply(t) for t in inputs]


def relu_net_hidden(impl, x, w1):
    """h = x @ w1 (w1 requires grad), then MyReLU.apply(h): (h before the call, h after it)."""
    w1 = w1.detach().clone().requires_grad_(True)
    h = x @ w1
    before = h.detach().clone()
    impl.MyReLU.apply(h)
    return before, h.detach().clone()


def relu_net_grads(impl, x, w1, w2):
    """The gradients for w1 and w2 of MyReLU.apply(x @ w1).mm(w2).pow(2).sum()."""
    w1 = w1.detach().clone().requires_grad_(True)
    w2 = w2.detach().clone().requires_grad_(True)
    loss = impl.MyReLU.apply(x @ w1).mm(w2).pow(2).sum()
    return list(torch.autograd.grad(loss, (w1, w2)))
