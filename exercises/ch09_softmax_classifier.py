"""Chapter 09: the softmax classifier on MNIST (lecture 09).

With C classes the network's last layer gives C raw scores, the logits. Softmax turns
them into a distribution (every output > 0, each row sums to 1):

    softmax(z)_i = exp(z_i) / sum_j exp(z_j)

and the loss is the negative log-probability of the true class. nn.CrossEntropyLoss
does both steps (log-softmax, then the negative log-likelihood), so the network itself
ends with a plain Linear layer: no softmax before the loss. Targets are class indices,
a LongTensor [N], not one-hot vectors.

The data: 28x28 grey digits. transforms.ToTensor turns a PIL image (or a uint8 H x W
array) into float32 [1, 28, 28] in [0, 1]; Normalize then standardises it with MNIST's
mean 0.1307 and standard deviation 0.3081.

Run `python ch09_softmax_classifier.py` for the demonstration: it trains on the full
MNIST when `datasets/full/MNIST` holds it (`make data`), otherwise on the bundled
5,000-digit subset (PRACTICE_DATASETS sets the data folder, PRACTICE_EPOCHS the epochs).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

DATA_DIR = Path(os.environ.get("PRACTICE_DATASETS", Path(__file__).resolve().parent.parent / "datasets"))
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081

# The lecture's settings, for the full MNIST (60,000 training images).
BATCH_SIZE = 64
LR = 0.01
MOMENTUM = 0.5
EPOCHS = 10
# The bundled subset has 4,000 training images, so an epoch makes 15x fewer steps: a
# larger learning rate reaches over 90% test accuracy in a few epochs.
SUBSET_LR = 0.1
SUBSET_EPOCHS = 6


def softmax(z: torch.Tensor) -> torch.Tensor:
    """Softmax of every row, written with exp and sum; finite even for logits of +-1000.

    Args:
        z: float [N, C] logits (any float dtype).
    Returns:
        Same shape and dtype: row i is exp(z[i]) / exp(z[i]).sum(); every row sums to 1.
    """
    # TODO(ch09.softmax): write it by hand from exp, max and sum (torch.softmax, F.softmax
    #   and nn.Softmax are what the tests compare with; calling them scores nothing).
    #   exp(1000) overflows to inf, and inf / inf is NaN. Softmax does not change when a row
    #   is shifted by a constant, so first subtract each row's maximum, then exponentiate and
    #   divide by each row's sum. Reduce over dim=1 with keepdim=True, so the [N, 1] result
    #   broadcasts against [N, C]. Lecture 09, "Softmax layer".
    raise NotImplementedError("ch09.softmax: softmax")


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The mean cross-entropy of raw logits against class indices, like nn.CrossEntropyLoss().

    Args:
        logits: float [N, C], raw scores (no softmax applied).
        targets: int64 [N], values in [0, C).
    Returns:
        A 0-d tensor: mean over the N samples of -log softmax(logits)[i, targets[i]].
    """
    # TODO(ch09.cross_entropy): by hand again (no F.cross_entropy, nn.CrossEntropyLoss,
    #   NLLLoss or log_softmax built-ins). Take the log-softmax of each row without overflow
    #   or log(0): shift each row by its max, then subtract the log of the sum of the
    #   exponentials of the shifted row. Pick each row's target entry: one-hot rows with
    #   C = logits.shape[1] columns (F.one_hot makes only max(targets) + 1 columns unless you
    #   give it the number of classes), or gather on dim 1. The loss is minus the picked
    #   log-probability, averaged over the batch.
    raise NotImplementedError("ch09.cross_entropy: cross_entropy")


def mnist_transform() -> transforms.Compose:
    """The lecture's preprocessing: PIL image (or uint8 [28, 28]) -> float32 [1, 28, 28], standardised.

    Returns:
        transforms.Compose of ToTensor() (scales 0..255 to [0, 1]) then
        Normalize((MNIST_MEAN,), (MNIST_STD,)): (x - 0.1307) / 0.3081.
    """
    # TODO(ch09.transform): a transforms.Compose of ToTensor, then Normalize with MNIST_MEAN
    #   and MNIST_STD (each as a one-element tuple, one per channel). Normalize works on
    #   tensors, so the order matters; its arguments are the mean first, then the std.
    raise NotImplementedError("ch09.transform: mnist_transform")


