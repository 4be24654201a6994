"""Chapter 12, hidden tests: the public tests' checks on held-out sizes, seeds and sequences, so
answers fitted to the public inputs fail; the exact result of a graded training run."""
import pytest
import torch
from torch import nn

from .test_public import (_check_cell, _check_cell_gradients, _check_embedding_rnn, _check_one_hot,
                          _check_run_cell, _check_train_hello, _reference_hello)


# --------------------------------------------------------------------------- ch12.cell

@pytest.mark.task("ch12.cell")
@pytest.mark.points(2)
def test_rnn_cell_step_held_out_square(impl):
    _check_cell(impl, seed=11, batch=5, n_in=6, n_hidden=6)


@pytest.mark.task("ch12.cell")
@pytest.mark.points(1)
def test_rnn_cell_step_held_out_rectangular(impl):
    _check_cell(impl, seed=12, batch=4, n_in=7, n_hidden=3)


@pytest.mark.task("ch12.cell")
@pytest.mark.points(1)
def test_rnn_cell_step_held_out_gradients(impl, probes):
    _check_cell_gradients(impl, probes, seed=13, batch=3, n_in=2, n_hidden=3)


# --------------------------------------------------------------------------- ch12.one_hot

@pytest.mark.task("ch12.one_hot")
@pytest.mark.points(2)
def test_one_hot_held_out(impl):
    _check_one_hot(impl, [3, 0, 6, 6, 1, 2, 5, 4, 0], 7)
    _check_one_hot(impl, [2], 3)
    _check_one_hot(impl, [1, 1, 0, 4, 2, 3], 5)


# --------------------------------------------------------------------------- ch12.unroll

@pytest.mark.task("ch12.unroll")
@pytest.mark.points(2)
def test_run_cell_held_out(probes):
    _check_run_cell(probes, seed=5, steps=9, batch=3, n_in=2, n_hidden=4)
    _check_run_cell(probes, seed=6, steps=1, batch=4, n_in=5, n_hidden=3)


# --------------------------------------------------------------------------- ch12.hello

@pytest.mark.task("ch12.hello")
@pytest.mark.points(2)
def test_train_hello_held_out(impl):
    _check_train_hello(impl, seed=3, epochs=6)
    # the graded run: train_hello builds its own model after torch.manual_seed(7)
    torch.manual_seed(7)
    state = {k: v.clone() for k, v in nn.RNNCell(4, 4).state_dict().items()}
    _, want = _reference_hello(state, 12)
    got = impl.train_hello(epochs=12, seed=7)
    assert got == want, f"train_hello(epochs=12, seed=7) returned {got!r:.60}; the lecture's loop predicts {want!r}"


# --------------------------------------------------------------------------- ch12.embedding

@pytest.mark.task("ch12.embedding")
@pytest.mark.points(2)
def test_embedding_rnn_held_out(impl):
    torch.manual_seed(9)
    _check_embedding_rnn(impl, torch.randint(0, 4, (4, 7)).tolist())
    _check_embedding_rnn(impl, [[0, 3, 1]])
