"""Chapter 12, public tests: the lecture's "hello" -> "ohlol" data, nn.RNNCell and nn.RNN as
the references, and the common mistakes named.

Every check here runs on the lecture's sequences or on inputs made from fixed seeds; the
hidden tests run the same checks on other sizes, seeds and sequences, so code fitted to
these numbers fails there.
"""
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grader.remote import type_name
from grader.testing import assert_close

IDX2CHAR = ["e", "h", "l", "o"]
HELLO_INPUT = [1, 0, 2, 2, 3]   # "hello"
HELLO_TARGET = [3, 1, 2, 3, 2]  # "ohlol"


def _shape(value):
    return list(value.shape) if isinstance(value, torch.Tensor) else type_name(value)


# --------------------------------------------------------------------------- ch12.cell

def _cell_args(seed, batch, n_in, n_hidden):
    """Inputs for rnn_cell_step from an nn.RNNCell's weights, and that cell's answer."""
    torch.manual_seed(seed)
    cell = nn.RNNCell(n_in, n_hidden)
    x, h = torch.randn(batch, n_in), torch.randn(batch, n_hidden)
    with torch.no_grad():
        want = cell(x, h)
    args = (x, h, cell.weight_ih.detach(), cell.weight_hh.detach(), cell.bias_ih.detach(), cell.bias_hh.detach())
    return args, want


def _cell_mistakes(x, h, wi, wh, bi, bh):
    """(result, message) of each known mistake that runs on these shapes (mixed-up weights need I == H)."""
    mistakes = [
        (lambda: x @ wi.T + bi + h @ wh.T + bh, "tanh is missing: the new hidden state is tanh(...) of the sum"),
        (lambda: torch.relu(x @ wi.T + bi + h @ wh.T + bh), "the activation is ReLU; nn.RNNCell uses tanh"),
        (lambda: torch.tanh(x @ wi + bi + h @ wh + bh),
         "the weights are not transposed: multiply by w_ih.T and w_hh.T (they are stored [H, I] and [H, H])"),
        (lambda: torch.tanh(x @ wh.T + bi + h @ wi.T + bh),
         "w_ih and w_hh are swapped: the input x goes with w_ih, the hidden state h with w_hh"),
        (lambda: torch.tanh(x @ wi.T + h @ wh.T), "the biases b_ih and b_hh are missing"),
    ]
    for compute, message in mistakes:
        try:
            yield compute(), message
        except RuntimeError:
            continue


def _cell_call(call, n_in, n_hidden):
    """call(), with the shape errors of mixed-up weights turned into a message that names them."""
    try:
        return call()
    except RuntimeError as exc:
        if "cannot be multiplied" in str(exc) or "size mismatch" in str(exc) or "must match" in str(exc):
            raise AssertionError(f"rnn_cell_step fails with input size {n_in} and hidden size {n_hidden}: x [B, I] "
                                 "goes with w_ih.T ([I, H]) and h [B, H] with w_hh.T ([H, H]); are the weights "
                                 "swapped or not transposed?") from None
        raise


def _check_cell(impl, seed, batch, n_in, n_hidden):
    """rnn_cell_step against nn.RNNCell with the same weights; with n_in == n_hidden every mix-up
    of the weights still runs, so its result is compared with each known mistake."""
    args, want = _cell_args(seed, batch, n_in, n_hidden)
    got = _cell_call(lambda: impl.rnn_cell_step(*args), n_in, n_hidden)
    assert isinstance(got, torch.Tensor) and got.shape == want.shape, \
        f"rnn_cell_step with x {list(args[0].shape)} and h {list(args[1].shape)} returned {_shape(got)}, " \
        f"expected {list(want.shape)}"
    if not torch.allclose(got, want, rtol=1e-5, atol=1e-5):
        for wrong, mistake in _cell_mistakes(*args):
            if wrong.shape == got.shape and torch.allclose(got, wrong, rtol=1e-5, atol=1e-5):
                raise AssertionError(f"rnn_cell_step differs from nn.RNNCell: {mistake}")
    assert_close(got, want, f"rnn_cell_step (batch {batch}, input size {n_in}, hidden size {n_hidden}) "
                            "against nn.RNNCell with the same weights", atol=1e-5,
                 hint="tanh(x @ w_ih.T + b_ih + h @ w_hh.T + b_hh)")


