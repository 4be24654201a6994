"""Chapter 08: Dataset and DataLoader, and the Windows guard (lecture 08).

Mini-batch training: an epoch is one pass over every sample, a batch is the group of
samples behind one update, and an iteration is one batch. `Dataset` says how many
samples there are (`__len__`) and how to fetch one (`__getitem__`); `DataLoader`
groups them into shuffled batches, optionally fetched by `num_workers` worker
processes.

The data is the Pima diabetes table of chapter 07 (features scaled to [-1, 1], the
label 0/1 in the last column), trained with the same `F -> 6 -> 4 -> 1` sigmoid network.

Workers and the `spawn` start method: on Windows and macOS every worker is a fresh
Python process that imports this file to find `DiabetesDataset`. Whatever runs at
module level then runs again in each worker, and a worker that tries to start its own
workers stops with "An attempt has been made to start a new process before the
current process has finished its bootstrapping phase". The training code therefore
lives in `main()`, called only when the file runs as a script.

Run `python ch08_dataset_dataloader.py` for the demonstration (PRACTICE_EPOCHS sets
the number of epochs, PRACTICE_DATASETS the data folder).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

DATA_DIR = Path(os.environ.get("PRACTICE_DATASETS", Path(__file__).resolve().parent.parent / "datasets"))
DIABETES_FILE = "diabetes.csv.gz"


class DiabetesDataset(Dataset):
    """The diabetes table, kept in memory: one (features, label) pair per patient.

    The file has no header; every row is comma-separated floats, all columns but
    the last are features and the last is the label (0 or 1).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        """Load the whole table with np.loadtxt (it is small).

        Args:
            path: a .csv or .csv.gz file as described above, N rows of F + 1 columns.
        Sets:
            self.x_data: float32 [N, F]; self.y_data: float32 [N, 1]; self.len: N.
        """
        ### BEGIN SOLUTION
        # TODO(ch08.dataset): read the file with np.loadtxt(path, delimiter=",", dtype=np.float32);
        #   keep every column but the last as self.x_data and the last column as self.y_data,
        #   still 2-D ([N, 1]: slice with [-1] inside brackets), both as tensors
        #   (torch.from_numpy); remember the number of rows as self.len.
        xy = np.loadtxt(path, delimiter=",", dtype=np.float32)
        self.len = xy.shape[0]
        self.x_data = torch.from_numpy(xy[:, :-1])
        self.y_data = torch.from_numpy(xy[:, [-1]])
        ### END SOLUTION

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns: the sample `index` as (float32 [F], float32 [1])."""
        ### BEGIN SOLUTION
        # TODO(ch08.dataset): return the features and the label of row `index`, as a tuple.
        return self.x_data[index], self.y_data[index]
        ### END SOLUTION

    def __len__(self) -> int:
        """Returns: the number of samples N (rows, not columns)."""
        ### BEGIN SOLUTION
        # TODO(ch08.dataset): return the number of rows read in __init__.
        return self.len
        ### END SOLUTION


def make_loader(dataset: Dataset, batch_size: int = 32, shuffle: bool = True,
                num_workers: int = 2) -> DataLoader:
    """A DataLoader over `dataset` with the given batch size, shuffling and workers.

    Args:
        dataset: any map-style Dataset.
        batch_size: samples per batch (the last batch may be smaller).
        shuffle: draw a new random order every epoch.
        num_workers: worker processes that fetch batches (0: fetch in this process).
    Returns:
        A DataLoader whose batches stack the samples: for DiabetesDataset,
        (float32 [B, F], float32 [B, 1]).
    """
    ### BEGIN SOLUTION
    # TODO(ch08.loader): build and return a DataLoader, passing on all three settings
    #   (dataset=..., batch_size=..., shuffle=..., num_workers=...).
    return DataLoader(dataset=dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers)
    ### END SOLUTION


class DiabetesModel(nn.Module):
    """Chapter 07's network: F -> 6 -> 4 -> 1 with sigmoids; [N, F] -> [N, 1] probabilities."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(n_features, 6)
        self.linear2 = nn.Linear(6, 4)
        self.linear3 = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.sigmoid(self.linear1(x))
        x = torch.sigmoid(self.linear2(x))
        return torch.sigmoid(self.linear3(x))


