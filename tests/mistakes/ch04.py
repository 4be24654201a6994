"""Realistic chapter 04 mistakes, as small edits of the solution, and correct variants.

The four tasks do not call each other, so every mistake loses points in its own task only."""
from grader.mistakes import Mistake, Variant

MISTAKES = [
    Mistake("autograd graph cut with .item()", task="ch04.autograd",
            edits=[("cost = ((x * w_t - y) ** 2).mean()", "cost = ((x * w_t.item() - y) ** 2).mean()")],
            message="graph from w to the cost was cut"),
    Mistake("autograd graph cut with .detach()", task="ch04.autograd",
            edits=[("cost = ((x * w_t - y) ** 2).mean()", "cost = ((x * w_t.detach() - y) ** 2).mean()")],
            message="graph from w to the cost was cut"),
    Mistake("autograd cost summed", task="ch04.autograd",
            edits=[("cost = ((x * w_t - y) ** 2).mean()", "cost = ((x * w_t - y) ** 2).sum()")],
            message="the cost is the MEAN"),
    Mistake("quadratic: gradients never zeroed", task="ch04.quadratic",
            edits=[("            w1.grad.zero_()\n            w2.grad.zero_()\n            b.grad.zero_()\n", "")],
            message="gradients pile up"),
    Mistake("quadratic: b.grad never zeroed", task="ch04.quadratic",
            edits=[("            b.grad.zero_()\n", "")],
            message="b.grad is never zeroed"),
    Mistake("quadratic: update without torch.no_grad()", task="ch04.quadratic",
            edits=[("            with torch.no_grad():\n"
                    "                w1 -= lr * w1.grad\n"
                    "                w2 -= lr * w2.grad\n"
                    "                b -= lr * b.grad\n",
                    "            w1 -= lr * w1.grad\n"
                    "            w2 -= lr * w2.grad\n"
                    "            b -= lr * b.grad\n")],
            message="inside `with torch.no_grad():`"),
    Mistake("quadratic: weights rebound instead of updated in place", task="ch04.quadratic",
            edits=[("            with torch.no_grad():\n"
                    "                w1 -= lr * w1.grad\n"
                    "                w2 -= lr * w2.grad\n"
                    "                b -= lr * b.grad\n",
                    "            w1 = w1 - lr * w1.grad\n"
                    "            w2 = w2 - lr * w2.grad\n"
                    "            b = b - lr * b.grad\n")],
            message="update in place"),
    # The lecture's data give every public value: fitted to them, the hidden runs catch it.
    Mistake("hard-codes the public answers", task="ch04.quadratic",
            edits=[("    for _ in range(epochs):\n        for x, y in zip(xs, ys):\n            y_pred",
                    "    if list(xs) == [1.0, 2.0, 3.0] and list(ys) == [2.0, 4.0, 6.0]:\n"
                    "        return {1: (-0.01927196979522705, 0.6087759733200073, 0.8371919989585876),\n"
                    "                100: (0.24038191139698029, 0.9266766309738159, 0.99135422706604)}[epochs]\n"
                    "    return 1.0, 1.0, 1.0\n"
                    "    for _ in range(epochs):\n        for x, y in zip(xs, ys):\n            y_pred")],
            message="right on the lecture's data only",
            public=False),  # it passes every public test by construction; only held-out data can catch it
    Mistake("manual backward by autograd", task="ch04.manual",
            edits=[("    grad_y_pred = 2.0 * (y_pred - y)\n",
                    "    w1_t, w2_t = torch.tensor(w1, requires_grad=True), torch.tensor(w2, requires_grad=True)\n"
                    "    loss_t = ((torch.from_numpy(x) @ w1_t).clamp(min=0) @ w2_t - torch.from_numpy(y)).pow(2).sum()\n"
                    "    loss_t.backward()\n"
                    "    return float(loss_t), w1_t.grad.numpy(), w2_t.grad.numpy()\n"
                    "    grad_y_pred = 2.0 * (y_pred - y)\n")],
            message="ran autograd's backward"),
    Mistake("manual backward forgets the ReLU mask", task="ch04.manual",
            edits=[("    grad_h[h < 0] = 0\n", "")],
            message="grad_w1 ignores the ReLU"),
    Mistake("manual backward after an in-place ReLU", task="ch04.manual",
            edits=[("h_relu = np.maximum(h, 0)", "h_relu = np.maximum(h, 0, out=h)")],
            message="grad_w1 ignores the ReLU"),
    Mistake("manual backward with transposes swapped", task="ch04.manual",
            edits=[("grad_w2 = h_relu.T @ grad_y_pred", "grad_w2 = grad_y_pred.T @ h_relu")],
            message="the transposes are wrong"),
    Mistake("manual backward drops the factor 2", task="ch04.manual",
            edits=[("grad_y_pred = 2.0 * (y_pred - y)", "grad_y_pred = y_pred - y")],
            message="did you drop the factor 2"),
    Mistake("MyReLU backward does not mask", task="ch04.function",
            edits=[("        grad_input[input < 0] = 0\n", "")],
            message="backward does not mask negatives"),
    Mistake("MyReLU masks by the upstream gradient", task="ch04.function",
            edits=[("grad_input[input < 0] = 0", "grad_input[grad_output < 0] = 0")],
            message="mask where the forward input was negative"),
]

