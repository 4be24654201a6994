"""Chapter 12: recurrent networks, one cell at a time (lecture 12).

An RNN cell reads one element of a sequence and the previous hidden state and returns
the next hidden state:

    h_t = tanh(x_t @ W_ih.T + b_ih + h_{t-1} @ W_hh.T + b_hh)

The same cell (the same weights) is applied at every step, and each step's output is
fed back as the next step's hidden state. Sequences are stored time first:
inputs [T, B, I] (sequence length, batch, input size), hidden states [B, H].

The lecture's toy task: learn to turn "hello" into "ohlol". Characters are numbered
with idx2char = ['e', 'h', 'l', 'o'] and fed as one-hot vectors; the RNNCell's hidden
state (size 4) is read directly as the scores of the 4 characters, with a
cross-entropy loss summed over the 5 steps. A second version replaces the one-hot input
with a learned embedding and uses a two-layer nn.RNN followed by a linear layer.

Run `python ch12_rnn_basics.py` for the demonstration.
"""
from __future__ import annotations

import torch
from torch import nn

IDX2CHAR = ["e", "h", "l", "o"]
HELLO_INPUT = [1, 0, 2, 2, 3]   # "hello"
HELLO_TARGET = [3, 1, 2, 3, 2]  # "ohlol"
# The lecture's RNNCell is tiny (its 4 hidden units are the 4 scores), so whether 15 epochs
# are enough depends on the starting weights. This seed makes the demonstration repeatable.
HELLO_SEED = 2


def rnn_cell_step(x: torch.Tensor, h: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
                  b_ih: torch.Tensor, b_hh: torch.Tensor) -> torch.Tensor:
    """One step of an Elman RNN cell, computed as nn.RNNCell does.

    Args:
        x: float [B, I], this step's input.
        h: float [B, H], the previous hidden state.
        w_ih: float [H, I]; w_hh: float [H, H] (the shapes of nn.RNNCell's weights).
        b_ih, b_hh: float [H].
    Returns:
        float [B, H], the next hidden state.
    """
    ### BEGIN SOLUTION
    # TODO(ch12.cell): tanh of (x times w_ih transposed, plus b_ih, plus h times w_hh
    #   transposed, plus b_hh). Use @ and .T; x goes with w_ih and h with w_hh.
    return torch.tanh(x @ w_ih.T + b_ih + h @ w_hh.T + b_hh)
    ### END SOLUTION


def one_hot(indices: torch.Tensor, num_classes: int) -> torch.Tensor:
    """One-hot rows for a sequence of class indices.

    Args:
        indices: int64 [T], values in [0, num_classes).
        num_classes: C.
    Returns:
        float32 [T, C]: row t is all zeros except a 1.0 in column indices[t].
    """
    ### BEGIN SOLUTION
    # TODO(ch12.one_hot): start from torch.zeros(T, C) and set a 1.0 in column indices[t] of
    #   every row t (index rows with torch.arange(T)), or convert F.one_hot's result to float.
    out = torch.zeros(len(indices), num_classes)
    out[torch.arange(len(indices)), indices] = 1.0
    return out
    ### END SOLUTION