def train_minibatch(model: nn.Module, loader: DataLoader, epochs: int = 100,
                    lr: float = 0.01) -> list[float]:
    """Train `model` with mini-batches from `loader`: one SGD update per batch.

    Args:
        model: maps float32 [B, F] to probabilities float32 [B, 1].
        loader: yields (inputs float32 [B, F], labels float32 [B, 1]).
        epochs: passes over the whole loader.
        lr: learning rate of torch.optim.SGD.
    Returns:
        For every epoch, the mean of its batch losses (nn.BCELoss(), a mean over
        each batch), as a Python float.
    """
    ### BEGIN SOLUTION
    # TODO(ch08.train): build nn.BCELoss() and torch.optim.SGD(model.parameters(), lr=lr).
    #   Every epoch, for each (inputs, labels) batch of the loader: predict, compute the
    #   loss, zero the gradients, backward, step, and add loss.item() to a running total;
    #   at the end of the epoch keep total / number of batches.
    criterion = nn.BCELoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    history = []
    for _ in range(epochs):
        total, batches = 0.0, 0
        for inputs, labels in loader:
            loss = criterion(model(inputs), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
            batches += 1
        history.append(total / batches)
    return history
    ### END SOLUTION


def main() -> None:
    """The lecture's demonstration: mini-batches of 32, shuffled, fetched by two workers.

    The lecture runs 100 epochs at lr=0.01 on the file as it is. This small network then
    stays on a plateau: its three sigmoid layers start almost flat, every output close to
    the share of 1s in the labels (0.33), the gradients are tiny, and it keeps answering
    0 for every patient (accuracy 0.667, the loss stuck near 0.64) for hundreds of epochs.
    Two changes make it learn in a few epochs: standardised features (each column shifted
    to mean 0 and scaled to standard deviation 1; in the file most columns sit around -0.5
    with a spread of about 0.3) and a larger step, lr=2.0. Ten epochs then reach about 79%.
    Few epochs also keep the run short: the two workers are started afresh every epoch,
    which on Windows/macOS (spawn) costs a second or two each time.
    """
    epochs = int(os.environ.get("PRACTICE_EPOCHS", "10"))
    path = DATA_DIR / DIABETES_FILE
    if not path.is_file():
        print(f"{path} not found: set PRACTICE_DATASETS to the folder with {DIABETES_FILE}")
        return
    torch.manual_seed(0)
    dataset = DiabetesDataset(path)
    # standardise the features (see above): without it, and at lr=0.01, nothing is learnt
    dataset.x_data = (dataset.x_data - dataset.x_data.mean(dim=0)) / dataset.x_data.std(dim=0)
    loader = make_loader(dataset, batch_size=32, shuffle=True, num_workers=2)
    model = DiabetesModel(n_features=dataset[0][0].shape[0])
    history = train_minibatch(model, loader, epochs=epochs, lr=2.0)
    for epoch in sorted({0, len(history) // 2, len(history) - 1}):
        print(f"epoch {epoch + 1:3d}  mean batch loss {history[epoch]:.4f}")
    x, y = next(iter(DataLoader(dataset, batch_size=len(dataset))))  # the whole table at once
    with torch.no_grad():
        accuracy = ((model(x) > 0.5) == (y > 0.5)).float().mean().item()
    print(f"{len(dataset)} samples, {len(loader)} batches per epoch, accuracy {accuracy:.3f} "
          "(always answering 0 would give 0.667)")


### BEGIN SOLUTION
# TODO(ch08.guard): the line below runs the demonstration whenever anything imports this
#   file: the tests do, and so does every DataLoader worker on Windows and macOS, where the
#   `spawn` start method starts each worker as a fresh Python that imports this file again
#   (a worker reaching main() tries to start workers of its own and stops with "...before
#   the current process has finished its bootstrapping phase"). Make main() run only when
#   the file is executed as a script (`python ch08_dataset_dataloader.py`), and keep the
#   top level of the file free of anything else that builds data or trains, so importing
#   it only defines the functions and classes. See lecture 08 (the Windows guard), the
#   Python docs "__main__ - Top-level code environment" and, in the multiprocessing docs,
#   "Safe importing of main module".
if __name__ == "__main__":
    main()
### END SOLUTION
### BEGIN STUB
# main()
### END STUB