def _check_cell_gradients(impl, probes, seed, batch, n_in, n_hidden):
    """autograd's gradients through rnn_cell_step (taken beside your code) against those through
    nn.RNNCell's formula, for all six inputs, in float64."""
    args, _ = _cell_args(seed, batch, n_in, n_hidden)
    inputs = [a.double() for a in args]
    weights = torch.randn(batch, n_hidden, dtype=torch.float64)  # d(sum(out * weights)) / d(input)
    # autograd's gradients of (rnn_cell_step(*inputs) * weights).sum() for every input
    backward = _cell_call(lambda: probes.gradients("rnn_cell_step", inputs, list(range(6)), weights), n_in, n_hidden)
    if not backward["requires_grad"]:
        raise AssertionError("the result does not depend on the inputs through autograd "
                             "(was the graph cut with .item(), .detach() or .data?)")
    leaves = [a.clone().requires_grad_(True) for a in inputs]
    x, h, wi, wh, bi, bh = leaves
    out = torch.tanh(x @ wi.T + bi + h @ wh.T + bh)
    if not torch.allclose(backward["output"].detach(), out.detach(), rtol=1e-6, atol=1e-8):
        raise AssertionError("rnn_cell_step's values are wrong (see the other ch12.cell tests); fix them first, "
                             "its gradients are checked once the values are right")
    want = torch.autograd.grad((out * weights).sum(), leaves)
    for name, got, expected in zip(["x", "h", "w_ih", "w_hh", "b_ih", "b_hh"], backward["grads"], want):
        assert got is not None, \
            f"no gradient reaches {name}: the result must be computed from it with tensor operations"
        assert_close(got, expected, f"the gradient for {name}", rtol=1e-5, atol=1e-7,
                     hint="use differentiable tensor operations only (no .item(), .data or numpy)")


@pytest.mark.task("ch12.cell")
@pytest.mark.points(1)
def test_rnn_cell_step_shape(impl):
    cell = nn.RNNCell(3, 5)
    args = (torch.randn(2, 3), torch.zeros(2, 5), cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    out = _cell_call(lambda: impl.rnn_cell_step(*args), 3, 5)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 5), \
        f"rnn_cell_step with x [2, 3] and h [2, 5] should return [2, 5], got {_shape(out)}"


@pytest.mark.task("ch12.cell")
@pytest.mark.points(2)
def test_rnn_cell_step_equals_rnncell_square(impl):
    _check_cell(impl, seed=0, batch=3, n_in=4, n_hidden=4)


@pytest.mark.task("ch12.cell")
@pytest.mark.points(1)
def test_rnn_cell_step_equals_rnncell_rectangular(impl):
    _check_cell(impl, seed=0, batch=2, n_in=3, n_hidden=5)


@pytest.mark.task("ch12.cell")
@pytest.mark.points(1)
def test_rnn_cell_step_gradients(impl, probes):
    _check_cell_gradients(impl, probes, seed=0, batch=2, n_in=3, n_hidden=2)


# --------------------------------------------------------------------------- ch12.one_hot

def _check_one_hot(impl, indices, num_classes):
    indices = torch.tensor(indices)
    got = impl.one_hot(indices, num_classes)
    want = F.one_hot(indices, num_classes).float()
    n = len(indices)
    what = f"one_hot({indices.tolist()}, {num_classes})"
    assert isinstance(got, torch.Tensor), f"{what} returned {type_name(got)}, expected a Tensor"
    if n != num_classes and tuple(got.shape) == (num_classes, n):
        raise AssertionError(f"{what} returned [C, T] = {list(got.shape)}; it should be [T, C]: one row per index")
    assert tuple(got.shape) == (n, num_classes), \
        f"{what} has shape {list(got.shape)}, expected [{n}, {num_classes}]: one row per index"
    assert got.dtype == torch.float32, \
        f"{what} returned {got.dtype}: the network's input must be float32 (convert with .float())"
    assert_close(got, want, what, hint="row t has its single 1.0 in column indices[t]")


