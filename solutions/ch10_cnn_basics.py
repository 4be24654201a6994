"""Chapter 10: convolutional networks, and moving the work to the GPU (lecture 10).

A convolution slides a small kernel over the image and sums the products of the
overlapping values. On an input of `size` pixels, a `kernel_size` kernel with `padding`
zeros on each side, moved `stride` pixels at a time, gives

    (size + 2 * padding - kernel_size) // stride + 1

output pixels. `nn.Conv2d` works on 4-D tensors [B, C, H, W] and its weight has the shape
[out_channels, in_channels, kH, kW]. Max pooling keeps the channels and shrinks the image.

The lecture's network on MNIST: two conv -> max-pool -> ReLU stages (1 -> 10 -> 20
channels, 5x5 kernels), then one fully connected layer on the 20 * 4 * 4 = 320 features.

Moving to the GPU takes three steps: find the device, move the model with
`model.to(device)`, and move every batch, the images AND the labels, before using them.
Tensors on different devices cannot be combined, so anything left behind stops the run
with "Expected all tensors to be on the same device".

Run `python ch10_cnn_basics.py` for the demonstration (PRACTICE_EPOCHS sets the number
of epochs, PRACTICE_DATASETS the data folder).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

DATA_DIR = Path(os.environ.get("PRACTICE_DATASETS", Path(__file__).resolve().parent.parent / "datasets"))
MNIST_FILE = "mnist_subset.npz"
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081

# The lecture's worked example: a 5x5 single-channel image and the 3x3 kernel 1..9.
LECTURE_IMAGE = torch.tensor([[3.0, 4.0, 6.0, 5.0, 7.0],
                              [2.0, 4.0, 6.0, 8.0, 2.0],
                              [1.0, 6.0, 7.0, 8.0, 4.0],
                              [9.0, 7.0, 4.0, 6.0, 2.0],
                              [3.0, 7.0, 5.0, 4.0, 1.0]])
LECTURE_KERNEL = torch.arange(1.0, 10.0).view(3, 3)


def conv_output_size(size: int, kernel_size: int, padding: int = 0, stride: int = 1) -> int:
    """The height (or width) of a convolution's output.

    Args:
        size: the input's height (or width), in pixels.
        kernel_size: the kernel's height (or width).
        padding: zeros added on EACH side.
        stride: how far the kernel moves between outputs.
    Returns:
        int, the output size, exactly as nn.Conv2d computes it.
    """
    ### BEGIN SOLUTION
    # TODO(ch10.shapes): count the positions a kernel_size window can take along the padded
    #   input (the padding is added on BOTH sides), moving stride pixels at a time; an
    #   incomplete window at the end does not count. Return a Python int, exactly what
    #   nn.Conv2d gives (lecture 10; the "Shape" section of the nn.Conv2d documentation).
    return (size + 2 * padding - kernel_size) // stride + 1
    ### END SOLUTION


def convolve(image: torch.Tensor, kernel: torch.Tensor, padding: int = 0, stride: int = 1) -> torch.Tensor:
    """Convolve one single-channel image with one kernel, as the lecture does with nn.Conv2d.

    Args:
        image: float32 [H, W].
        kernel: float32 [kH, kW], used as the convolution's weight (no bias).
        padding, stride: as in nn.Conv2d.
    Returns:
        float32 [H_out, W_out] (see conv_output_size).
    """
    ### BEGIN SOLUTION
    # TODO(ch10.shapes): convolve as the lecture does, with an nn.Conv2d of one input and one
    #   output channel, no bias, the kernel's own size and the given padding and stride,
    #   whose weight holds `kernel` as it is (set it without tracking gradients). nn.Conv2d
    #   works on [B, C, H, W] tensors and its weight is [out_channels, in_channels, kH, kW]:
    #   reshape the image and the kernel to fit, and return the [H_out, W_out] map.
    conv = nn.Conv2d(1, 1, kernel_size=tuple(kernel.shape), padding=padding, stride=stride, bias=False)
    with torch.no_grad():
        conv.weight.copy_(kernel.view(1, 1, *kernel.shape))
        out = conv(image.view(1, 1, *image.shape))
    return out[0, 0]
    ### END SOLUTION


class CnnNet(nn.Module):
    """The lecture's CNN for 1x28x28 digits: two conv/pool/ReLU stages, then a linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.pooling = nn.MaxPool2d(2)
        self.fc = nn.Linear(320, 10)  # 20 channels of 4x4 after the second stage

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: float32 [B, 1, 28, 28]. Returns: float32 [B, 10] logits (no softmax)."""
        ### BEGIN SOLUTION
        # TODO(ch10.model): the lecture's two stages, each convolution -> max-pooling -> ReLU
        #   (conv1: [B, 10, 12, 12], then conv2: [B, 20, 4, 4]); flatten each sample to its
        #   320 features, keeping the batch dimension, and return fc's output: raw logits, no
        #   softmax (nn.CrossEntropyLoss applies log-softmax itself).
        batch_size = x.size(0)
        x = F.relu(self.pooling(self.conv1(x)))
        x = F.relu(self.pooling(self.conv2(x)))
        x = x.view(batch_size, -1)
        return self.fc(x)
        ### END SOLUTION


def get_device() -> torch.device:
    """Returns: torch.device("cuda") when a CUDA GPU is available, else torch.device("cpu")."""
    ### BEGIN SOLUTION
    # TODO(ch10.device): the CUDA device when PyTorch reports a usable GPU at the time of the
    #   call, else the CPU device (lecture 10, "moving to the GPU"; the torch.cuda documentation).
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ### END SOLUTION


def train_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer, criterion,
                device: torch.device) -> float:
    """One pass over `loader`, one optimizer step per batch, everything on `device`.

    Args:
        model: maps float32 [B, ...] to float32 [B, C] logits; moved to `device` here
            (model.to(device) does nothing when it is already there).
        loader: yields (inputs float32 [B, ...], targets int64 [B]) on the CPU.
        optimizer: built on the model's parameters.
        criterion: e.g. nn.CrossEntropyLoss(), a mean over the batch.
        device: where the work happens.
    Returns:
        The mean of the batches' losses, a Python float.
    """
    ### BEGIN SOLUTION
    # TODO(ch10.device): the GPU migration. Put the model on `device`, in training mode. For
    #   every batch, bring the inputs AND the targets to the device, then take one optimizer
    #   step as in the lecture's training loop (old gradients cleared first). Return the plain
    #   mean of the batches' losses as a Python float.
    model.to(device)
    model.train()
    total, batches = 0.0, 0
    for inputs, targets in loader:
        inputs, targets = inputs.to(device), targets.to(device)
        loss = criterion(model(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item()
        batches += 1
    return total / batches
    ### END SOLUTION


def evaluate(model: nn.Module, loader, device: torch.device) -> float:
    """Classification accuracy of `model` on `loader`, computed on `device`.

    Args:
        model: maps float32 [B, ...] to float32 [B, C] logits; moved to `device` here.
        loader: yields (images float32 [B, ...], labels int64 [B]) on the CPU.
        device: where the work happens.
    Returns:
        The fraction of samples whose arg-max logit equals the label, a float in [0, 1].
    """
    ### BEGIN SOLUTION
    # TODO(ch10.device): put the model on `device`, in evaluation mode, and run it without
    #   tracking gradients; bring each batch's images AND labels to the device. A prediction
    #   is the class with the largest logit. Return the correct predictions over the number of
    #   samples of the whole loader (not a mean of per-batch accuracies).
    model.to(device)
    model.eval()
    correct, total = 0, 0
    with torch.no_grad():
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            predicted = model(images).argmax(dim=1)
            correct += (predicted == labels).sum().item()
            total += labels.size(0)
    return correct / total
    ### END SOLUTION


def mnist_subset(path: str | os.PathLike, split: str = "train") -> TensorDataset:
    """The bundled MNIST digits, normalised as transforms.Normalize((0.1307,), (0.3081,)) does.

    Args:
        path: mnist_subset.npz.
        split: "train" (4,000 digits) or "test" (1,000).
    Returns:
        A TensorDataset of (float32 [1, 28, 28], int64 label) pairs.
    """
    with np.load(path) as data:
        images = torch.from_numpy(data[f"{split}_images"]).float().div(255)
        labels = torch.from_numpy(data[f"{split}_labels"]).long()
    images = ((images - MNIST_MEAN) / MNIST_STD).unsqueeze(1)
    return TensorDataset(images, labels)


def main() -> None:
    print("the lecture's example, padding=1:\n", convolve(LECTURE_IMAGE, LECTURE_KERNEL, padding=1))
    print("the lecture's example, stride=2:\n", convolve(LECTURE_IMAGE, LECTURE_KERNEL, stride=2))
    print("28x28 through conv 5 -> pool 2 -> conv 5 -> pool 2:",
          conv_output_size(conv_output_size(28, 5) // 2, 5) // 2, "pixels a side")

    torch.manual_seed(0)
    device = get_device()
    print(f"training on {device}")
    train_set = mnist_subset(DATA_DIR / MNIST_FILE, "train")
    test_set = mnist_subset(DATA_DIR / MNIST_FILE, "test")
    train_loader = DataLoader(train_set, batch_size=64, shuffle=True)
    test_loader = DataLoader(test_set, batch_size=256)
    model = CnnNet().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
    criterion = nn.CrossEntropyLoss()
    # 3 epochs by default, well under a minute on a laptop CPU: the lecture's SGD passes 0.9 test
    # accuracy on the bundled digits by then; its 10 epochs add little (PRACTICE_EPOCHS=10 to see).
    for epoch in range(int(os.environ.get("PRACTICE_EPOCHS", "3"))):
        loss = train_epoch(model, train_loader, optimizer, criterion, device)
        accuracy = evaluate(model, test_loader, device)
        print(f"epoch {epoch + 1:2d}  loss {loss:.4f}  test accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
