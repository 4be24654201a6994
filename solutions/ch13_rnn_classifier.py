"""Chapter 13: classifying surnames by language with a GRU (lecture 13).

A name is a sequence of characters; each character becomes its ASCII code, the codes go
through an embedding, a bidirectional GRU reads the sequence, and a linear layer maps the
GRU's final hidden states to one score per language.

Names have different lengths, so a batch is padded with zeros up to its longest name.
The GRU must not read that padding: `pack_padded_sequence` tells it where every name
ends. Packing wants the batch sorted by length, longest first -- and when the names are
reordered, their labels must be reordered with them.

Data: datasets/names_train.csv.gz and names_test.csv.gz, lines `Surname,Language`
(12 languages). Run `python ch13_rnn_classifier.py` for the demonstration.
"""
from __future__ import annotations

import csv
import gzip
import math
import os
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

DATA_DIR = Path(os.environ.get("PRACTICE_DATASETS", Path(__file__).resolve().parent.parent / "datasets"))

# The lecture's settings.
HIDDEN_SIZE = 100
BATCH_SIZE = 256
N_LAYER = 2
N_EPOCHS = 100
N_CHARS = 128  # ASCII
LR = 0.001     # Adam


def load_names(path: str | os.PathLike,
               languages: list[str] | None = None) -> tuple[list[str], torch.Tensor, list[str]]:
    """Read a names file (gzip-compressed CSV, lines `Surname,Language`).

    Args:
        path: e.g. DATA_DIR / "names_train.csv.gz".
        languages: the language list to index by. None builds it from this file: the
            distinct languages, sorted. Pass the training file's list when reading the test file.
    Returns:
        names: list[str] of length N, in file order.
        labels: int64 [N], labels[i] = languages.index(language of names[i]).
        languages: list[str], the class names.
    """
    with gzip.open(path, "rt", encoding="ascii", newline="") as f:
        rows = [(name, language) for name, language in csv.reader(f)]
    if languages is None:
        languages = sorted({language for _, language in rows})
    index = {language: i for i, language in enumerate(languages)}
    names = [name for name, _ in rows]
    labels = torch.tensor([index[language] for _, language in rows], dtype=torch.long)
    return names, labels, list(languages)


def name_to_codes(name: str) -> list[int]:
    """The ASCII code of every character.

    Args:
        name: an ASCII string, e.g. "Adsit".
    Returns:
        list[int] of len(name) codes in [0, 128), e.g. [65, 100, 115, 105, 116].
    """
    ### BEGIN SOLUTION
    # TODO(ch13.encode): one integer per character, in order: its ASCII code (the built-in ord()),
    #   with the case and the punctuation kept as they are.
    return [ord(c) for c in name]
    ### END SOLUTION