@pytest.mark.task("ch12.one_hot")
@pytest.mark.points(1)
def test_one_hot_shape_and_dtype(impl):
    out = impl.one_hot(torch.tensor([1, 0, 2, 2, 3]), 4)
    assert out.shape == (5, 4), f"one_hot of 5 indices with 4 classes has shape {list(out.shape)}, expected [5, 4]"
    assert out.dtype == torch.float32, \
        f"one_hot returned {out.dtype}: the network's input must be float32 (convert with .float())"


@pytest.mark.task("ch12.one_hot")
@pytest.mark.points(1)
def test_one_hot_of_the_lecture_sequences(impl):
    _check_one_hot(impl, HELLO_INPUT, 4)   # "hello"
    _check_one_hot(impl, HELLO_TARGET, 4)  # "ohlol"


# --------------------------------------------------------------------------- ch12.unroll

def _unrolled(cell, inputs, hidden, carry=True):
    states, h = [], hidden
    for x in inputs:
        h_new = cell(x, h)
        states.append(h_new)
        if carry:
            h = h_new
    return torch.stack(states)


def _check_run_cell(probes, seed, steps, batch, n_in, n_hidden):
    torch.manual_seed(seed)
    cell = nn.RNNCell(n_in, n_hidden)
    inputs, h0 = torch.randn(steps, batch, n_in), torch.randn(batch, n_hidden)
    # run_cell(cell, inputs, h0) and the gradient of its sum for h0, taken beside your code
    backward = probes.gradients("run_cell", [cell, inputs, h0], [2])
    got = backward["output"]
    assert isinstance(got, torch.Tensor), f"run_cell returned {type_name(got)}, expected a Tensor"
    if tuple(got.shape) == (batch, n_hidden):
        raise AssertionError("run_cell returned only the last hidden state [B, H]: collect every step's "
                             "state and torch.stack them into [T, B, H]")
    if tuple(got.shape) == (steps + 1, batch, n_hidden):
        raise AssertionError("run_cell returned T + 1 states: the initial hidden state is not an output, "
                             "keep only the states computed by the cell")
    assert tuple(got.shape) == (steps, batch, n_hidden), \
        f"run_cell over [T={steps}, B={batch}, I={n_in}] inputs returned {list(got.shape)}, " \
        f"expected [{steps}, {batch}, {n_hidden}]: one hidden state per step"
    with torch.no_grad():
        want = _unrolled(cell, inputs, h0)
        if steps > 1 and torch.allclose(got, _unrolled(cell, inputs, h0, carry=False), rtol=1e-5, atol=1e-6):
            raise AssertionError("the hidden state is not carried between steps: every step starts from the "
                                 "initial state; assign the cell's result to the hidden state you pass next")
    assert_close(got.detach(), want, "run_cell's hidden states", atol=1e-6,
                 hint="step t uses inputs[t] and the hidden state from step t - 1")
    h0_grad = backward["grads"][0] if backward["requires_grad"] else None
    assert h0_grad is not None and h0_grad.abs().sum() > 0, \
        "no gradient reaches the initial hidden state: do not detach the hidden state between steps"


@pytest.mark.task("ch12.unroll")
@pytest.mark.points(1)
def test_run_cell_shape(impl):
    cell = nn.RNNCell(3, 5)
    out = impl.run_cell(cell, torch.randn(6, 2, 3), torch.zeros(2, 5))
    assert isinstance(out, torch.Tensor) and out.shape == (6, 2, 5), \
        f"run_cell over [T=6, B=2, I=3] inputs returned {_shape(out)}, expected [6, 2, 5]: " \
        "one hidden state per step"


@pytest.mark.task("ch12.unroll")
@pytest.mark.points(2)
def test_run_cell_matches_the_unrolled_loop(probes):
    _check_run_cell(probes, seed=0, steps=6, batch=2, n_in=3, n_hidden=5)


