"""Chapter 06: logistic regression, classification with a sigmoid (lecture 06).

The lecture's question: a student studied x hours; will they pass? With three
students (1, 2 and 3 hours; only the last passed) the model outputs a probability
P(pass | x) = sigmoid(w * x + b) instead of a real number, and the loss becomes the
binary cross-entropy (BCE) between that probability and the 0/1 label:

    loss = -(y * log(y_pred) + (1 - y) * log(1 - y_pred))

The training loop is the one of chapter 05; only the model and the loss change.
After training, P(pass | 4 hours) is well above 0.5 and the decision boundary
(P = 0.5) lies between 2 and 3 hours.

Run `python ch06_logistic_regression.py` for the demonstration.
"""
from __future__ import annotations

import torch
from torch import nn

X_DATA = torch.tensor([[1.0], [2.0], [3.0]])   # hours studied
Y_DATA = torch.tensor([[0.0], [0.0], [1.0]])   # 1 = passed

# Probabilities are clamped to [EPS, 1 - EPS] before the log. EPS must survive float32:
# 1 - 1e-12 rounds to exactly 1.0 in float32, 1 - 1e-7 does not.
EPS = 1e-7


class LogisticRegressionModel(nn.Module):
    """P(y = 1 | x) = sigmoid(x @ w.T + b), one input feature."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict the probability of class 1 for each sample.

        Args:
            x: float32 [N, 1].
        Returns:
            float32 [N, 1], values in (0, 1): torch.sigmoid(self.linear(x)).
        """
        ### BEGIN SOLUTION
        # TODO(ch06.model): lecture 06's logistic unit: the output of self.linear squashed
        #   into (0, 1) by the sigmoid (torch.sigmoid), one probability per sample, [N, 1].
        return torch.sigmoid(self.linear(x))
        ### END SOLUTION


def binary_cross_entropy(y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy, written by hand (equal to F.binary_cross_entropy).

    Args:
        y_pred: float [N, 1], predicted probabilities in [0, 1] (0 and 1 included).
        y: float [N, 1], targets in [0, 1] (usually exactly 0 or 1).
    Returns:
        A scalar tensor (0-dim, dtype of y_pred): the mean over all elements of
        -(y * log(y_pred) + (1 - y) * log(1 - y_pred)). Finite, with finite gradients,
        even where y_pred is exactly 0 or 1.
    """
    ### BEGIN SOLUTION
    # TODO(ch06.bce): clamp y_pred to [EPS, 1 - EPS] so that log never sees 0, then return
    #   the mean of -(y * log(p) + (1 - y) * log(1 - p)). Use torch operations only (no
    #   F.binary_cross_entropy / nn.BCELoss) and keep the result a tensor for autograd.
    p = y_pred.clamp(EPS, 1 - EPS)
    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()
    ### END SOLUTION


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 1000,
          lr: float = 0.01) -> list[float]:
    """Fit `model` to (x, y) with the summed BCE and SGD, one full-batch step per epoch.

    Args:
        model: maps float32 [N, 1] to probabilities float32 [N, 1].
        x: float32 [N, 1]. y: float32 [N, 1], labels 0.0 or 1.0.
        epochs: number of updates.
        lr: learning rate of torch.optim.SGD.
    Returns:
        The loss of every epoch (before that epoch's update), as Python floats.
    """
    ### BEGIN SOLUTION
    # TODO(ch06.train): the training cycle of chapter 05 with lecture 06's loss: the summed
    #   binary cross-entropy (see `reduction` in the nn.BCELoss docs) and torch.optim.SGD over
    #   the model's parameters, one full-batch update per epoch, no gradient carried over
    #   from one epoch to the next. Return every epoch's loss, taken before that epoch's
    #   update, as a Python float.
    criterion = nn.BCELoss(reduction="sum")
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        loss = criterion(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
    ### END SOLUTION


def main() -> None:
    torch.manual_seed(0)
    model = LogisticRegressionModel()
    losses = train(model, X_DATA, Y_DATA, epochs=1000, lr=0.01)
    for epoch in (0, 9, 99, 999):
        print(f"epoch {epoch + 1:4d}  loss {losses[epoch]:.6f}")
    w, b = model.linear.weight.item(), model.linear.bias.item()
    print(f"w = {w:.4f}, b = {b:.4f}, decision boundary at {-b / w:.2f} hours")
    hours = torch.linspace(0.0, 6.0, 7).view(-1, 1)
    with torch.no_grad():
        probs = model(hours)
    for h, p in zip(hours.flatten().tolist(), probs.flatten().tolist()):
        print(f"P(pass | {h:.0f} hours) = {p:.3f}  {'#' * round(40 * p)}")
    edge = torch.tensor([[0.0], [1.0]])
    print(f"hand-written BCE at y_pred = 0 and 1: {binary_cross_entropy(edge, 1 - edge).item():.3f} "
          "(finite thanks to the clamp)")


if __name__ == "__main__":
    main()