def run_cell(cell, inputs: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """Unroll a cell over a sequence, feeding each hidden state into the next step.

    Args:
        cell: called as cell(x [B, I], h [B, H]) -> h [B, H], e.g. an nn.RNNCell.
        inputs: float32 [T, B, I], time first.
        hidden: float32 [B, H], the hidden state before the first step.
    Returns:
        float32 [T, B, H], the hidden state after every step (step t at index t).
    """
    ### BEGIN SOLUTION
    # TODO(ch12.unroll): for each time step t take inputs[t] and the current hidden state,
    #   call the cell, keep its result AS the new hidden state and collect it; then stack the
    #   T collected states along a new first dimension (torch.stack).
    states = []
    for x in inputs:
        hidden = cell(x, hidden)
        states.append(hidden)
    return torch.stack(states)
    ### END SOLUTION


class HelloRNN(nn.Module):
    """The lecture's model: one RNNCell whose hidden state is also the output scores."""

    def __init__(self, input_size: int = 4, hidden_size: int = 4, batch_size: int = 1) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.hidden_size = hidden_size
        self.rnncell = nn.RNNCell(input_size=input_size, hidden_size=hidden_size)

    def forward(self, x: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """Args: x: float32 [B, input_size]; hidden: float32 [B, hidden_size].
        Returns: float32 [B, hidden_size], the next hidden state (= this step's scores)."""
        ### BEGIN SOLUTION
        # TODO(ch12.hello): one step of self.rnncell on (x, hidden); return the new hidden state.
        return self.rnncell(x, hidden)
        ### END SOLUTION

    def init_hidden(self) -> torch.Tensor:
        """Returns: float32 [batch_size, hidden_size] zeros, the state before the first step."""
        return torch.zeros(self.batch_size, self.hidden_size)


def train_hello(epochs: int = 15, model: HelloRNN | None = None, lr: float = 0.1,
                seed: int = HELLO_SEED, verbose: bool = False) -> str:
    """Train a HelloRNN to map "hello" to "ohlol", as the lecture does.

    Adam(lr), nn.CrossEntropyLoss; every epoch one pass over the 5 characters (batch 1)
    from a zero hidden state, the 5 steps' losses summed, one update.

    Args:
        epochs: number of updates.
        model: the HelloRNN to train in place; when None, torch is seeded with `seed` and a
            new HelloRNN() is built.
        lr: Adam's learning rate.
        verbose: print each epoch's prediction and loss.
    Returns:
        The string predicted during the last epoch (the arg-max of each step's scores,
        mapped through IDX2CHAR), e.g. "ohlol".
    """
    if model is None:
        torch.manual_seed(seed)
        model = HelloRNN()
    n_chars = len(IDX2CHAR)
    inputs = torch.eye(n_chars)[HELLO_INPUT].view(-1, 1, n_chars)  # [T, B=1, 4], one-hot rows
    labels = torch.tensor(HELLO_TARGET).view(-1, 1)                  # [T, B=1]
    ### BEGIN SOLUTION
    # TODO(ch12.hello): build nn.CrossEntropyLoss() and torch.optim.Adam(model.parameters(), lr=lr).
    #   Every epoch: zero the gradients, start from model.init_hidden(), and for each
    #   (input [1, 4], label [1]) step compute hidden = model(input, hidden), ADD
    #   criterion(hidden, label) to the epoch's loss and append IDX2CHAR[arg-max of hidden]
    #   to the predicted string. After the 5 steps: backward, step (and, when verbose, print the
    #   epoch's string and loss). Return the last epoch's string.
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    predicted = ""
    for epoch in range(epochs):
        optimizer.zero_grad()
        hidden = model.init_hidden()
        loss = 0
        predicted = ""
        for x, label in zip(inputs, labels):
            hidden = model(x, hidden)
            loss = loss + criterion(hidden, label)
            predicted += IDX2CHAR[hidden.argmax(dim=1).item()]
        loss.backward()
        optimizer.step()
        if verbose:
            print(f"epoch {epoch + 1:2d}  predicted {predicted}  loss {loss.item():.4f}")
    return predicted
    ### END SOLUTION


class EmbeddingRNN(nn.Module):
    """Embedding -> two-layer RNN -> Linear: the lecture's second "hello" model."""

    def __init__(self, num_class: int = 4, input_size: int = 4, embedding_size: int = 10,
                 hidden_size: int = 8, num_layers: int = 2) -> None:
        super().__init__()
        self.num_class = num_class
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.emb = nn.Embedding(input_size, embedding_size)
        self.rnn = nn.RNN(input_size=embedding_size, hidden_size=hidden_size, num_layers=num_layers,
                          batch_first=True)
        self.fc = nn.Linear(hidden_size, num_class)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: int64 [B, T] character indices.
        Returns: float32 [B * T, num_class] scores, one row per character (batch-major),
        ready for nn.CrossEntropyLoss against targets flattened to [B * T]."""
        ### BEGIN SOLUTION
        # TODO(ch12.embedding): a zero initial hidden state [num_layers, B, hidden_size] (on x's
        #   device); embed x to [B, T, embedding_size]; run self.rnn and keep its output
        #   [B, T, hidden_size]; apply self.fc; flatten to [B * T, num_class], row b * T + t for
        #   sequence b, step t. self.rnn is built with batch_first=True: unlike the lecture's
        #   time-first [T, B, ...] layout, it takes [B, T, ...] as it is, so nothing is transposed.
        hidden = torch.zeros(self.num_layers, x.size(0), self.hidden_size, device=x.device)
        x = self.emb(x)
        x, _ = self.rnn(x, hidden)
        x = self.fc(x)
        return x.view(-1, self.num_class)
        ### END SOLUTION


def main() -> None:
    print("RNNCell, one-hot input, Adam(lr=0.1):")
    result = train_hello(epochs=15, verbose=True)
    print(f"hello -> {result}")

    print("\nEmbedding + 2-layer RNN + Linear, Adam(lr=0.05):")
    torch.manual_seed(0)
    model = EmbeddingRNN()
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    x = torch.tensor([HELLO_INPUT])  # [B=1, T=5]
    y = torch.tensor(HELLO_TARGET)   # [B * T]
    for epoch in range(15):
        outputs = model(x)
        loss = criterion(outputs, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        predicted = "".join(IDX2CHAR[i] for i in outputs.argmax(dim=1).tolist())
        print(f"epoch {epoch + 1:2d}  predicted {predicted}  loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
