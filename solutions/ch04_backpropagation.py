"""Chapter 04: backpropagation, by autograd and by hand (lecture 04, "Learning PyTorch with Examples").

A tensor created with `requires_grad=True` records every operation done with it in a
computational graph. `loss.backward()` walks that graph from the loss back to the
leaves with the chain rule and stores d loss / d w in `w.grad`. Three things follow:
  * the graph must not be cut: `.item()`, `.detach()` or `.data` turn a tensor into a
    constant that backward cannot see past;
  * updating the weights is not part of the model, so it runs under `torch.no_grad()`;
  * `backward` adds into `.grad`, so the gradients are zeroed after every update.
Backward can also be written by hand (a two-layer network in NumPy), and a new
operation teaches autograd its own backward as a `torch.autograd.Function`.

Run `python ch04_backpropagation.py` for the demonstration.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

X_DATA = [1.0, 2.0, 3.0]
Y_DATA = [2.0, 4.0, 6.0]


def autograd_gradient(xs: Sequence[float], ys: Sequence[float], w: float) -> float:
    """d cost / d w of cost = mean of (x * w - y) ** 2, computed by autograd.

    Args:
        xs, ys: N samples each, lists of floats.
        w: the weight at which to take the derivative.
    Returns:
        A Python float, equal to the gradient you derived by hand in chapter 03.
    """
    ### BEGIN SOLUTION
    # TODO(ch04.autograd): build the cost from tensors, with w a tensor that autograd tracks
    #   (requires_grad). Keep every step a tensor operation so the graph reaches w (no
    #   .item() or .detach() on the way), let autograd run backward from the cost, and
    #   return w's gradient as a Python float (lecture 04).
    x = torch.tensor(xs, dtype=torch.float64)
    y = torch.tensor(ys, dtype=torch.float64)
    w_t = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    cost = ((x * w_t - y) ** 2).mean()
    cost.backward()
    return w_t.grad.item()
    ### END SOLUTION


def train_quadratic(xs: Sequence[float], ys: Sequence[float], epochs: int = 100,
                    lr: float = 0.01) -> tuple[float, float, float]:
    """Fit y_hat = w1 * x**2 + w2 * x + b with autograd and per-sample updates.

    Starts from w1 = w2 = b = 1.0. For every sample, in data order: the loss
    (y_hat - y) ** 2, backward, then w -= lr * w.grad for each of the three under
    torch.no_grad(), then their gradients are zeroed.

    Args:
        xs, ys: N samples each, lists of floats.
        epochs: passes over the data (N updates each).
        lr: the learning rate.
    Returns:
        (w1, w2, b) after training, as Python floats.
    """
    w1 = torch.tensor(1.0, requires_grad=True)
    w2 = torch.tensor(1.0, requires_grad=True)
    b = torch.tensor(1.0, requires_grad=True)
    ### BEGIN SOLUTION
    # TODO(ch04.quadratic): for each epoch, for each (x, y) in order: predict, take the
    #   squared error, backward; update w1, w2 and b in place under torch.no_grad();
    #   then zero all three .grad tensors. Return the three values as floats.
    for _ in range(epochs):
        for x, y in zip(xs, ys):
            y_pred = w1 * x ** 2 + w2 * x + b
            loss = (y_pred - y) ** 2
            loss.backward()
            with torch.no_grad():
                w1 -= lr * w1.grad
                w2 -= lr * w2.grad
                b -= lr * b.grad
            w1.grad.zero_()
            w2.grad.zero_()
            b.grad.zero_()
    return w1.item(), w2.item(), b.item()
    ### END SOLUTION


def two_layer_backward(x: np.ndarray, y: np.ndarray, w1: np.ndarray,
                       w2: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Forward and hand-written backward pass of a two-layer ReLU network, in NumPy.

    Forward: h = x @ w1, h_relu = max(h, 0), y_pred = h_relu @ w2,
    loss = sum of (y_pred - y) ** 2.

    Args:
        x: float64 [N, D_in]; y: float64 [N, D_out];
        w1: float64 [D_in, H]; w2: float64 [H, D_out]. None of them is modified.
    Returns:
        (loss as a Python float, d loss / d w1 float64 [D_in, H], d loss / d w2 float64 [H, D_out]).
    """
    ### BEGIN SOLUTION
    # TODO(ch04.manual): run the forward pass, keeping h, h_relu and y_pred. Then go
    #   backwards with the chain rule, by hand in NumPy (no autograd): start from the
    #   derivative of the loss with respect to y_pred; from it get grad_w2 (with h_relu) and
    #   grad_h_relu (through w2); the ReLU passes no gradient where h < 0, which gives
    #   grad_h; grad_w1 follows from x and grad_h. A gradient has the shape of its weight:
    #   that tells you where the .T goes (lecture 04, "Learning PyTorch with Examples").
    h = x @ w1
    h_relu = np.maximum(h, 0)
    y_pred = h_relu @ w2
    loss = np.square(y_pred - y).sum()

    grad_y_pred = 2.0 * (y_pred - y)
    grad_w2 = h_relu.T @ grad_y_pred
    grad_h_relu = grad_y_pred @ w2.T
    grad_h = grad_h_relu.copy()
    grad_h[h < 0] = 0
    grad_w1 = x.T @ grad_h
    return float(loss), grad_w1, grad_w2
    ### END SOLUTION


class MyReLU(torch.autograd.Function):
    """ReLU with a hand-written backward. Use it as `MyReLU.apply(x)`.

    forward: input float [*] -> input clamped at 0, same shape.
    backward: grad_output [*] -> grad_input [*], zero where the input was negative.
    """

    @staticmethod
    def forward(ctx, input: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        # TODO(ch04.function): keep the input for backward with ctx.save_for_backward, then
        #   return it clamped at 0 (out of place: do not change input).
        ctx.save_for_backward(input)
        return input.clamp(min=0)
        ### END SOLUTION

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        # TODO(ch04.function): read the input back from ctx.saved_tensors; return a copy of
        #   grad_output with zeros wherever that input was negative.
        input, = ctx.saved_tensors
        grad_input = grad_output.clone()
        grad_input[input < 0] = 0
        return grad_input
        ### END SOLUTION


def main() -> None:
    g = autograd_gradient(X_DATA, Y_DATA, 1.0)
    print(f"autograd: d cost / d w at w = 1 is {g:.4f} (by hand: -28/3 = {-28 / 3:.4f})")

    w1, w2, b = train_quadratic(X_DATA, Y_DATA)
    print(f"quadratic fit after 100 epochs: w1 = {w1:.4f}, w2 = {w2:.4f}, b = {b:.4f}; "
          f"prediction for x = 4: {w1 * 16 + w2 * 4 + b:.4f}")

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 100)), rng.standard_normal((64, 10))
    v1, v2 = rng.standard_normal((100, 50)), rng.standard_normal((50, 10))
    for step in range(200):
        loss, grad_v1, grad_v2 = two_layer_backward(x, y, v1, v2)
        if step % 50 == 0:
            print(f"numpy two-layer net, step {step:3d}: loss {loss:.2f}")
        v1 -= 1e-5 * grad_v1
        v2 -= 1e-5 * grad_v2
    print(f"numpy two-layer net, step 200: loss {two_layer_backward(x, y, v1, v2)[0]:.2f}")

    x = torch.tensor([-2.0, -0.5, 0.5, 2.0], requires_grad=True)
    MyReLU.apply(x).sum().backward()
    print(f"MyReLU: forward {MyReLU.apply(x).tolist()}, gradient {x.grad.tolist()}")


if __name__ == "__main__":
    main()
