"""Chapter 12, public tests: shapes and basic behaviour."""
import pytest
import torch
from torch import nn

from grader.remote import type_name


@pytest.mark.task("ch12.cell")
@pytest.mark.points(2)
def test_rnn_cell_step_shape(impl):
    cell = nn.RNNCell(3, 5)
    out = impl.rnn_cell_step(torch.randn(2, 3), torch.zeros(2, 5), cell.weight_ih, cell.weight_hh,
                             cell.bias_ih, cell.bias_hh)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 5), \
        f"rnn_cell_step with x [2, 3] and h [2, 5] should return [2, 5], got " \
        f"{list(out.shape) if isinstance(out, torch.Tensor) else type_name(out)}"


@pytest.mark.task("ch12.one_hot")
@pytest.mark.points(1)
def test_one_hot_shape_and_dtype(impl):
    out = impl.one_hot(torch.tensor([1, 0, 2, 2, 3]), 4)
    assert out.shape == (5, 4), f"one_hot of 5 indices with 4 classes has shape {list(out.shape)}, expected [5, 4]"
    assert out.dtype == torch.float32, f"one_hot returned {out.dtype}, expected torch.float32 (use .float())"


@pytest.mark.task("ch12.unroll")
@pytest.mark.points(2)
def test_run_cell_shape(impl):
    cell = nn.RNNCell(3, 5)
    out = impl.run_cell(cell, torch.randn(6, 2, 3), torch.zeros(2, 5))
    assert out.shape == (6, 2, 5), \
        f"run_cell over [T=6, B=2, I=3] inputs returned {list(out.shape)}, expected [6, 2, 5]: " \
        "one hidden state per step"


@pytest.mark.task("ch12.hello")
@pytest.mark.points(1)
def test_hello_rnn_step_shape(impl):
    model = impl.HelloRNN()
    out = model(torch.eye(4)[[1]], model.init_hidden())
    assert out.shape == (1, 4), f"HelloRNN maps ([1, 4], [1, 4]) to {list(out.shape)}, expected [1, 4]"


@pytest.mark.task("ch12.hello")
@pytest.mark.points(1)
def test_train_hello_returns_a_five_letter_string(impl):
    out = impl.train_hello(epochs=1)
    assert isinstance(out, str) and len(out) == 5 and set(out) <= set("ehlo"), \
        f"train_hello should return the 5 predicted characters (from 'e', 'h', 'l', 'o'), got {out!r}"


@pytest.mark.task("ch12.embedding")
@pytest.mark.points(2)
def test_embedding_rnn_shape(impl):
    model = impl.EmbeddingRNN()
    out = model(torch.tensor([[1, 0, 2, 2, 3], [3, 2, 1, 0, 0]]))
    assert out.shape == (10, 4), \
        f"EmbeddingRNN maps [B=2, T=5] indices to {list(out.shape)}, expected [10, 4] (flattened to [B * T, 4])"
