"""Chapter 01: tensors, views, broadcasting (the 60-minute blitz and the tensor notes).

A tensor is a header (shape, strides, offset) over a block of memory, its storage.
Several tensors can share one storage: `view` changes only the header, so writing
through a view changes the original; `torch.from_numpy` shares the array's memory;
methods ending in `_` (`add_`) change a tensor in place. Broadcasting stretches
dimensions of size 1 so that elementwise operations replace Python loops, and
`gather` picks one element per row by index.

Run `python ch01_tensors.py` for the demonstration.
"""
from __future__ import annotations

import numpy as np
import torch


def flatten_images(x: torch.Tensor) -> torch.Tensor:
    """Flatten every image of a batch into one row, without copying.

    Args:
        x: float32 [B, C, H, W], contiguous.
    Returns:
        float32 [B, C*H*W], a view of x: it shares x's storage, so writing into the
        result changes x (row b holds x[b] in C, H, W order).
    """
    ### BEGIN SOLUTION
    # TODO(ch01.view): keep dim 0 (the batch) and merge the others into one with Tensor.view
    #   (a size of -1 lets torch infer it). A view copies nothing, so do not clone the result.
    return x.view(x.size(0), -1)
    ### END SOLUTION


def outer_sum(col: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
    """Every pairwise sum of two vectors, by broadcasting.

    Args:
        col: float32 [N].
        row: float32 [M].
    Returns:
        float32 [N, M] with out[i, j] = col[i] + row[j].
    """
    ### BEGIN SOLUTION
    # TODO(ch01.broadcast): make col a column [N, 1] and row a row [1, M] (indexing with
    #   None or unsqueeze), then add them: broadcasting fills in the rest. No Python loops.
    return col[:, None] + row[None, :]
    ### END SOLUTION


def pick(scores: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Select one score per row.

    Args:
        scores: float32 [N, C].
        index: int64 [N], values in [0, C).
    Returns:
        float32 [N], out[i] = scores[i, index[i]].
    """
    ### BEGIN SOLUTION
    # TODO(ch01.gather): use scores.gather on dim 1 with index shaped [N, 1],
    #   then drop the extra dim so the result has shape [N].
    return scores.gather(1, index.unsqueeze(1)).squeeze(1)
    ### END SOLUTION


def count_correct(logits: torch.Tensor, labels: torch.Tensor) -> int:
    """How many arg-max predictions equal their labels.

    Args:
        logits: float32 [N, C], one row of class scores per sample.
        labels: int64 [N], values in [0, C).
    Returns:
        A Python int in [0, N].
    """
    ### BEGIN SOLUTION
    # TODO(ch01.accuracy): the prediction of each row is the arg-max over the classes
    #   (dim=1); compare with labels, count the matches and return a Python int.
    predictions = logits.argmax(dim=1)
    return int((predictions == labels).sum().item())
    ### END SOLUTION


def as_tensor_shared(a: np.ndarray) -> torch.Tensor:
    """A tensor over the same memory as a NumPy array.

    Args:
        a: a NumPy array of any shape and numeric dtype.
    Returns:
        A tensor of the same shape and matching dtype (float64 stays float64) that
        shares memory with a: writes to either show in the other.
    """
    ### BEGIN SOLUTION
    # TODO(ch01.numpy): wrap the array without copying it (torch.tensor(a) makes a copy).
    return torch.from_numpy(a)
    ### END SOLUTION


def add_inplace_(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Add y into x in place, like the `_` methods of the tensor API.

    Args:
        x: float32 [*shape].
        y: float32, broadcastable to x's shape.
    Returns:
        x itself (the same object), now holding x + y.
    """
    ### BEGIN SOLUTION
    # TODO(ch01.inplace): use an in-place method (its name ends in `_`) and return x.
    #   `x = x + y` only rebinds the local name to a new tensor.
    x.add_(y)
    return x
    ### END SOLUTION


def main() -> None:
    torch.manual_seed(0)
    images = torch.randn(2, 3, 4, 4)
    flat = flatten_images(images)
    flat[0, 0] = 100.0
    print(f"flatten_images: {list(images.shape)} -> {list(flat.shape)}; "
          f"after flat[0, 0] = 100, images[0, 0, 0, 0] = {images[0, 0, 0, 0].item():.0f}")

    print("outer_sum([0, 10, 20], [1, 2]) =\n", outer_sum(torch.tensor([0.0, 10.0, 20.0]),
                                                       torch.tensor([1.0, 2.0])))

    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]])
    labels = torch.tensor([1, 2])
    print(f"pick(scores, {labels.tolist()}) = {[round(v, 4) for v in pick(scores, labels).tolist()]}")
    print(f"count_correct(scores, {labels.tolist()}) = {count_correct(scores, labels)}")

    array = np.zeros(3)
    shared = as_tensor_shared(array)
    shared[1] = 5.0
    print(f"as_tensor_shared: after shared[1] = 5 the array is {array.tolist()}")

    x = torch.ones(2, 2)
    same = add_inplace_(x, torch.tensor([1.0, 2.0]))
    print(f"add_inplace_: returned x itself: {same is x}; x = {x.tolist()}")


if __name__ == "__main__":
    main()
