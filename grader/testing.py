"""Helpers for chapter tests: comparisons and gradient checks with messages that teach.

Every helper raises AssertionError whose first line is meant for a student: what was
expected, what came out, where, and (with `hint=`) the likely mistake.
"""
from __future__ import annotations

import functools
import hashlib
import marshal
import os
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

# Where `reference` keeps results for the whole cohort: set in the judge by `grader grade`
# (--reference-cache), a folder only the grader's uid can read; None elsewhere.
REFERENCE_CACHE: Path | None = None


def _as_float64(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64)
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def _index_str(flat_index: int, shape: Sequence[int]) -> str:
    if len(shape) == 0:
        return "the value"
    idx = np.unravel_index(flat_index, tuple(shape))
    return "index (" + ", ".join(str(int(i)) for i in idx) + ")"


def ratio_hint(actual, expected) -> float | None:
    """If `actual` is a constant multiple of `expected`, that multiple (else None)."""
    a, e = _as_float64(actual).flatten(), _as_float64(expected).flatten()
    if a.shape != e.shape:
        return None
    mask = e.abs() > 1e-8
    if not bool(mask.any()):
        return None
    r = a[mask] / e[mask]
    k = float(r.mean())
    if abs(k - 1.0) < 1e-3 or not np.isfinite(k):
        return None
    if bool(torch.allclose(r, torch.full_like(r, k), rtol=1e-3, atol=1e-6)) and \
            bool(torch.allclose(a[~mask], torch.zeros_like(a[~mask]), atol=1e-6)):
        return k
    return None


def assert_close(actual, expected, what: str, *, rtol: float = 1e-4, atol: float = 1e-5,
                 hint: str | None = None) -> None:
    """Assert two numbers/arrays/tensors agree, naming `what` and the worst index.

    `hint` is appended to the message; a hint containing `{ratio}` is used only when
    `actual` is a constant multiple of `expected` (e.g. "did you drop the factor 2?").
    """
    a, e = _as_float64(actual), _as_float64(expected)
    if a.shape != e.shape:
        if a.numel() == e.numel() == 1:
            a, e = a.reshape(()), e.reshape(())
        else:
            raise AssertionError(f"{what} has shape {list(a.shape)}, expected {list(e.shape)}")
    if bool(torch.isnan(a).any()) and not bool(torch.isnan(e).any()):
        raise AssertionError(f"{what} contains NaN{_hint(hint, a, e)}")
    if torch.allclose(a, e, rtol=rtol, atol=atol, equal_nan=True):
        return
    diff = (a - e).abs()
    diff = torch.where(torch.isnan(diff), torch.full_like(diff, float("inf")), diff)
    worst = int(diff.flatten().argmax())
    got, want = float(a.flatten()[worst]), float(e.flatten()[worst])
    where = "" if a.dim() == 0 else f" at {_index_str(worst, a.shape)}"
    raise AssertionError(f"{what} is wrong{where}: got {got:.6g}, expected {want:.6g}"
                         f"{_hint(hint, a, e)}")


def _hint(hint: str | None, actual, expected) -> str:
    if not hint:
        return ""
    if "{ratio}" in hint:
        k = ratio_hint(actual, expected)
        if k is None:
            return ""
        return " (" + hint.format(ratio=_ratio_words(k)) + ")"
    return f" ({hint})"


def _ratio_words(k: float) -> str:
    if abs(k) < 1:
        return f"{1 / k:.3g}x too small"
    return f"{k:.3g}x too large"


def numeric_gradient(f: Callable[..., torch.Tensor], inputs: Sequence[torch.Tensor],
                     eps: float = 1e-6) -> list[torch.Tensor]:
    """Central-difference gradients of the scalar `f(*inputs)` in float64."""
    xs = [_as_float64(x).clone() for x in inputs]
    grads = []
    for x in xs:
        g = torch.zeros_like(x)
        flat, gflat = x.view(-1), g.view(-1)
        for i in range(flat.numel()):
            orig = float(flat[i])
            flat[i] = orig + eps
            up = float(f(*xs))
            flat[i] = orig - eps
            down = float(f(*xs))
            flat[i] = orig
            gflat[i] = (up - down) / (2 * eps)
        grads.append(g)
    return grads


def check_gradients(f: Callable[..., torch.Tensor], inputs: Sequence[torch.Tensor], *,
                    analytic: Sequence | None = None, names: Sequence[str] | None = None,
                    eps: float = 1e-6, rtol: float = 1e-4, atol: float = 1e-6,
                    hint: str | None = None) -> None:
    """Compare gradients with central differences of the scalar function `f` (float64).

    `analytic`: the gradients to check, one per input; when omitted, autograd's
    gradients of `f` are checked (which tests `f`'s backward, e.g. a custom Function).
    The message names the input and index that disagree and by how much.
    """
    names = list(names) if names else [f"input {i}" for i in range(len(inputs))]
    if analytic is None:
        leaves = [_as_float64(x).clone().requires_grad_(True) for x in inputs]
        out = f(*leaves)
        if not isinstance(out, torch.Tensor) or not out.requires_grad:
            raise AssertionError("the result does not depend on the inputs through autograd "
                                 "(was the graph cut with .item(), .detach() or .data?)")
        analytic = torch.autograd.grad(out.sum(), leaves, allow_unused=True)
        analytic = [torch.zeros_like(x) if g is None else g for g, x in zip(analytic, leaves)]
    expected = numeric_gradient(f, inputs, eps=eps)
    for name, got, want in zip(names, analytic, expected):
        assert_close(got, want.reshape(_as_float64(got).shape) if _as_float64(got).numel() == want.numel()
                     else want, f"the gradient for {name}", rtol=rtol, atol=atol, hint=hint)


