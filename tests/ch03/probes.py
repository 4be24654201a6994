"""Chapter 03 probes: run beside the student's code, return plain data to the tests.

A probe is a function `name(impl, *args)`; `impl` is the student's chapter module. It
returns numbers, strings, tensors, lists or dicts and never holds an expected value: the
test compares. This file ships with the public tests.

Chapter 03's functions take lists of floats and return floats, lists and tuples, which
come back to the tests as plain data through `impl` itself. The one probe watches
`gradient` run: the gradient is derived by hand in this chapter, so the test wants to
know whether autograd was used to compute it.
"""
import torch
import torch.autograd


def gradient_autograd_calls(impl, xs, ys, w):
    """gradient(xs, ys, w) with autograd's backward passes counted (torch.autograd.backward,
    torch.autograd.grad and the engine both go through): (the number of backward passes
    autograd ran; what gradient returned)."""
    calls = []
    names = [n for n in ("backward", "grad", "_engine_run_backward") if hasattr(torch.autograd, n)]
    real = {n: getattr(torch.autograd, n) for n in names}

    def spy(name):
        def counted(*args, **kwargs):
            calls.append(name)
            return real[name](*args, **kwargs)
        return counted

    for n in names:
        setattr(torch.autograd, n, spy(n))
    try:
        value = impl.gradient(xs, ys, w)
    finally:
        for n in names:
            setattr(torch.autograd, n, real[n])
    return len(calls), value