class MnistMLP(nn.Module):
    """Five fully connected layers, 784-512-256-128-64-10, with ReLU between them."""

    def __init__(self) -> None:
        super().__init__()
        # TODO(ch09.model): five Linear layers, 784 -> 512 -> 256 -> 128 -> 64 -> 10. Any
        #   attribute names, any order, or an nn.Sequential: the tests find them by their shapes.
        raise NotImplementedError("ch09.model: MnistMLP.__init__")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x: float32 [N, 1, 28, 28] images (or [N, 784]).
        Returns:
            float32 [N, 10] logits: no softmax, CrossEntropyLoss applies it.
        """
        # TODO(ch09.model): flatten the images to [N, 784] (the input may already be flat);
        #   apply the first four layers, each followed by a ReLU; return the last layer's
        #   output as it is: the logits, no softmax (CrossEntropyLoss applies it).
        raise NotImplementedError("ch09.model: MnistMLP.forward")


def train_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                criterion: nn.Module) -> float:
    """One pass over `loader`, one optimizer step per batch.

    Args:
        model: maps float32 [B, 1, 28, 28] to logits float32 [B, 10].
        loader: yields (images float32 [B, 1, 28, 28], targets int64 [B]).
        optimizer: already built over model.parameters().
        criterion: e.g. nn.CrossEntropyLoss(), called as criterion(logits, targets).
    Returns:
        The mean of the epoch's batch losses, as a Python float.
    """
    # TODO(ch09.train): put the model in training mode; for each batch: zero the gradients,
    #   compute the logits and the loss (criterion on the raw logits), backward, step, and add
    #   the loss as a Python float to a running total; return the mean over the batches.
    raise NotImplementedError("ch09.train: train_epoch")


def evaluate(model: nn.Module, loader: DataLoader) -> float:
    """The fraction of samples whose highest logit is the target class.

    Args:
        model: maps float32 [B, 1, 28, 28] to logits float32 [B, 10].
        loader: yields (images, targets int64 [B]).
    Returns:
        Accuracy in [0, 1] over every sample of the loader (not a percentage).
    """
    # TODO(ch09.train): switch to evaluation mode and turn off gradient tracking
    #   (torch.no_grad); predict each batch's classes with argmax over dim 1, count the
    #   correct ones and the samples (the last batch may be smaller); return the fraction.
    raise NotImplementedError("ch09.train: evaluate")


class MnistSubset(Dataset):
    """Digits from `mnist_subset.npz`, served like torchvision.datasets.MNIST.

    Each sample is (image, label): the image a PIL image of mode "L" (28 x 28, 0..255),
    or `transform(image)` when a transform is given; the label an int in 0..9.
    """

    def __init__(self, path: str | os.PathLike, train: bool = True, transform=None) -> None:
        split = "train" if train else "test"
        with np.load(path) as data:
            self.images = data[f"{split}_images"]   # uint8 [N, 28, 28]
            self.labels = data[f"{split}_labels"]   # int64 [N]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.images[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])


def mnist_subset(path: str | os.PathLike, train: bool = True, transform=None) -> Dataset:
    """The train (4,000 digits) or test (1,000 digits) part of `mnist_subset.npz` as a Dataset."""
    return MnistSubset(path, train=train, transform=transform)


def _datasets(transform) -> tuple[Dataset, Dataset, str, float, int]:
    """(train set, test set, name, learning rate, epochs): the full MNIST when `make data`
    has fetched it, else the bundled subset."""
    try:
        from torchvision import datasets
        full = DATA_DIR / "full"
        return (datasets.MNIST(full, train=True, transform=transform, download=False),
                datasets.MNIST(full, train=False, transform=transform, download=False),
                "MNIST", LR, EPOCHS)
    except RuntimeError:  # not downloaded
        path = DATA_DIR / "mnist_subset.npz"
        return (mnist_subset(path, train=True, transform=transform),
                mnist_subset(path, train=False, transform=transform),
                "the MNIST subset", SUBSET_LR, SUBSET_EPOCHS)


def main() -> None:
    """The lecture's demonstration: train, then measure the test accuracy after every epoch."""
    torch.manual_seed(0)
    train_set, test_set, name, lr, epochs = _datasets(mnist_transform())
    epochs = int(os.environ.get("PRACTICE_EPOCHS", epochs))
    train_loader = DataLoader(train_set, batch_size=BATCH_SIZE, shuffle=True)
    test_loader = DataLoader(test_set, batch_size=1000)
    model = MnistMLP()
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM)
    print(f"{name}: {len(train_set)} training and {len(test_set)} test images, lr {lr}")
    for epoch in range(epochs):
        loss = train_epoch(model, train_loader, optimizer, criterion)
        accuracy = evaluate(model, test_loader)
        print(f"epoch {epoch + 1:2d}  loss {loss:.4f}  test accuracy {accuracy:.1%}")


if __name__ == "__main__":
    main()
