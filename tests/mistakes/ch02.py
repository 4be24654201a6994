"""Realistic chapter 02 mistakes, as small edits of the solution."""
from grader.mistakes import Mistake

MISTAKES = [
    Mistake("loss averages over the samples", task="ch02.loss",
            edits=[("return (y_pred - y) ** 2", "return ((y_pred - y) ** 2).mean()")],
            message="one squared error per sample"),
    Mistake("loss forgets to square", task="ch02.loss",
            edits=[("return (y_pred - y) ** 2", "return y_pred - y")],
            message="loss is not squared"),
    Mistake("MSE summed instead of averaged", task="ch02.grid",
            edits=[("ws[:, None]).mean(dim=1)", "ws[:, None]).sum(dim=1)")],
            message="not the sum"),
    Mistake("grid result preallocated as float32", task="ch02.grid",
            edits=[("    return loss(xs[None, :], ys[None, :], ws[:, None]).mean(dim=1)\n",
                    "    out = torch.zeros(len(ws))\n"
                    "    for k, w in enumerate(ws):\n"
                    "        out[k] = loss(xs, ys, w).mean()\n"
                    "    return out\n")],
            message="give torch.zeros dtype=xs.dtype"),
    Mistake("best_weight uses argmax", task="ch02.grid",
            edits=[("ws[mse.argmin()]", "ws[mse.argmax()]")],
            message="use argmin, not argmax"),
    Mistake("best_weight returns the index", task="ch02.grid",
            edits=[("return ws[mse.argmin()].item()", "return mse.argmin().item()")],
            message="the index of the best candidate"),
    Mistake("surface with w and b swapped", task="ch02.surface",
            edits=[("xs[None, None, :] * ws[:, None, None] + bs[None, :, None]",
                    "xs[None, None, :] * ws[None, :, None] + bs[:, None, None]")],
            message="rows follow w"),
    Mistake("surface subtracts the bias", task="ch02.surface",
            edits=[("ws[:, None, None] + bs[None, :, None]", "ws[:, None, None] - bs[None, :, None]")],
            message="the model is y_hat = x * w + b"),
]
