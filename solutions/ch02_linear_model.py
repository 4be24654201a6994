"""Chapter 02: the linear model and exhaustive search (lecture 02).

The model is y_hat = x * w with one weight. To judge a candidate w, compute the
squared error of every sample, (x * w - y) ** 2, and average it: the mean squared
error (MSE). Before learning any clever method, try every w on a grid and keep the
one of least MSE. The lecture's data is y = 2x, so the best w on the grid
0.0, 0.1, ..., 4.0 is 2.0. The homework extends the model to y_hat = x * w + b and
evaluates the MSE on a (w, b) grid: a surface with its lowest point at w = 2, b = 0.

Run `python ch02_linear_model.py` for the demonstration.
"""
from __future__ import annotations

import torch

X_DATA = torch.tensor([1.0, 2.0, 3.0])
Y_DATA = torch.tensor([2.0, 4.0, 6.0])
W_GRID = torch.arange(0.0, 4.1, 0.1)  # 41 candidates, as in the lecture's np.arange(0.0, 4.1, 0.1)


def forward(x: torch.Tensor, w: float) -> torch.Tensor:
    """The linear model without bias.

    Args:
        x: float32 [N] (any shape works).
        w: the weight, a float (or a tensor that broadcasts against x).
    Returns:
        float32, same shape as x: the predictions x * w.
    """
    ### BEGIN SOLUTION
    # TODO(ch02.forward): return the model's prediction for every x (y_hat = x * w in the lecture).
    #   Use w as it comes (no float(w)): mse_over_grid passes a column of weights to broadcast.
    return x * w
    ### END SOLUTION


def loss(x: torch.Tensor, y: torch.Tensor, w: float) -> torch.Tensor:
    """The squared error of every sample (not yet averaged).

    Args:
        x, y: float32 [N].
        w: the weight, a float (or a tensor that broadcasts against x).
    Returns:
        float32 [N], (x * w - y) ** 2 elementwise.
    """
    ### BEGIN SOLUTION
    # TODO(ch02.loss): predict with forward(x, w), subtract y, square. One value per sample:
    #   do not average here.
    y_pred = forward(x, w)
    return (y_pred - y) ** 2
    ### END SOLUTION


def mse_over_grid(xs: torch.Tensor, ys: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
    """The mean squared error of every candidate weight.

    Args:
        xs, ys: [N] samples, float32 or float64.
        ws: [K] candidate weights, same dtype as xs.
    Returns:
        [K] in the dtype of the inputs: out[k] = mean over i of (xs[i] * ws[k] - ys[i]) ** 2.
    """
    ### BEGIN SOLUTION
    # TODO(ch02.grid): for every candidate w, average loss(xs, ys, w) over the samples.
    #   A loop over ws works; broadcasting does it at once: the weights as a column [K, 1]
    #   against the samples as a row [1, N] give a [K, N] table of losses to average per row.
    return loss(xs[None, :], ys[None, :], ws[:, None]).mean(dim=1)
    ### END SOLUTION


def best_weight(xs: torch.Tensor, ys: torch.Tensor, ws: torch.Tensor) -> float:
    """The candidate weight of least MSE.

    Args:
        xs, ys: [N] samples.
        ws: [K] candidate weights.
    Returns:
        The best candidate, ws[k] for the k of least MSE, as a Python float.
    """
    ### BEGIN SOLUTION
    # TODO(ch02.grid): find the index of the smallest value of mse_over_grid (argmin) and
    #   return that candidate weight as a Python float (not its index).
    mse = mse_over_grid(xs, ys, ws)
    return ws[mse.argmin()].item()
    ### END SOLUTION


def mse_surface(xs: torch.Tensor, ys: torch.Tensor, ws: torch.Tensor, bs: torch.Tensor) -> torch.Tensor:
    """The MSE of the model y_hat = x * w + b for every pair (w, b) of a grid.

    Args:
        xs, ys: [N] samples, float32 or float64.
        ws: [K] candidate weights; bs: [L] candidate biases (same dtype as xs).
    Returns:
        [K, L], out[k, l] = mean over i of (xs[i] * ws[k] + bs[l] - ys[i]) ** 2:
        rows follow w, columns follow b.
    """
    ### BEGIN SOLUTION
    # TODO(ch02.surface): build the [K, L, N] table of predictions by broadcasting:
    #   ws as [K, 1, 1], bs as [1, L, 1], xs and ys as [1, 1, N]; square the errors and
    #   average over the samples (the last dim).
    y_pred = xs[None, None, :] * ws[:, None, None] + bs[None, :, None]
    return ((y_pred - ys[None, None, :]) ** 2).mean(dim=2)
    ### END SOLUTION


def main() -> None:
    mse = mse_over_grid(X_DATA, Y_DATA, W_GRID)
    for w, m in zip(W_GRID[::5].tolist(), mse[::5].tolist()):
        print(f"w = {w:.1f}  MSE = {m:.4f}")
    print(f"best w on the grid: {best_weight(X_DATA, Y_DATA, W_GRID):.1f}")

    bs = torch.arange(-20, 21) / 10.0  # -2.0 ... 2.0, with an exact 0.0
    surface = mse_surface(X_DATA, Y_DATA, W_GRID, bs)
    k, l = divmod(int(surface.argmin()), len(bs))
    print(f"MSE surface over {len(W_GRID)} x {len(bs)} (w, b) pairs: lowest at "
          f"w = {W_GRID[k].item():.1f}, b = {bs[l].item():.1f}, MSE = {surface[k, l].item():.4f}")


if __name__ == "__main__":
    main()