@pytest.mark.task("ch12.unroll")
@pytest.mark.points(1)
def test_run_cell_works_with_any_cell(probes):
    # run_cell with a plain function h + x.sum(dim=1, keepdim=True) as the cell, recording h[0, 0]
    out, calls = probes.run_counting_cell(torch.ones(4, 1, 2), torch.zeros(1, 3))
    assert len(calls) == 4, f"run_cell called the cell {len(calls)} times for a sequence of 4 steps"
    assert isinstance(out, torch.Tensor) and out.shape == (4, 1, 3), \
        f"run_cell returned {_shape(out)} for 4 steps of batch 1 and hidden size 3, expected [4, 1, 3]"
    if calls == [0.0, 0.0, 0.0, 0.0]:
        raise AssertionError("the hidden state is not carried between steps: the cell saw the initial state "
                             "at every step; assign the cell's result to the hidden state you pass next")
    assert calls == [0.0, 2.0, 4.0, 6.0], \
        f"the cell saw hidden states {calls}, expected [0, 2, 4, 6]: feed each step's output back in"
    assert_close(out[:, 0, 0], torch.tensor([2.0, 4.0, 6.0, 8.0]), "run_cell's outputs with a counting cell")


# --------------------------------------------------------------------------- ch12.hello

def _reference_hello(state, epochs, *, zero_grad=True, last_only=False):
    """The lecture's loop, and common ways of getting it wrong, from the same weights."""
    cell = nn.RNNCell(4, 4)
    cell.load_state_dict(state)
    inputs = torch.eye(4)[HELLO_INPUT].view(-1, 1, 4)
    labels = torch.tensor(HELLO_TARGET).view(-1, 1)
    optimizer = torch.optim.Adam(cell.parameters(), lr=0.1)
    predicted = ""
    for _ in range(epochs):
        if zero_grad:
            optimizer.zero_grad()
        hidden, loss, predicted = torch.zeros(1, 4), 0, ""
        for x, label in zip(inputs, labels):
            hidden = cell(x, hidden)
            step_loss = F.cross_entropy(hidden, label)
            loss = step_loss if last_only else loss + step_loss
            predicted += IDX2CHAR[hidden.argmax(dim=1).item()]
        loss.backward()
        optimizer.step()
    return cell, predicted


def _train_hello(impl, **kwargs):
    """impl.train_hello(**kwargs), with backward through an old graph named."""
    try:
        return impl.train_hello(**kwargs)
    except RuntimeError as exc:
        if "second time" in str(exc):
            raise AssertionError("train_hello backpropagates through an old graph: start every epoch from "
                                 "hidden = model.init_hidden() and a fresh loss = 0") from None
        raise


def _check_train_hello(impl, seed, epochs):
    """train_hello(epochs, model) from an RNNCell's weights made with `seed`, against the lecture's loop."""
    torch.manual_seed(seed)
    state = {k: v.clone() for k, v in nn.RNNCell(4, 4).state_dict().items()}
    model = impl.HelloRNN()
    model.rnncell.load_state_dict(state)
    got = _train_hello(impl, epochs=epochs, model=model)
    ref, want = _reference_hello(state, epochs)
    trained = model.rnncell.state_dict()
    if not torch.allclose(trained["weight_hh"], ref.weight_hh, atol=1e-4):
        for kwargs, mistake in [
            (dict(zero_grad=False), "the gradients pile up across epochs: call optimizer.zero_grad() every epoch"),
            (dict(last_only=True), "only the last character's loss is used: add up (loss = loss + ...) the "
                                   "losses of all 5 steps before backward"),
        ]:
            wrong, _ = _reference_hello(state, epochs, **kwargs)
            if torch.allclose(trained["weight_hh"], wrong.weight_hh, atol=1e-4):
                raise AssertionError(f"train_hello's updates follow a known mistake: {mistake}")
        assert_close(trained["weight_hh"], ref.weight_hh.detach(),
                     f"the RNNCell's weight_hh after {epochs} epochs", atol=1e-4,
                     hint="Adam(lr=0.1), CrossEntropyLoss summed over the 5 steps, one step per epoch")
    assert got == want, f"train_hello returned {got!r}; during the last epoch the model predicted {want!r}"


@pytest.mark.task("ch12.hello")
@pytest.mark.points(1)
def test_hello_rnn_step_shape(impl):
    model = impl.HelloRNN()
    out = model(torch.eye(4)[[1]], model.init_hidden())
    assert isinstance(out, torch.Tensor) and out.shape == (1, 4), \
        f"HelloRNN maps ([1, 4], [1, 4]) to {_shape(out)}, expected [1, 4]"


