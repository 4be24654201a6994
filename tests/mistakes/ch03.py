"""Realistic chapter 03 mistakes, as small edits of the solution, and correct variants.

gradient_descent and sgd are built on cost and gradient: their tests blame a wrong cost or
gradient first ("fix ch03.gradient first"), so those mistakes also lose points there (`also`)."""
from grader.mistakes import Mistake, Variant

LOOPS = ("ch03.gd", "ch03.sgd")

MISTAKES = [
    Mistake("cost sums instead of averaging", task="ch03.cost",
            edits=[("return float(total / len(xs))", "return float(total)")],
            message="divide the sum by len(xs)", also=("ch03.gd",)),
    Mistake("gradient drops the factor 2", task="ch03.gradient",
            edits=[("grad += 2 * x * (x * w - y)", "grad += x * (x * w - y)")],
            message="gradient is 2x too small: did you drop the factor 2?", also=LOOPS),
    Mistake("gradient with the sign flipped", task="ch03.gradient",
            edits=[("grad += 2 * x * (x * w - y)", "grad += 2 * x * (y - x * w)")],
            message="wrong sign", also=LOOPS),
    Mistake("gradient sums instead of averaging", task="ch03.gradient",
            edits=[("return float(grad / len(xs))", "return float(grad)")],
            message="sum over the samples", also=("ch03.gd",)),
    Mistake("gradient without the factor x", task="ch03.gradient",
            edits=[("grad += 2 * x * (x * w - y)", "grad += 2 * (x * w - y)")],
            message="missing the factor x", also=LOOPS),
    Mistake("gradient by autograd instead of by hand", task="ch03.gradient",
            edits=[("    grad = 0.0\n",
                    "    import torch\n"
                    "    w_t = torch.tensor(w, dtype=torch.float64, requires_grad=True)\n"
                    "    x_t, y_t = torch.tensor(xs, dtype=torch.float64), torch.tensor(ys, dtype=torch.float64)\n"
                    "    ((x_t * w_t - y_t) ** 2).mean().backward()\n"
                    "    return float(w_t.grad)\n"
                    "    grad = 0.0\n")],
            message="derive it by hand"),
    # Fitted to the lecture's data (y = 2x, best w = 2): every public value comes out right.
    Mistake("hard-codes the public answers", task="ch03.gradient",
            edits=[("    grad = 0.0\n", "    return 28 / 3 * (w - 2)  # -9.3333 at w = 1, as in the lecture\n"
                                       "    grad = 0.0\n")],
            message="right on the lecture's data only", also=("ch03.sgd",),
            # public=False: its task's public tests all pass by construction (only the lecture's data);
            # sgd's public test blames it ("fix ch03.gradient first") on the one-sample lists it uses
            public=False),
    Mistake("gradient descent records the cost after the update", task="ch03.gd",
            edits=[("        costs.append(cost(xs, ys, w))\n        w -= lr * gradient(xs, ys, w)\n",
                    "        w -= lr * gradient(xs, ys, w)\n        costs.append(cost(xs, ys, w))\n")],
            message="record the cost after the update"),
    Mistake("gradient ascent", task="ch03.gd",
            edits=[("        w -= lr * gradient(xs, ys, w)\n", "        w += lr * gradient(xs, ys, w)\n")],
            message="w moves uphill"),
    Mistake("gradient descent ignores lr", task="ch03.gd",
            edits=[("        w -= lr * gradient(xs, ys, w)\n", "        w -= 0.01 * gradient(xs, ys, w)\n")],
            message="is ignored"),
    Mistake("sgd records the loss before the update", task="ch03.sgd",
            edits=[("            w -= lr * gradient([x], [y], w)\n            sample_loss = cost([x], [y], w)\n",
                    "            sample_loss = cost([x], [y], w)\n            w -= lr * gradient([x], [y], w)\n")],
            message="before its update"),
    Mistake("sgd steps with the full-batch gradient", task="ch03.sgd",
            edits=[("w -= lr * gradient([x], [y], w)", "w -= lr * gradient(xs, ys, w)")],
            message="gradient of all samples"),
]

VARIANTS = [
    # one expression instead of a loop, for the cost and the gradient
    Variant("gradient and cost as generator sums", edits=[
        ("    total = 0.0\n    for x, y in zip(xs, ys):\n        total += (x * w - y) ** 2\n"
         "    return float(total / len(xs))\n",
         "    return sum((x * w - y) ** 2 for x, y in zip(xs, ys)) / len(xs)\n"),
        ("    grad = 0.0\n    for x, y in zip(xs, ys):\n        grad += 2 * x * (x * w - y)\n"
         "    return float(grad / len(xs))\n",
         "    return sum(2 * x * (x * w - y) for x, y in zip(xs, ys)) / len(xs)\n"),
    ]),
    # vectorised with NumPy in float32, converted back to Python floats
    Variant("vectorised float32 NumPy cost and gradient", edits=[
        ("    total = 0.0\n    for x, y in zip(xs, ys):\n        total += (x * w - y) ** 2\n"
         "    return float(total / len(xs))\n",
         "    import numpy as np\n"
         "    x, y = np.asarray(xs, dtype=np.float32), np.asarray(ys, dtype=np.float32)\n"
         "    return float(np.mean((x * np.float32(w) - y) ** 2))\n"),
        ("    grad = 0.0\n    for x, y in zip(xs, ys):\n        grad += 2 * x * (x * w - y)\n"
         "    return float(grad / len(xs))\n",
         "    import numpy as np\n"
         "    x, y = np.asarray(xs, dtype=np.float32), np.asarray(ys, dtype=np.float32)\n"
         "    return float(np.mean(2 * x * (x * np.float32(w) - y)))\n"),
    ]),
    # the slope taken first, the cost recorded, then the step; an index loop for SGD
    Variant("gradient first, then record, then step; SGD by index", edits=[
        ("        costs.append(cost(xs, ys, w))\n        w -= lr * gradient(xs, ys, w)\n",
         "        slope = gradient(xs, ys, w)\n        costs.append(cost(xs, ys, w))\n        w = w - lr * slope\n"),
        ("        for x, y in zip(xs, ys):\n            w -= lr * gradient([x], [y], w)\n"
         "            sample_loss = cost([x], [y], w)\n",
         "        for i in range(len(xs)):\n            w = w - lr * gradient(xs[i:i + 1], ys[i:i + 1], w)\n"
         "            sample_loss = (xs[i] * w - ys[i]) ** 2\n"),
    ]),
    # the loops do their own arithmetic instead of calling cost and gradient
    Variant("loops with inline arithmetic", edits=[
        ("        costs.append(cost(xs, ys, w))\n        w -= lr * gradient(xs, ys, w)\n",
         "        costs.append(sum((x * w - y) ** 2 for x, y in zip(xs, ys)) / len(xs))\n"
         "        w -= lr * sum(2 * x * (x * w - y) for x, y in zip(xs, ys)) / len(xs)\n"),
        ("            w -= lr * gradient([x], [y], w)\n            sample_loss = cost([x], [y], w)\n",
         "            w -= lr * 2 * x * (x * w - y)\n            sample_loss = (x * w - y) ** 2\n"),
    ]),
]
