"""Chapter 12, hidden tests: values against nn.RNNCell / nn.RNN, gradients, training, mistakes."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grader.testing import assert_close, check_gradients

IDX2CHAR = ["e", "h", "l", "o"]
HELLO_INPUT = [1, 0, 2, 2, 3]
HELLO_TARGET = [3, 1, 2, 3, 2]


# --------------------------------------------------------------------------- ch12.cell

def _cell_mistakes(x, h, wi, wh, bi, bh):
    return [
        (x @ wi.T + bi + h @ wh.T + bh, "tanh is missing: the new hidden state is tanh(...) of the sum"),
        (torch.relu(x @ wi.T + bi + h @ wh.T + bh), "the activation is ReLU; nn.RNNCell uses tanh"),
        (torch.tanh(x @ wi + bi + h @ wh + bh),
         "the weights are not transposed: multiply by w_ih.T and w_hh.T (they are stored [H, I] and [H, H])"),
        (torch.tanh(x @ wh.T + bi + h @ wi.T + bh),
         "w_ih and w_hh are swapped: the input x goes with w_ih, the hidden state h with w_hh"),
        (torch.tanh(x @ wi.T + h @ wh.T), "the biases b_ih and b_hh are missing"),
    ]


def _cell_args(batch, n_in, n_hidden):
    cell = nn.RNNCell(n_in, n_hidden)
    x, h = torch.randn(batch, n_in), torch.randn(batch, n_hidden)
    with torch.no_grad():
        want = cell(x, h)
    return cell, (x, h, cell.weight_ih.detach(), cell.weight_hh.detach(), cell.bias_ih.detach(),
                  cell.bias_hh.detach()), want


@pytest.mark.task("ch12.cell")
@pytest.mark.points(3)
def test_rnn_cell_step_equals_rnncell_square(impl):
    _, args, want = _cell_args(3, 4, 4)  # I == H: every mix-up of the weights still runs
    got = impl.rnn_cell_step(*args)
    if got.shape == want.shape and not torch.allclose(got, want, atol=1e-5):
        for wrong, mistake in _cell_mistakes(*args):
            if torch.allclose(got, wrong, atol=1e-5):
                raise AssertionError(f"rnn_cell_step differs from nn.RNNCell: {mistake}")
    assert_close(got, want, "rnn_cell_step(x, h, ...) against nn.RNNCell with the same weights", atol=1e-5)


@pytest.mark.task("ch12.cell")
@pytest.mark.points(2)
def test_rnn_cell_step_equals_rnncell_rectangular(impl):
    _, args, want = _cell_args(2, 3, 5)
    try:
        got = impl.rnn_cell_step(*args)
    except RuntimeError as exc:
        if "cannot be multiplied" in str(exc) or "size mismatch" in str(exc):
            raise AssertionError("rnn_cell_step fails when input size 3 != hidden size 5: x [B, I] goes with "
                                 "w_ih.T ([I, H]) and h [B, H] with w_hh.T ([H, H]); are the weights "
                                 "swapped or not transposed?") from None
        raise
    assert_close(got, want, "rnn_cell_step with input size 3 and hidden size 5", atol=1e-5)


@pytest.mark.task("ch12.cell")
@pytest.mark.points(2)
def test_rnn_cell_step_gradients(impl, probes):
    _, args, _ = _cell_args(2, 3, 2)
    inputs = [a.double() for a in args]
    # autograd's gradients of rnn_cell_step(*inputs).sum() for every input, taken beside your code
    backward = probes.gradients("rnn_cell_step", inputs, list(range(6)))
    if not backward["requires_grad"]:
        raise AssertionError("the result does not depend on the inputs through autograd "
                             "(was the graph cut with .item(), .detach() or .data?)")
    analytic = [torch.zeros_like(a) if g is None else g for g, a in zip(backward["grads"], inputs)]
    check_gradients(lambda *a: impl.rnn_cell_step(*a).sum(), inputs, analytic=analytic,
                    names=["x", "h", "w_ih", "w_hh", "b_ih", "b_hh"],
                    hint="use differentiable tensor operations only (no .item(), .data or numpy)")


# --------------------------------------------------------------------------- ch12.one_hot

@pytest.mark.task("ch12.one_hot")
@pytest.mark.points(2)
def test_one_hot_values(impl):
    indices = torch.tensor([3, 0, 6, 6, 1, 2, 5, 4, 0])
    got = impl.one_hot(indices, 7)
    want = F.one_hot(indices, 7).float()
    if got.shape == (7, 9):
        raise AssertionError("one_hot returned [C, T]; it should be [T, C]: one row per index")
    assert got.shape == (9, 7), f"one_hot of 9 indices with 7 classes has shape {list(got.shape)}, expected [9, 7]"
    assert got.dtype == torch.float32, \
        f"one_hot returned {got.dtype}: the network's input must be float32 (convert with .float())"
    assert_close(got, want, "one_hot([3, 0, 6, 6, 1, 2, 5, 4, 0], 7)",
                 hint="row t has its single 1.0 in column indices[t]")


@pytest.mark.task("ch12.one_hot")
@pytest.mark.points(1)
def test_one_hot_of_hello(impl):
    got = impl.one_hot(torch.tensor(HELLO_INPUT), 4)
    assert_close(got, torch.eye(4)[HELLO_INPUT], "one_hot of 'hello' = [1, 0, 2, 2, 3] with 4 classes")


# --------------------------------------------------------------------------- ch12.unroll

def _unrolled(cell, inputs, hidden, carry=True):
    states, h = [], hidden
    for x in inputs:
        h_new = cell(x, h)
        states.append(h_new)
        if carry:
            h = h_new
    return torch.stack(states)


@pytest.mark.task("ch12.unroll")
@pytest.mark.points(3)
def test_run_cell_matches_the_unrolled_loop(probes):
    cell = nn.RNNCell(3, 5)
    inputs, h0 = torch.randn(6, 2, 3), torch.randn(2, 5, requires_grad=True)
    # run_cell(cell, inputs, h0) and the gradient of its sum for h0, taken beside your code
    backward = probes.gradients("run_cell", [cell, inputs, h0], [2])
    got = backward["output"]
    if tuple(got.shape) == (2, 5):
        raise AssertionError("run_cell returned only the last hidden state [B, H]: collect every step's "
                             "state and torch.stack them into [T, B, H]")
    if tuple(got.shape) == (7, 2, 5):
        raise AssertionError("run_cell returned T + 1 states: the initial hidden state is not an output, "
                             "keep only the states computed by the cell")
    assert got.shape == (6, 2, 5), f"run_cell returned shape {list(got.shape)}, expected [6, 2, 5]"
    with torch.no_grad():
        want = _unrolled(cell, inputs, h0)
        if torch.allclose(got, _unrolled(cell, inputs, h0, carry=False), atol=1e-6):
            raise AssertionError("the hidden state is not carried between steps: every step starts from the "
                                 "initial state; assign the cell's result to the hidden state you pass next")
    assert_close(got.detach(), want, "run_cell's hidden states", atol=1e-6,
                 hint="step t uses inputs[t] and the hidden state from step t - 1")
    h0_grad = backward["grads"][0] if backward["requires_grad"] else None
    assert h0_grad is not None and h0_grad.abs().sum() > 0, \
        "no gradient reaches the initial hidden state: do not detach the hidden state between steps"


@pytest.mark.task("ch12.unroll")
@pytest.mark.points(1)
def test_run_cell_works_with_any_cell(probes):
    # run_cell with a plain function h + x.sum(dim=1, keepdim=True) as the cell, recording h[0, 0]
    out, calls = probes.run_counting_cell(torch.ones(4, 1, 2), torch.zeros(1, 3))
    assert len(calls) == 4, f"run_cell called the cell {len(calls)} times for a sequence of 4 steps"
    assert out.shape == (4, 1, 3), \
        f"run_cell returned shape {list(out.shape)} for 4 steps of batch 1 and hidden size 3, expected [4, 1, 3]"
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


@pytest.mark.task("ch12.hello")
@pytest.mark.points(1)
def test_hello_rnn_forward_is_one_cell_step(impl):
    model = impl.HelloRNN()
    cell = nn.RNNCell(4, 4)
    cell.load_state_dict(model.rnncell.state_dict())  # the same weights as the model's cell
    x, h = torch.eye(4)[[2]], torch.randn(1, 4)
    assert_close(model(x, h).detach(), cell(x, h).detach(), "HelloRNN(x, hidden)",
                 hint="return self.rnncell(x, hidden)")


@pytest.mark.task("ch12.hello")
@pytest.mark.points(3)
def test_train_hello_matches_the_lecture_loop(impl):
    torch.manual_seed(1)
    state = {k: v.clone() for k, v in nn.RNNCell(4, 4).state_dict().items()}
    model = impl.HelloRNN()
    model.rnncell.load_state_dict(state)
    try:
        got = impl.train_hello(epochs=4, model=model)
    except RuntimeError as exc:
        if "second time" in str(exc):
            raise AssertionError("train_hello backpropagates through an old graph: start every epoch from "
                                 "hidden = model.init_hidden() and a fresh loss = 0") from None
        raise
    ref, want = _reference_hello(state, 4)
    trained = model.rnncell.state_dict()
    if not torch.allclose(trained["weight_hh"], ref.weight_hh, atol=1e-4):
        for kwargs, mistake in [
            (dict(zero_grad=False), "the gradients pile up across epochs: call optimizer.zero_grad() every epoch"),
            (dict(last_only=True), "only the last character's loss is used: add up (loss = loss + ...) the "
                                   "losses of all 5 steps before backward"),
        ]:
            wrong, _ = _reference_hello(state, 4, **kwargs)
            if torch.allclose(trained["weight_hh"], wrong.weight_hh, atol=1e-4):
                raise AssertionError(f"train_hello's updates follow a known mistake: {mistake}")
        assert_close(trained["weight_hh"], ref.weight_hh.detach(),
                     "the RNNCell's weight_hh after 4 epochs", atol=1e-4,
                     hint="Adam(lr=0.1), CrossEntropyLoss summed over the 5 steps, one step per epoch")
    assert got == want, f"train_hello returned {got!r}; during the last epoch the model predicted {want!r}"


@pytest.mark.task("ch12.hello")
@pytest.mark.points(3)
def test_train_hello_learns_ohlol(impl):
    got = impl.train_hello()
    assert got == "ohlol", f"after the lecture's 15 epochs train_hello() predicted {got!r}, expected 'ohlol'"


# --------------------------------------------------------------------------- ch12.embedding

class _EmbeddingReference(nn.Module):
    """The lecture's EmbeddingRNN, to load a student's weights into."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(4, 10)
        self.rnn = nn.RNN(input_size=10, hidden_size=8, num_layers=2, batch_first=True)
        self.fc = nn.Linear(8, 4)


