"""Chapter 03: gradient descent and stochastic gradient descent (lecture 03).

Exhaustive search does not scale beyond a weight or two. Gradient descent instead
starts from a guess (w = 1.0) and repeatedly steps against the slope of the cost:

    cost(w) = mean over samples of (x * w - y) ** 2
    w      <- w - lr * d cost / dw

The derivative d cost / dw is yours to derive by hand, as lecture 03 does: apply the
chain rule to one sample's squared error, then average over the samples as cost does.

Stochastic gradient descent (SGD) makes one such step per sample, using that one
sample's gradient. Everything here is plain Python arithmetic on lists of floats,
as in the lecture: no tensors are needed yet.

Run `python ch03_gradient_descent.py` for the demonstration.
"""
from __future__ import annotations

from typing import Sequence

X_DATA = [1.0, 2.0, 3.0]
Y_DATA = [2.0, 4.0, 6.0]


def cost(xs: Sequence[float], ys: Sequence[float], w: float) -> float:
    """The mean squared error of the model y_hat = x * w.

    Args:
        xs, ys: N samples each, lists of floats.
        w: the weight.
    Returns:
        A Python float, mean over i of (xs[i] * w - ys[i]) ** 2.
    """
    # TODO(ch03.cost): add up (x * w - y) ** 2 over the samples and divide by their number.
    raise NotImplementedError("ch03.cost: cost")


def gradient(xs: Sequence[float], ys: Sequence[float], w: float) -> float:
    """The derivative of `cost` with respect to w.

    Args:
        xs, ys: N samples each, lists of floats.
        w: the weight.
    Returns:
        A Python float: the slope of the cost at w, derived by hand (lecture 03). It is 0 at
        the best weight, negative below it and positive above it.
    """
    # TODO(ch03.gradient): compute the derivative of the mean squared error with respect to
    #   w, derived by hand as in lecture 03: differentiate one sample's squared error with the
    #   chain rule (mind the inner derivative), then average over the samples as cost does.
    #   Plain arithmetic: no autograd here (that is chapter 04).
    raise NotImplementedError("ch03.gradient: gradient")


def gradient_descent(xs: Sequence[float], ys: Sequence[float], w: float = 1.0, lr: float = 0.01,
                     epochs: int = 100) -> tuple[float, list[float]]:
    """Full-batch gradient descent: one update of w per epoch, using all samples.

    Args:
        xs, ys: N samples each, lists of floats.
        w: the starting weight.
        lr: the learning rate.
        epochs: the number of updates.
    Returns:
        (final w, costs): costs[e] is cost(xs, ys, w) just BEFORE update e, a list of
        `epochs` Python floats.
    """
    # TODO(ch03.gd): every epoch, first record the cost at the current w, then take one step
    #   of size lr against the gradient (the update rule of lecture 03, using your cost and
    #   gradient). Return the final w and the recorded costs.
    raise NotImplementedError("ch03.gd: gradient_descent")


def sgd(xs: Sequence[float], ys: Sequence[float], w: float = 1.0, lr: float = 0.01,
        epochs: int = 100) -> tuple[float, list[float]]:
    """Stochastic gradient descent: one update of w per sample, samples in order.

    Args:
        xs, ys: N samples each, lists of floats.
        w: the starting weight.
        lr: the learning rate.
        epochs: the number of passes over the samples (N updates each).
    Returns:
        (final w, losses): losses[e] is the loss of epoch e's LAST sample, computed after
        that sample's update (as the lecture prints it), a list of `epochs` Python floats.
    """
    # TODO(ch03.sgd): for each epoch, for each sample in order: step w against the gradient of
    #   that one sample alone (cost and gradient accept one-sample lists), then compute that
    #   sample's loss with the updated w. Record each epoch's last such loss (lecture 03).
    raise NotImplementedError("ch03.sgd: sgd")


def main() -> None:
    print(f"before training: w = 1.0, prediction for x = 4: {4 * 1.0:.4f}")
    w, costs = gradient_descent(X_DATA, Y_DATA)
    for epoch in (0, 9, 49, 99):
        print(f"gradient descent epoch {epoch + 1:3d}  cost {costs[epoch]:.6g}")
    print(f"gradient descent: w = {w:.6f}, prediction for x = 4: {4 * w:.4f}")
    w, losses = sgd(X_DATA, Y_DATA)
    for epoch in (0, 9, 49, 99):
        print(f"SGD epoch {epoch + 1:3d}  last sample loss {losses[epoch]:.6g}")
    print(f"SGD: w = {w:.6f}, prediction for x = 4: {4 * w:.4f}")


if __name__ == "__main__":
    main()