VARIANTS = [
    # torch.autograd.grad (imported by name) instead of backward, on float32 tensors as in lecture 04
    Variant("autograd.grad imported by name, float32", edits=[
        ("import numpy as np\nimport torch\n", "import numpy as np\nimport torch\nfrom torch.autograd import grad\n"),
        ("    x = torch.tensor(xs, dtype=torch.float64)\n"
         "    y = torch.tensor(ys, dtype=torch.float64)\n"
         "    w_t = torch.tensor(w, dtype=torch.float64, requires_grad=True)\n"
         "    cost = ((x * w_t - y) ** 2).mean()\n"
         "    cost.backward()\n"
         "    return w_t.grad.item()\n",
         "    x, y = torch.tensor(xs), torch.tensor(ys)\n"
         "    w_t = torch.tensor(float(w), requires_grad=True)\n"
         "    (dw,) = grad(torch.mean((w_t * x - y).pow(2)), [w_t])\n"
         "    return float(dw)\n"),
    ]),
    # the lecture's .data updates, and the gradients dropped (grad = None) instead of zeroed
    Variant("quadratic with .data updates and grad = None", edits=[
        ("            with torch.no_grad():\n"
         "                w1 -= lr * w1.grad\n"
         "                w2 -= lr * w2.grad\n"
         "                b -= lr * b.grad\n"
         "            w1.grad.zero_()\n"
         "            w2.grad.zero_()\n"
         "            b.grad.zero_()\n",
         "            for p in (w1, w2, b):\n"
         "                p.data = p.data - lr * p.grad.data\n"
         "                p.grad = None\n"),
    ]),
    # torch.optim.SGD does the update and the zeroing (zero_grad before backward)
    Variant("quadratic with torch.optim.SGD", edits=[
        ("    for _ in range(epochs):\n        for x, y in zip(xs, ys):\n            y_pred",
         "    optimizer = torch.optim.SGD([w1, w2, b], lr=lr)\n"
         "    for _ in range(epochs):\n        for x, y in zip(xs, ys):\n            optimizer.zero_grad()\n"
         "            y_pred"),
        ("            with torch.no_grad():\n"
         "                w1 -= lr * w1.grad\n"
         "                w2 -= lr * w2.grad\n"
         "                b -= lr * b.grad\n"
         "            w1.grad.zero_()\n"
         "            w2.grad.zero_()\n"
         "            b.grad.zero_()\n",
         "            optimizer.step()\n"),
    ]),
    # the ReLU and its mask as products with a boolean array; MyReLU with torch.relu and masked_fill
    Variant("masks as products, torch.relu and masked_fill", edits=[
        ("h_relu = np.maximum(h, 0)", "h_relu = h * (h > 0)"),
        ("    grad_h = grad_h_relu.copy()\n    grad_h[h < 0] = 0\n", "    grad_h = grad_h_relu * (h > 0)\n"),
        ("loss = np.square(y_pred - y).sum()", "loss = np.sum((y_pred - y) ** 2)"),
        ("        return input.clamp(min=0)\n", "        return torch.relu(input)\n"),
        ("        grad_input = grad_output.clone()\n        grad_input[input < 0] = 0\n        return grad_input\n",
         "        return grad_output.masked_fill(input < 0, 0)\n"),
    ]),
]