def _embedding_reference(weights, x):
    ref = _EmbeddingReference()
    ref.load_state_dict(weights)
    with torch.no_grad():
        h0 = torch.zeros(2, x.size(0), 8)
        out, _ = ref.rnn(ref.emb(x), h0)
        return ref.fc(out)  # [B, T, C]


@pytest.mark.task("ch12.embedding")
@pytest.mark.points(3)
def test_embedding_rnn_matches_the_lecture(impl):
    model = impl.EmbeddingRNN()
    x = torch.tensor([[1, 0, 2, 2, 3], [3, 3, 0, 1, 2], [2, 1, 0, 3, 3]])
    got = model(x)
    want = _embedding_reference(model.state_dict(), x)
    if tuple(got.shape) == (3, 5, 4):
        raise AssertionError("EmbeddingRNN returned [B, T, 4]: flatten it to [B * T, 4] with "
                             "view(-1, num_class) for CrossEntropyLoss")
    assert got.shape == (15, 4), f"EmbeddingRNN maps [3, 5] to {list(got.shape)}, expected [15, 4]"
    got = got.detach()
    if torch.allclose(got, want.transpose(0, 1).reshape(-1, 4), atol=1e-5):
        raise AssertionError("EmbeddingRNN's rows are time-major: with batch_first=True the output is "
                             "[B, T, H] already, flatten it without transposing")
    assert_close(got, want.reshape(-1, 4), "EmbeddingRNN's scores", atol=1e-5,
                 hint="zero initial hidden state [num_layers, B, hidden_size]; emb, rnn, fc")


