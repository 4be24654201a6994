"""Chapter 05: linear regression with nn.Module (lecture 05).

The lecture's recipe, in four steps: prepare the data, design the model as an
nn.Module, pick a loss and an optimizer, then loop forward -> loss -> zero_grad ->
backward -> step. The data is the lecture's: y = 2x, so the model should learn
w ~ 2, b ~ 0 and predict y(4) ~ 8.

Run `python ch05_linear_regression.py` for the demonstration.
"""
from __future__ import annotations

import random

import torch
from torch import nn

X_DATA = torch.tensor([[1.0], [2.0], [3.0]])
Y_DATA = torch.tensor([[2.0], [4.0], [6.0]])


class LinearModel(nn.Module):
    """y_pred = x @ w.T + b with one input and one output feature."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict y for each sample.

        Args:
            x: float32 [N, 1].
        Returns:
            float32 [N, 1], self.linear applied to x.
        """
        ### BEGIN SOLUTION
        # TODO(ch05.forward): pass x through self.linear and return the result.
        return self.linear(x
        ### END SOLUTION


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 1000,
          lr: float = 0.01, optimizer_cls=torch.optim.SGD) -> list[float]:
    """Fit `model` to (x, y) with the summed squared error, one full-batch step per epoch.

    Args:
        model: maps float32 [N, 1] to float32 [N, 1].
        x, y: float32 [N, 1].
        epochs: number of updates.
        lr: learning rate passed to `optimizer_cls(model.parameters(), lr=lr)`.
        optimizer_cls: an optimizer class from torch.optim.
    Returns:
        The loss of every epoch (before that epoch's update), as Python floats.
    """
    ### BEGIN SOLUTION
    # TODO(ch05.train): fit the model to (x, y) with lecture 05's training cycle: the summed
    #   squared error as the loss (see `reduction` in the nn.MSELoss docs), an optimizer of
    #   class optimizer_cls over the model's parameters, one full-batch update per epoch.
    #   Gradients must not carry over from one epoch to the next. Return every epoch's loss,
    #   taken before that epoch's update, as a Python float.
    criterion = nn.MSELoss(reduction="sum")
    optimizer = optimizer_cls(model.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        loss = criterion(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
    ### END SOLUTION


class TwoLayerNet(nn.Module):
    """Two fully connected layers with a ReLU between them (the "nn.Module" example)."""

    def __init__(self, d_in: int, hidden: int, d_out: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_in, hidden)
        self.linear2 = nn.Linear(hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: float32 [N, d_in]. Returns: float32 [N, d_out], linear2(relu(linear1(x)))."""
        ### BEGIN SOLUTION
        # TODO(ch05.two_layer): the lecture's two-layer net: linear1, a ReLU, then linear2.
        #   The ReLU goes between the layers only: the output of linear2 is returned as it is.
        return self.linear2(self.linear1(x).clamp(min=0))
        ### END SOLUTION


class DynamicNet(nn.Module):
    """A network whose depth is chosen at every forward pass, reusing one middle layer.

    This is the "control flow + weight sharing" example: Python control flow decides
    how many times `middle_linear` is applied, and every application shares its weights.
    """

    def __init__(self, d_in: int, hidden: int, d_out: int) -> None:
        super().__init__()
        self.input_linear = nn.Linear(d_in, hidden)
        self.middle_linear = nn.Linear(hidden, hidden)
        self.output_linear = nn.Linear(hidden, d_out)

    def forward(self, x: torch.Tensor, depth: int | None = None) -> torch.Tensor:
        """Args:
            x: float32 [N, d_in].
            depth: how many times to apply the middle layer (ReLU after each);
                random in 0..3 when None.
        Returns:
            float32 [N, d_out].
        """
        ### BEGIN SOLUTION
        # TODO(ch05.dynamic): the lecture's "control flow + weight sharing" net: input_linear
        #   and a ReLU, then the same middle_linear (and a ReLU) applied `depth` times, then
        #   output_linear, whose result is returned as it is. When depth is None (and only
        #   then: 0 is a valid depth), draw it uniformly from 0, 1, 2, 3 with the `random`
        #   module. The tests read the three layers by the names __init__ gives them.
        if depth is None:
            depth = random.randint(0, 3)
        h = self.input_linear(x).clamp(min=0)
        for _ in range(depth):
            h = self.middle_linear(h).clamp(min=0)
        return self.output_linear(h)
        ### END SOLUTION


def main() -> None:
    torch.manual_seed(0)
    model = LinearModel()
    losses = train(model, X_DATA, Y_DATA, epochs=1000, lr=0.01)
    for epoch in (0, 9, 99, 999):
        print(f"epoch {epoch + 1:4d}  loss {losses[epoch]:.6f}")
    w, b = model.linear.weight.item(), model.linear.bias.item()
    print(f"w = {w:.4f}, b = {b:.4f}")
    with torch.no_grad():
        print(f"y_pred(4.0) = {model(torch.tensor([[4.0]])).item():.4f}  (expected about 8)")


if __name__ == "__main__":
    main()
