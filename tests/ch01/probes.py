"""Chapter 01 probes: run beside the student's code, return plain data to the tests.

A probe is a function `name(impl, *args)`; `impl` is the student's chapter module. Chapter 01
is about storage and identity (views, shared memory, in-place updates, which operations
run), which only the student's process can observe: these probes report what they see
(storage addresses, identity, tensors after a write, names of the torch operations called)
and the tests compare. This file ships with the public tests.
"""
import torch
from torch.overrides import TorchFunctionMode


class _OpLog(TorchFunctionMode):
    """Records the name of every torch function and tensor method called inside the `with` block."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.ops.append(getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))


def traced_call(impl, function, *args):
    """Call `impl.<function>(*args)` and return (its result, the names of the torch
    operations it ran)."""
    target = getattr(impl, function)
    with _OpLog() as log:
        out = target(*args)
    return out, list(log.ops)


def flatten_then_write(impl, x, index, value):
    """flatten_images(x), then write `value` at `index` of the result. Returns the storage
    addresses of the result and of x (taken before the write) and x after the write."""
    out = impl.flatten_images(x)
    out_storage = out.untyped_storage().data_ptr()
    x_storage = x.untyped_storage().data_ptr()
    out[index] = value
    return {"out_storage": out_storage, "x_storage": x_storage, "x": x}


def shared_then_write(impl, a, array_index, array_value, tensor_index, tensor_value):
    """as_tensor_shared(a), then write into the array and into the tensor. Returns both
    afterwards."""
    t = impl.as_tensor_shared(a)
    a[array_index] = array_value
    t[tensor_index] = tensor_value
    return {"tensor": t, "array": a}


def add_inplace(impl, x, y):
    """add_inplace_(x, y). Returns whether the result is x itself, x's data address before
    and after, and x afterwards."""
    before = x.data_ptr()
    out = impl.add_inplace_(x, y)
    return {"is_x": out is x, "ptr_before": before, "ptr_after": x.data_ptr(), "x": x}
