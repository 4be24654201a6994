"""Chapter 07: multiple-dimension input, the diabetes network (lecture 07).

Each sample now has several features: one row of the table is one patient, one
column one measurement. A Linear layer maps a batch x: [N, F] to [N, out] in one
matrix product, so stacking layers F -> 6 -> 4 -> 1 with a non-linear activation
between them gives a small network whose last sigmoid outputs P(diabetic).

The data (datasets/diabetes.csv.gz) is the Pima Indians table bundled with the
course: 7 features scaled to [-1, 1], then the 0/1 label. The lecture's file has 8
features; the model takes the width from the data, so either works.

Run `python ch07_multiple_dimension_input.py` for the demonstration: it trains the
network with three activations and compares their held-out accuracy.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

DATA_DIR = Path(os.environ.get("PRACTICE_DATASETS",
                               Path(__file__).resolve().parent.parent / "datasets"))


def load_diabetes(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Read the diabetes table: comma-separated floats, no header, label in the last column.

    Args:
        path: a .csv or .csv.gz file (np.loadtxt reads both).
    Returns:
        x: float32 [N, F], every column but the last.
        y: float32 [N, 1], the last column, kept 2-D (a column, not a vector).
    """
    ### BEGIN SOLUTION
    # TODO(ch07.load): read the comma-separated file with np.loadtxt, asking for float32 (its
    #   dtype argument; float64 would not mix with the model's weights). The features are
    #   every column but the last; the label is the last column kept 2-D, [N, 1] (index the
    #   column with a list: a plain integer index drops the dimension and gives [N]). Return
    #   both as tensors (torch.from_numpy). Lecture 07, "Prepare dataset".
    data = np.loadtxt(path, delimiter=",", dtype=np.float32)
    return torch.from_numpy(data[:, :-1]), torch.from_numpy(data[:, [-1]])
    ### END SOLUTION


class DiabetesModel(nn.Module):
    """Three Linear layers, n_features -> 6 -> 4 -> 1, with `activation` after the first
    two and a sigmoid at the end: the output is P(y = 1 | x)."""

    def __init__(self, n_features: int, activation: type[nn.Module] = nn.Sigmoid) -> None:
        """Args:
            n_features: F, the number of input columns.
            activation: a module class such as nn.Sigmoid, nn.ReLU or nn.Tanh (the class,
                not an instance).
        """
        super().__init__()
        ### BEGIN SOLUTION
        # TODO(ch07.model): create three Linear layers, n_features -> 6, 6 -> 4 and 4 -> 1 (the
        #   width comes from n_features, never a fixed number), one instance of the `activation`
        #   class (it is a class: call it to get a module) and a sigmoid for the output. Any
        #   attribute names, any order, or one nn.Sequential: the tests find the layers by their
        #   shapes.
        self.linear1 = nn.Linear(n_features, 6)
        self.linear2 = nn.Linear(6, 4)
        self.linear3 = nn.Linear(4, 1)
        self.activation = activation()
        self.sigmoid = nn.Sigmoid()
        ### END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: float32 [N, F]. Returns: float32 [N, 1], probabilities in (0, 1)."""
        ### BEGIN SOLUTION
        # TODO(ch07.model): Linear (F -> 6), activation, Linear (6 -> 4), activation, Linear
        #   (4 -> 1), sigmoid. The last step is always the sigmoid, whatever the activation
        #   (ReLU's output is not a probability).
        x = self.activation(self.linear1(x))
        x = self.activation(self.linear2(x))
        return self.sigmoid(self.linear3(x))
        ### END SOLUTION


def train_full_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 100,
                     lr: float = 0.1) -> list[float]:
    """Train on the whole set at every step: mean BCE, SGD.

    Args:
        model: maps float32 [N, F] to probabilities float32 [N, 1].
        x: float32 [N, F]. y: float32 [N, 1], labels 0.0 or 1.0.
        epochs: number of updates (one per epoch: the batch is the whole set).
        lr: learning rate of torch.optim.SGD.
    Returns:
        The loss of every epoch (before that epoch's update), as Python floats.
    """
    ### BEGIN SOLUTION
    # TODO(ch07.train): the loss is the mean binary cross-entropy of probabilities (nn.BCELoss;
    #   not BCEWithLogitsLoss, which would apply a second sigmoid), the optimizer SGD over the
    #   model's parameters with the `lr` argument. Every epoch: forward the whole x, compute
    #   the loss, zero the gradients, backward, step, and keep the loss as a Python float
    #   (the one computed before the update). Keep the signature's defaults.
    criterion = nn.BCELoss()
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


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """The fraction of samples whose prediction (probability >= 0.5 means 1) equals the label.

    Args:
        model: maps float32 [N, F] to probabilities float32 [N, 1].
        x: float32 [N, F]. y: float32 [N, 1], labels 0.0 or 1.0.
    Returns:
        A Python float in [0, 1]. No autograd graph is built (torch.no_grad()).
    """
    ### BEGIN SOLUTION
    # TODO(ch07.accuracy): without gradient tracking (torch.no_grad), predict, turn the
    #   probabilities into 0/1 (0.5 and above is class 1), compare with y (keep both [N, 1]:
    #   comparing [N] with [N, 1] would broadcast to [N, N]) and return the fraction of equal
    #   ones as a Python float.
    with torch.no_grad():
        predicted = (model(x) >= 0.5).float()
        return (predicted == y).float().mean().item()
    ### END SOLUTION


def main() -> None:
    torch.set_num_threads(1)  # tensors this small train fastest without thread hand-offs
    x, y = load_diabetes(DATA_DIR / "diabetes.csv.gz")
    print(f"diabetes: x {list(x.shape)} {x.dtype}, y {list(y.shape)}, {y.mean().item():.1%} diabetic")
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(x), generator=generator)
    train, test = order[:400], order[400:]
    majority = max(y[test].mean().item(), 1 - y[test].mean().item())
    print(f"always guessing the majority class: {majority:.3f} on the {len(test)} held-out patients")
    for activation in (nn.Sigmoid, nn.ReLU, nn.Tanh):
        torch.manual_seed(0)
        model = DiabetesModel(x.shape[1], activation)
        losses = train_full_batch(model, x[train], y[train], epochs=1000, lr=0.1)
        print(f"{activation.__name__:8s} loss {losses[0]:.4f} -> {losses[-1]:.4f}   "
              f"accuracy train {accuracy(model, x[train], y[train]):.3f}, "
              f"held-out {accuracy(model, x[test], y[test]):.3f}")
    print("(sigmoid between the layers learns slowly at lr = 0.1: its gradients are small)")


if __name__ == "__main__":
    main()