def make_batch(names: list[str], labels) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Turn names into one zero-padded batch, sorted by length, longest first.

    Args:
        names: B strings.
        labels: B class indices (a list of ints or an int64 [B] tensor), labels[i] for names[i].
    Returns:
        seq: int64 [B, T] with T = the longest length; row j holds the codes of the j-th name in
            sorted order, followed by zeros.
        lengths: int64 [B], the names' lengths in sorted (non-increasing) order.
        labels: int64 [B], the labels in the same sorted order, so labels[j] belongs to row j.
    """
    ### BEGIN SOLUTION
    # TODO(ch13.batch): encode every name with name_to_codes; start from an int64 tensor of
    #   zeros [B, T] (T = the longest name) and write each name's codes at the start of its row;
    #   lengths holds every name's length. Then sort by length, longest first: Tensor.sort with
    #   descending=True returns the permutation as well as the sorted values (see the
    #   torch.sort docs); apply that same permutation to the rows AND to the labels.
    codes = [name_to_codes(name) for name in names]
    lengths = torch.tensor([len(c) for c in codes], dtype=torch.long)
    seq = torch.zeros(len(codes), int(lengths.max()), dtype=torch.long)
    for i, c in enumerate(codes):
        seq[i, :len(c)] = torch.tensor(c, dtype=torch.long)
    lengths, order = lengths.sort(descending=True)
    labels = torch.as_tensor(labels, dtype=torch.long)
    return seq[order], lengths, labels[order]
    ### END SOLUTION


class RNNClassifier(nn.Module):
    """Embedding -> (bi)directional GRU over the packed batch -> Linear on the final hidden states."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int, n_layers: int = 1,
                 bidirectional: bool = True) -> None:
        """Args:
            input_size: number of distinct codes (N_CHARS = 128 for ASCII).
            hidden_size: embedding size and GRU hidden size.
            output_size: number of classes (languages).
            n_layers: stacked GRU layers.
            bidirectional: read each name in both directions.
        """
        super().__init__()
        self.hidden_size = hidden_size
        self.n_layers = n_layers
        self.n_directions = 2 if bidirectional else 1
        ### BEGIN SOLUTION
        # TODO(ch13.model): three layers (the tests find them by type, whatever you name them):
        #   an nn.Embedding from input_size codes to vectors of hidden_size; an nn.GRU reading
        #   those vectors with hidden_size units, n_layers layers, batch-first input, and
        #   bidirectional as given; an nn.Linear to output_size scores that reads the last
        #   layer's final hidden state of every direction, side by side (how many features is
        #   that?). See the nn.Embedding, nn.GRU and nn.Linear docs.
        self.embedding = nn.Embedding(input_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, n_layers, batch_first=True, bidirectional=bidirectional)
        self.fc = nn.Linear(hidden_size * self.n_directions, output_size)
        ### END SOLUTION

    def forward(self, seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Scores of every class for a padded batch.

        Args:
            seq: int64 [B, T], codes padded with zeros, rows sorted by length, longest first.
            lengths: int64 [B], the true length of every row (non-increasing).
        Returns:
            float32 [B, output_size] logits.
        """
        ### BEGIN SOLUTION
        # TODO(ch13.model): embed seq ([B, T, H]) and pack it with pack_padded_sequence (see its
        #   docs: batch-first input, and the lengths must be a CPU tensor whatever the model's
        #   device), so that the GRU stops at every name's end and never reads the padding.
        #   Run the GRU; if you pass an initial hidden state, create it on the input's device
        #   (leaving it out gives zeros). The GRU's second output holds the final hidden states,
        #   [n_layers * n_directions, B, H] (the nn.GRU docs say how layers and directions are
        #   laid out). Give the linear layer, for every name, the LAST layer's final states of
        #   both directions joined into one vector of n_directions * H features (one direction:
        #   the last layer's final state alone), keeping each name's states in its own row.
        embedded = self.embedding(seq)
        packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True)
        _, hidden = self.gru(packed)
        if self.n_directions == 2:
            last = torch.cat([hidden[-1], hidden[-2]], dim=1)
        else:
            last = hidden[-1]
        return self.fc(last)
        ### END SOLUTION


def train_epoch(model: nn.Module, names: list[str], labels, optimizer: torch.optim.Optimizer,
                criterion: nn.Module, batch_size: int = BATCH_SIZE) -> float:
    """One pass over the names in the given order, one optimizer step per batch.

    Args:
        model: an RNNClassifier (anything called as model(seq, lengths) -> [B, C] logits).
        names: N strings; shuffle them (with their labels) between epochs yourself.
        labels: int64 [N] (or list of ints), the class of every name.
        optimizer: built on model.parameters(), e.g. Adam(lr=LR).
        criterion: e.g. nn.CrossEntropyLoss(), the batch's mean loss.
        batch_size: names per batch: names[0:batch_size], names[batch_size:2*batch_size], ...
    Returns:
        The mean of the batches' losses, a Python float.
    """
    ### BEGIN SOLUTION
    # TODO(ch13.train): put the model in training mode; for every slice of batch_size names,
    #   in order: batch it with make_batch (and use the labels make_batch returns: they follow
    #   the sorted rows), compute the loss, clear the old gradients, back-propagate and take a
    #   step. Return the mean of the batches' losses as a Python float (lecture 13's loop).
    model.train()
    labels = torch.as_tensor(labels, dtype=torch.long)
    total, batches = 0.0, 0
    for start in range(0, len(names), batch_size):
        seq, lengths, target = make_batch(names[start:start + batch_size], labels[start:start + batch_size])
        loss = criterion(model(seq, lengths), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item()
        batches += 1
    return total / max(batches, 1)
    ### END SOLUTION


def evaluate(model: nn.Module, names: list[str], labels, batch_size: int = 1024) -> float:
    """Accuracy of the model's arg-max predictions.

    Args:
        model: called as model(seq, lengths) -> [B, C] logits.
        names: N strings.
        labels: int64 [N] (or list of ints).
        batch_size: names per forward pass.
    Returns:
        The fraction of names classified correctly, a float in [0, 1].
    """
    ### BEGIN SOLUTION
    # TODO(ch13.train): evaluation mode and no gradient tracking; batch the names with
    #   make_batch and compare the arg-max of the logits with the labels make_batch returned
    #   (sorted like the rows). The accuracy is the number of correct names over ALL names:
    #   the last batch may be smaller, so do not average the batches' accuracies.
    model.eval()
    labels = torch.as_tensor(labels, dtype=torch.long)
    correct = 0
    with torch.no_grad():
        for start in range(0, len(names), batch_size):
            chunk = slice(start, start + batch_size)
            seq, lengths, target = make_batch(names[chunk], labels[chunk])
            correct += int((model(seq, lengths).argmax(dim=1) == target).sum())
    return correct / max(len(names), 1)
    ### END SOLUTION


def _time_since(start: float) -> str:
    s = time.time() - start
    return f"{math.floor(s / 60)}m {s - 60 * math.floor(s / 60):.0f}s"


def main(epochs: int = 5) -> None:
    train_names, train_labels, languages = load_names(DATA_DIR / "names_train.csv.gz")
    test_names, test_labels, _ = load_names(DATA_DIR / "names_test.csv.gz", languages)
    majority = test_labels.bincount(minlength=len(languages)).max().item() / len(test_labels)
    print(f"{len(train_names)} training and {len(test_names)} test names, {len(languages)} languages; "
          f"always guessing the commonest language scores {majority:.1%}")

    # A GRU over short names runs many tiny steps; extra threads only add synchronisation
    # (on a busy 2-core machine one thread is several times faster than two).
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = RNNClassifier(N_CHARS, HIDDEN_SIZE, len(languages), N_LAYER)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    criterion = nn.CrossEntropyLoss()
    start = time.time()
    # The lecture trains for N_EPOCHS = 100; five epochs show the trend in under a minute
    # (test accuracy keeps rising to about 72% by epoch 10, then levels off on this data).
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(train_names))
        loss = train_epoch(model, [train_names[i] for i in order], train_labels[order], optimizer, criterion)
        acc = evaluate(model, test_names, test_labels)
        print(f"[{_time_since(start)}] epoch {epoch:3d}  loss {loss:.3f}  test accuracy {acc:.1%}")

    # Names the model has not trained on (none is in the training file), each from one of
    # the 12 languages.
    model.eval()
    with torch.no_grad():
        for name, language in [("Schumacher", "German"), ("Lewandowski", "Polish"), ("Esposito", "Italian"),
                               ("Dubois", "French"), ("van den Berg", "Dutch"), ("Garcia", "Spanish"),
                               ("Andersson", "Swedish"), ("Horvat", "Croatian")]:
            seq, lengths, _ = make_batch([name], [0])
            guess = languages[model(seq, lengths).argmax(dim=1).item()]
            print(f"  {name:12s} ({language:8s}) -> {guess}")


if __name__ == "__main__":
    main()