def reference_losses(model: torch.nn.Module, criterion: Callable, x: torch.Tensor, y: torch.Tensor,
                     epochs: int, lr: float, *, zero_grad: bool = True,
                     record_after: bool = False) -> list[float]:
    """The lectures' full-batch SGD loop, and its common mistakes, for fingerprinting.

    Tests compare a student's losses with this loop run correctly and with each mistake
    switched on (`zero_grad=False`: gradients pile up; `record_after=True`: the loss is
    recorded after the update), and name the mistake whose losses match.
    """
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        loss = criterion(model(x), y)
        if zero_grad:
            optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if record_after:
            loss = criterion(model(x), y)
        losses.append(loss.item())
    return losses


def length_of(value) -> int | str:
    """len(value), or "?" when it has none: for messages about what a function returned."""
    try:
        return len(value)
    except Exception:  # noqa: BLE001 - no length: say so in the message
        return "?"


def load_line(model, weight: float, bias: float, model_name: str) -> None:
    """Give a model whose only layer is one nn.Linear(1, 1) (ch05's and ch06's) this weight
    and bias, whatever the layer's name."""
    sd = model.state_dict()
    shapes = sorted({tuple(v.shape) for v in sd.values()})
    assert shapes == [(1,), (1, 1)], \
        f"{model_name} should hold one nn.Linear(1, 1) (self.linear, as __init__ creates it); its " \
        f"state_dict holds tensors of shapes {[list(s) for s in shapes]}"
    model.load_state_dict({k: torch.tensor([[weight]]) if v.dim() == 2 else torch.tensor([bias])
                           for k, v in sd.items()})


class _Uncacheable(Exception):
    pass


def _feed(h, value) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().to("cpu").contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}{value.device.type}{value.requires_grad}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif value is None or isinstance(value, (bool, int, float, str)):
        h.update(f"{type(value).__name__}:{value!r}|".encode())
    elif isinstance(value, (list, tuple)):
        h.update(f"{type(value).__name__}[{len(value)}|".encode())
        for v in value:
            _feed(h, v)
    elif isinstance(value, dict):
        h.update(f"{{{len(value)}|".encode())
        for k, v in value.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(value, type):
        h.update(f"C{value.__module__}.{value.__qualname__}|".encode())
    else:
        raise _Uncacheable(type(value).__name__)


def reference(fn: Callable) -> Callable:
    """For a test's student-independent reference run (the lecture's loop on fixed data):
    under `grader grade`, computed once per cohort instead of once per submission.

    The result is cached by the function's code, its arguments and the CPU random-number
    state before the call; a hit returns the stored result and leaves the random-number
    state as the call itself would have, so later draws are the same either way. Arguments
    are tensors, numbers, strings, classes and lists, tuples or dicts of them; results must
    load with `torch.load(weights_only=True)` (numbers, tensors, lists, dicts). Anything
    else, and every run outside `grader grade` (`make check`, plain pytest), simply calls
    `fn`."""
    code = marshal.dumps(fn.__code__)

    @functools.wraps(fn)
    def cached(*args, **kwargs):
        folder = REFERENCE_CACHE
        if folder is None:
            return fn(*args, **kwargs)
        h = hashlib.sha256(f"{fn.__module__}.{fn.__qualname__}|".encode() + code)
        state = torch.get_rng_state()
        try:
            _feed(h, (args, sorted(kwargs.items()), state))
        except Exception:  # noqa: BLE001 - an input it cannot key (an object, a meta tensor)
            return fn(*args, **kwargs)
        path = folder / f"{h.hexdigest()}.pt"
        try:
            stored = torch.load(path, weights_only=True)
            torch.set_rng_state(stored["rng"])
            return stored["value"]
        except Exception:  # noqa: BLE001 - not there yet, or unreadable: compute it
            pass
        value = fn(*args, **kwargs)
        try:
            fd, part = tempfile.mkstemp(dir=folder, suffix=".part")
            with os.fdopen(fd, "wb") as f:
                torch.save({"value": value, "rng": torch.get_rng_state()}, f)
            os.replace(part, path)
        except Exception:  # noqa: BLE001 - a cache that cannot be written only costs time
            try:
                os.unlink(part)
            except (OSError, UnboundLocalError):
                pass
        return value

    return cached