@pytest.mark.task("ch12.hello")
@pytest.mark.points(1)
def test_hello_rnn_forward_is_one_cell_step(impl):
    model = impl.HelloRNN()
    cell = nn.RNNCell(4, 4)
    cell.load_state_dict(model.rnncell.state_dict())  # the same weights as the model's cell
    x, h = torch.eye(4)[[2]], torch.randn(1, 4)
    assert_close(model(x, h), cell(x, h).detach(), "HelloRNN(x, hidden)", hint="return self.rnncell(x, hidden)")


@pytest.mark.task("ch12.hello")
@pytest.mark.points(1)
def test_train_hello_returns_a_five_letter_string(impl):
    out = _train_hello(impl, epochs=1)
    assert isinstance(out, str) and len(out) == 5 and set(out) <= set("ehlo"), \
        f"train_hello should return the 5 predicted characters (from 'e', 'h', 'l', 'o'), got {out!r:.60}"


@pytest.mark.task("ch12.hello")
@pytest.mark.points(2)
def test_train_hello_matches_the_lecture_loop(impl):
    _check_train_hello(impl, seed=1, epochs=4)


@pytest.mark.task("ch12.hello")
@pytest.mark.points(2)
def test_train_hello_learns_ohlol(impl):
    got = _train_hello(impl)
    assert got == "ohlol", f"after the lecture's 15 epochs train_hello() predicted {got!r:.60}, expected 'ohlol'"


# --------------------------------------------------------------------------- ch12.embedding