@pytest.mark.task("ch12.embedding")
@pytest.mark.points(1)
def test_embedding_rnn_hidden_state_on_the_input_device(impl):
    model = impl.EmbeddingRNN().to("meta")
    x = torch.zeros(2, 5, dtype=torch.long, device="meta")
    try:
        out = model(x)
    except RuntimeError as exc:
        if "same device" in str(exc) or "device" in str(exc):
            raise AssertionError("the initial hidden state is created on the CPU while the model runs "
                                 "elsewhere: torch.zeros(..., device=x.device)") from None
        raise
    assert out.shape == (10, 4), f"EmbeddingRNN maps [2, 5] to {list(out.shape)}, expected [10, 4]"


@pytest.mark.task("ch12.embedding")
@pytest.mark.points(2)
def test_embedding_rnn_learns_ohlol(probes, student):
    x, y = torch.tensor([HELLO_INPUT]), torch.tensor(HELLO_TARGET)
    student.seed(0)
    # a new EmbeddingRNN, 15 Adam(lr=0.05) steps of cross_entropy(model(x), y), then its scores for x
    scores = probes.train_embedding_scores(x, y, 15, 0.05)
    got = "".join(IDX2CHAR[i] for i in scores.argmax(dim=1).tolist())
    assert got == "ohlol", f"after 15 epochs of Adam(lr=0.05) EmbeddingRNN predicts {got!r}, expected 'ohlol'"
