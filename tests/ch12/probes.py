"""Chapter 12 probes: run beside the student's code, return plain data to the tests.

A probe is a function `name(impl, *args)`; `impl` is the student's chapter module. It may
build spies and callbacks (anything that has to run inside the student's process) and
returns numbers, strings, tensors, lists or dicts. It never holds an expected value: the
test compares. This file ships with the public tests.
"""
import torch
import torch.nn.functional as F


def gradients(impl, name, args, wrt, weights=None):
    """Call out = impl.<name>(*args) with args[i] (i in `wrt`) made fresh leaves; return
    the result, whether it requires grad, and autograd's gradients of (out * weights).sum()
    (of out.sum() when `weights` is None) for each of those leaves (None where none reaches it)."""
    args = list(args)
    leaves = []
    for i in wrt:
        args[i] = args[i].detach().clone().requires_grad_(True)
        leaves.append(args[i])
    out = getattr(impl, name)(*args)
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        return {"output": out, "requires_grad": False, "grads": None}
    objective = out.sum() if weights is None else (out * weights).sum()
    grads = torch.autograd.grad(objective, leaves, allow_unused=True)
    return {"output": out, "requires_grad": True, "grads": list(grads)}


def run_counting_cell(impl, inputs, hidden):
    """run_cell with a plain function as the cell, h + x.sum(dim=1, keepdim=True), that
    records h[0, 0] at every call. Returns (run_cell's result, the recorded values)."""
    calls = []

    def counter(x, h):
        calls.append(float(h[0, 0]))
        return h + x.sum(dim=1, keepdim=True)

    out = impl.run_cell(counter, inputs, hidden)
    return out, calls


def train_embedding_scores(impl, x, y, epochs, lr):
    """A new EmbeddingRNN trained with Adam(lr) on cross_entropy(model(x), y), `epochs`
    full-batch steps; its scores for x afterwards."""
    model = impl.EmbeddingRNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return model(x)


def embedding_on_meta(impl, batch, steps):
    """A new EmbeddingRNN moved to the meta device (shapes and devices only, no data), run on
    int64 zeros [batch, steps] on meta: the output's shape and device type."""
    model = impl.EmbeddingRNN().to("meta")
    out = model(torch.zeros(batch, steps, dtype=torch.long, device="meta"))
    return {"shape": list(out.shape), "device": out.device.type}