class _EmbeddingReference(nn.Module):
    """The lecture's EmbeddingRNN, to load a student's weights into."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(4, 10)
        self.rnn = nn.RNN(input_size=10, hidden_size=8, num_layers=2, batch_first=True)
        self.fc = nn.Linear(8, 4)


def _embedding_reference(weights, x, *, time_first_input=False):
    """The scores [B, T, C] from the student's own weights; time_first_input=True: the embedded
    input transposed to [T, B, E] before the batch-first RNN (which then reads the time steps as
    the batch), giving [T, B, C]."""
    ref = _EmbeddingReference()
    ref.load_state_dict(weights)
    with torch.no_grad():
        e = ref.emb(x)
        if time_first_input:
            e = e.transpose(0, 1)
        out, _ = ref.rnn(e, torch.zeros(2, e.size(0), 8))
        return ref.fc(out)


_TRANSPOSED_INPUT = ("the embedded input was transposed to time-first [T, B, E], but self.rnn is built with "
                     "batch_first=True and reads it as [B, T, E], so it ran across the batch instead of along "
                     "each sequence: do not transpose, pass self.emb(x) [B, T, embedding_size] as it is")


def _embedding_call(call, batch, steps):
    """call() (which runs an EmbeddingRNN on [batch, steps] indices), with the errors of a
    transposed input or unflattened scores turned into messages that name them."""
    try:
        return call()
    except RuntimeError as exc:
        found = re.search(r"Expected hidden size \(\d+, (\d+), \d+\), got \[\d+, (\d+), \d+\]", str(exc))
        if found and int(found.group(1)) == steps and int(found.group(2)) == batch and batch != steps:
            raise AssertionError(_TRANSPOSED_INPUT) from None
        raise
    except ValueError as exc:
        if "Expected input batch_size" in str(exc):
            raise AssertionError("cross-entropy cannot pair EmbeddingRNN's scores with the [B * T] targets: "
                                 "flatten the scores to [B * T, num_class] with view(-1, num_class)") from None
        raise


def _check_embedding_rnn(impl, x):
    model = impl.EmbeddingRNN()
    x = torch.tensor(x)
    batch, steps = x.shape
    got = _embedding_call(lambda: model(x), batch, steps)
    weights = model.state_dict()
    want = _embedding_reference(weights, x)
    assert isinstance(got, torch.Tensor), f"EmbeddingRNN returned {type_name(got)}, expected a Tensor"
    if tuple(got.shape) in ((batch, steps, 4), (steps, batch, 4)):
        raise AssertionError(f"EmbeddingRNN returned {list(got.shape)}: flatten it to [B * T, 4] with "
                             "view(-1, num_class) for CrossEntropyLoss")
    assert tuple(got.shape) == (batch * steps, 4), \
        f"EmbeddingRNN maps [{batch}, {steps}] to {list(got.shape)}, expected [{batch * steps}, 4]"
    got = got.detach()
    if not torch.allclose(got, want.reshape(-1, 4), rtol=1e-5, atol=1e-5):
        swapped = _embedding_reference(weights, x, time_first_input=True)
        if any(torch.allclose(got, s.reshape(-1, 4), rtol=1e-5, atol=1e-5)
               for s in (swapped, swapped.transpose(0, 1))):
            raise AssertionError(_TRANSPOSED_INPUT)
        if batch > 1 and torch.allclose(got, want.transpose(0, 1).reshape(-1, 4), rtol=1e-5, atol=1e-5):
            raise AssertionError("EmbeddingRNN's rows are time-major (all first characters, then all second "
                                 "ones): with batch_first=True the output is [B, T, H] already, flatten it "
                                 "without transposing so row b * T + t is sequence b, step t")
    assert_close(got, want.reshape(-1, 4), f"EmbeddingRNN's scores for a [{batch}, {steps}] batch", atol=1e-5,
                 hint="zero initial hidden state [num_layers, B, hidden_size]; emb, rnn, fc; flatten batch-major")


@pytest.mark.task("ch12.embedding")
@pytest.mark.points(1)
def test_embedding_rnn_shape(impl):
    model = impl.EmbeddingRNN()
    out = _embedding_call(lambda: model(torch.tensor([[1, 0, 2, 2, 3], [3, 2, 1, 0, 0]])), 2, 5)
    assert isinstance(out, torch.Tensor) and tuple(out.shape) == (10, 4), \
        f"EmbeddingRNN maps [B=2, T=5] indices to {_shape(out)}, expected [10, 4] (flattened to [B * T, 4])"


@pytest.mark.task("ch12.embedding")
@pytest.mark.points(2)
def test_embedding_rnn_matches_the_lecture(impl):
    _check_embedding_rnn(impl, [HELLO_INPUT])
    _check_embedding_rnn(impl, [[1, 0, 2, 2, 3], [3, 3, 0, 1, 2], [2, 1, 0, 3, 3]])


@pytest.mark.task("ch12.embedding")
@pytest.mark.points(1)
def test_embedding_rnn_hidden_state_on_the_input_device(probes):
    try:
        # a new EmbeddingRNN moved to the meta device, run on int64 zeros [2, 5] on meta
        run = _embedding_call(lambda: probes.embedding_on_meta(2, 5), 2, 5)
    except RuntimeError as exc:
        if "device" in str(exc):
            raise AssertionError("the initial hidden state is created on the CPU while the model runs "
                                 "elsewhere (here on the meta device): torch.zeros(..., device=x.device)") from None
        raise
    assert run["shape"] == [10, 4], f"EmbeddingRNN maps [2, 5] to {run['shape']}, expected [10, 4]"
    assert run["device"] == "meta", f"EmbeddingRNN's output on a meta model is on {run['device']}, expected meta"


@pytest.mark.task("ch12.embedding")
@pytest.mark.points(2)
def test_embedding_rnn_learns_ohlol(probes, student):
    x, y = torch.tensor([HELLO_INPUT]), torch.tensor(HELLO_TARGET)
    student.seed(0)
    # a new EmbeddingRNN, 15 Adam(lr=0.05) steps of cross_entropy(model(x), y), then its scores for x
    scores = _embedding_call(lambda: probes.train_embedding_scores(x, y, 15, 0.05), 1, 5)
    assert isinstance(scores, torch.Tensor) and tuple(scores.shape) == (5, 4), \
        f"EmbeddingRNN maps [1, 5] to {_shape(scores)}, expected [5, 4]"
    got = "".join(IDX2CHAR[i] for i in scores.argmax(dim=1).tolist())
    assert got == "ohlol", f"after 15 epochs of Adam(lr=0.05) EmbeddingRNN predicts {got!r}, expected 'ohlol'"
