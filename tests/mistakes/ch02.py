"""Realistic chapter 02 mistakes, as small edits of the solution."""
from grader.mistakes import Mistake, Variant

MISTAKES = [
    # the signature says `w: float`, but mse_over_grid passes a column of weights through loss
    Mistake("forward turns w into a float", task="ch02.forward",
            edits=[("    return x * w\n", "    return x * float(w)\n")],
            message="so that a tensor w broadcasts", also=("ch02.loss", "ch02.grid")),
    Mistake("loss averages over the samples", task="ch02.loss",
            edits=[("return (y_pred - y) ** 2", "return ((y_pred - y) ** 2).mean()")],
            message="one squared error per sample", also=("ch02.grid",)),
    Mistake("loss forgets to square", task="ch02.loss",
            edits=[("return (y_pred - y) ** 2", "return y_pred - y")],
            message="loss is not squared", also=("ch02.grid",)),
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
    # returns the lecture's answer whatever the data: the public tests (lecture data) pass, the
    # hidden tests (held-out data) must catch it, so it cannot be caught publicly by design
    Mistake("hard-codes the public answers", task="ch02.grid",
            edits=[("return ws[mse.argmin()].item()", "return 2.0")],
            message="on held-out data", public=False),
]

VARIANTS = [
    Variant("loops over the candidates, a result of the inputs' dtype", edits=[
        ("    return loss(xs[None, :], ys[None, :], ws[:, None]).mean(dim=1)\n",
         "    out = torch.zeros(len(ws), dtype=xs.dtype)\n"
         "    for k, w in enumerate(ws):\n"
         "        out[k] = loss(xs, ys, w).mean()\n"
         "    return out\n"),
        ("    return ws[mse.argmin()].item()\n", "    k = int(torch.argmin(mse))\n    return float(ws[k])\n"),
        ("    y_pred = xs[None, None, :] * ws[:, None, None] + bs[None, :, None]\n"
         "    return ((y_pred - ys[None, None, :]) ** 2).mean(dim=2)\n",
         "    out = torch.empty(len(ws), len(bs), dtype=xs.dtype)\n"
         "    for k in range(len(ws)):\n"
         "        for l in range(len(bs)):\n"
         "            out[k, l] = ((xs * ws[k] + bs[l] - ys) ** 2).mean()\n"
         "    return out\n"),
    ]),
    Variant("functional calls: torch.mul, torch.pow, unsqueeze, F.mse_loss", edits=[
        ("    return x * w\n", "    return torch.mul(x, w)\n"),
        ("return (y_pred - y) ** 2", "return torch.pow(y - y_pred, 2)"),
        ("return loss(xs[None, :], ys[None, :], ws[:, None]).mean(dim=1)",
         "return loss(xs.unsqueeze(0), ys.unsqueeze(0), ws.unsqueeze(1)).sum(dim=-1) / xs.numel()"),
        ("    y_pred = xs[None, None, :] * ws[:, None, None] + bs[None, :, None]\n"
         "    return ((y_pred - ys[None, None, :]) ** 2).mean(dim=2)\n",
         "    y_pred = forward(xs, ws[:, None, None]) + bs[:, None]\n"
         "    return torch.nn.functional.mse_loss(y_pred, ys.expand_as(y_pred), reduction=\"none\").mean(dim=-1)\n"),
    ]),
    Variant("Python min over the candidates, stacked means", edits=[
        ("    return ws[mse.argmin()].item()\n",
         "    mses = mse.tolist()\n    return ws.tolist()[min(range(len(mses)), key=mses.__getitem__)]\n"),
        ("    return loss(xs[None, :], ys[None, :], ws[:, None]).mean(dim=1)\n",
         "    return torch.stack([loss(xs, ys, w).mean() for w in ws])\n"),
    ]),
]
