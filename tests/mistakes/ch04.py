"""Realistic chapter 04 mistakes, as small edits of the solution."""
from grader.mistakes import Mistake

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
