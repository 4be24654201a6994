"""Chapter 07, hidden tests: loading, the network's values, training, accuracy, common mistakes."""
import gzip

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grader.remote import is_instance, type_name
from grader.testing import assert_close, reference_losses

TINY = np.array([[0.5, -1.0, 0.25, 1.0],
                 [-0.5, 0.75, 0.0, 0.0],
                 [1.0, 0.125, -0.25, 1.0],
                 [0.0, -0.375, 0.5, 0.0],
                 [-1.0, 1.0, 1.0, 1.0]])


def _tiny_bytes(gz=False):
    """TINY as the bytes of a .csv file, gzip-compressed with `gz`."""
    data = "".join(",".join(f"{v:g}" for v in row) + "\n" for row in TINY).encode()
    return gzip.compress(data) if gz else data


def _split(datasets_dir):
    """The bundled table, split deterministically: 400 training rows, 132 held out."""
    data = np.loadtxt(datasets_dir / "diabetes.csv.gz", delimiter=",", dtype=np.float32)
    x, y = torch.from_numpy(data[:, :-1]), torch.from_numpy(data[:, [-1]])
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    return x[order[:400]], y[order[:400]], x[order[400:]], y[order[400:]]


# ----------------------------------------------------------------------------- load

@pytest.mark.task("ch07.load")
@pytest.mark.points(3)
@pytest.mark.parametrize("gz", [False, True], ids=["csv", "csv.gz"])
def test_load_values_and_dtypes(probes, gz):
    # the file is written in the student's process, then read there with load_diabetes
    x, y = probes.load_written("tiny.csv.gz" if gz else "tiny.csv", _tiny_bytes(gz=gz))
    assert isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor), \
        f"load_diabetes returned {type_name(x)} and {type_name(y)}: convert the numpy arrays " \
        "with torch.from_numpy"
    assert y.dim() == 2 and y.shape == (5, 1), (
        f"the label has shape {list(y.shape)} for a 5-row file, expected [5, 1]: keep the label 2-D "
        "with data[:, [-1]] (data[:, -1] drops the column dimension, and BCELoss then broadcasts "
        "or fails against the model's [N, 1] output)")
    assert x.shape == (5, 3), (
        f"the features have shape {list(x.shape)} for a 5-row file with 3 features and a label, "
        "expected [5, 3]: take all columns but the last, data[:, :-1]")
    assert x.dtype == torch.float32 and y.dtype == torch.float32, (
        f"got {x.dtype} features and a {y.dtype} label, expected float32: pass dtype=np.float32 "
        "to np.loadtxt (float64 tensors do not mix with the model's float32 weights)")
    assert_close(x, TINY[:, :-1], "the features read from a 5-row file")
    assert_close(y, TINY[:, [-1]], "the labels read from a 5-row file")


@pytest.mark.task("ch07.load")
@pytest.mark.points(1)
def test_load_bundled_file(impl, datasets_dir):
    x, y = impl.load_diabetes(datasets_dir / "diabetes.csv.gz")
    assert x.shape == (532, 7) and y.shape == (532, 1), \
        f"got x {list(x.shape)} and y {list(y.shape)}, expected [532, 7] and [532, 1]"
    assert x.dtype == torch.float32 and y.dtype == torch.float32, \
        f"got {x.dtype} and {y.dtype}: pass dtype=np.float32 to np.loadtxt"
    assert set(torch.unique(y).tolist()) == {0.0, 1.0} and int(y.sum()) == 177, \
        "y should be the last column: 0/1 labels, 177 diabetic patients"
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0, \
        "x should hold the 7 scaled features only (values in [-1, 1])"


# ----------------------------------------------------------------------------- model

def _named_linears(model):
    """(name, handle) of each nn.Linear in the student's model, in the order of modules()."""
    return [(name, m) for name, m in model.named_modules() if is_instance(m, nn.Linear)]


def _linears(model):
    return [m for _, m in _named_linears(model)]


def _linear_weights(model):
    """(weight, bias) of each nn.Linear, read with the model's state_dict()."""
    w = model.state_dict()
    prefix = [f"{name}." if name else "" for name, _ in _named_linears(model)]
    return [(w[f"{p}weight"], w.get(f"{p}bias")) for p in prefix]


def _make(impl, n_features, activation):
    try:
        return impl.DiabetesModel(n_features, activation)
    except TypeError as exc:
        raise AssertionError(f"DiabetesModel({n_features}, {activation.__name__}) failed: {exc}: pass the "
                             "activation class as the second argument and instantiate it, "
                             "self.activation = activation()") from None


def _forward(model, x, activation_name):
    try:
        return model(x)
    except TypeError as exc:
        raise AssertionError(f"DiabetesModel with {activation_name} failed in forward: {exc}: the "
                             "activation is a class; instantiate it in __init__, "
                             "self.activation = activation()") from None
    except RuntimeError as exc:
        if "cannot be multiplied" not in str(exc):
            raise
        raise AssertionError(f"DiabetesModel({x.shape[1]}) cannot take [N, {x.shape[1]}] inputs ({exc}): "
                             "the first layer is nn.Linear(n_features, 6); use n_features, "
                             "not a fixed width") from None


@pytest.mark.task("ch07.model")
@pytest.mark.points(2)
def test_model_layers(impl):
    model = _make(impl, 5, nn.Sigmoid)
    shapes = [(m.in_features, m.out_features) for m in _linears(model)]
    if shapes and shapes[0][0] != 5:
        raise AssertionError(f"DiabetesModel(5) has a first layer with {shapes[0][0]} inputs: use "
                             "n_features, not a fixed width (the lecture's 8, the bundled data's 7)")
    assert shapes == [(5, 6), (6, 4), (4, 1)], \
        f"DiabetesModel(5) has Linear layers {shapes}, expected (5, 6), (6, 4), (4, 1) in this order"
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == 5 * 6 + 6 + 6 * 4 + 4 + 4 + 1, \
        f"DiabetesModel(5) has {n_params} parameters, expected 69 (three Linear layers and nothing else)"


@pytest.mark.task("ch07.model")
@pytest.mark.points(2)
@pytest.mark.parametrize("activation", [nn.Sigmoid, nn.ReLU, nn.Tanh], ids=lambda a: a.__name__)
def test_model_values(impl, activation):
    torch.manual_seed(0)
    model = _make(impl, 4, activation)
    weights = _linear_weights(model)
    assert len(weights) == 3, f"DiabetesModel should have 3 Linear layers, found {len(weights)}"
    lin = [lambda h, wb=wb: F.linear(h, *wb) for wb in weights]
    x = torch.randn(8, 4) * 2
    got = _forward(model, x, activation.__name__)
    act = activation()
    hidden = act(lin[1](act(lin[0](x))))
    want = torch.sigmoid(lin[2](hidden))
    hint = None
    sigmoid_hidden = torch.sigmoid(lin[1](torch.sigmoid(lin[0](x))))
    if activation is not nn.Sigmoid and torch.allclose(got, torch.sigmoid(lin[2](sigmoid_hidden)), atol=1e-6):
        hint = (f"the activation argument is ignored: with {activation.__name__} the hidden layers "
                "still use a sigmoid; build self.activation = activation()")
    elif torch.allclose(got, act(lin[2](hidden)), atol=1e-6):
        hint = ("the output goes through the activation, not a sigmoid: the last step must be the "
                "sigmoid so the output is a probability")
    elif torch.allclose(got, torch.sigmoid(lin[2](lin[1](lin[0](x)))), atol=1e-6):
        hint = "there is no activation between the layers: apply self.activation after linear1 and linear2"
    assert_close(got, want, f"DiabetesModel(4, {activation.__name__})'s output", hint=hint)


@pytest.mark.task("ch07.model")
@pytest.mark.points(1)
def test_model_gradients_reach_every_layer(impl, probes):
    torch.manual_seed(0)
    model = _make(impl, 3, nn.Tanh)
    # forward, then out.sum().backward() when the output requires grad, on the student's side
    out = _forward(lambda x: probes.sum_backward(model, x), torch.randn(6, 3), "Tanh")
    assert out.requires_grad, "the output does not require grad: do not detach inside forward"
    for i, layer in enumerate(_linears(model), 1):
        assert layer.weight.grad is not None and bool(layer.weight.grad.abs().sum() > 0), \
            f"no gradient reaches Linear layer {i}: every layer must be used in forward"


# ----------------------------------------------------------------------------- train

def _reference_model(n_features=7, activation=nn.ReLU, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_features, 6), activation(), nn.Linear(6, 4), activation(),
                         nn.Linear(4, 1), nn.Sigmoid())


def _reference_losses(x, y, epochs, lr, *, zero_grad=True, reduction="mean", record_after=False):
    """The lecture's full-batch loop, and the common ways of getting it wrong, for fingerprints."""
    model = _reference_model(x.shape[1], nn.Tanh)
    return reference_losses(model, nn.BCELoss(reduction=reduction), x, y, epochs, lr,
                            zero_grad=zero_grad, record_after=record_after)


@pytest.mark.task("ch07.train")
@pytest.mark.points(3)
def test_train_matches_lecture_loop(impl, datasets_dir):
    x, y, _, _ = _split(datasets_dir)
    x, y = x[:64], y[:64]
    got = impl.train_full_batch(_reference_model(7, nn.Tanh), x, y, epochs=30, lr=0.1)
    want = _reference_losses(x, y, 30, 0.1)
    assert len(got) == 30, f"train_full_batch(epochs=30) returned {len(got)} losses"
    got_t = torch.tensor([float(v) for v in got])
    if not torch.allclose(got_t, torch.tensor(want), rtol=1e-4):
        for kwargs, mistake in [
            (dict(zero_grad=False), "the gradients pile up: call optimizer.zero_grad() every epoch, "
                                    "before loss.backward()"),
            (dict(reduction="sum"), "the loss is summed over the samples: use the mean, nn.BCELoss() "
                                    "(with the sum, lr = 0.1 takes steps 532 times too large)"),
            (dict(record_after=True), "you record the loss after optimizer.step(): "
                                      "keep the loss computed before the update"),
        ]:
            wrong = _reference_losses(x, y, 30, 0.1, **kwargs)
            if torch.allclose(got_t, torch.tensor(wrong), rtol=1e-4, equal_nan=True):
                raise AssertionError(f"train_full_batch's losses follow a known mistake: {mistake}")
        if torch.allclose(got_t, torch.full_like(got_t, got_t[0].item())):
            raise AssertionError("the loss never changes: call optimizer.step() after loss.backward(), "
                                 "with an optimizer built on model.parameters()")
    assert_close(got_t, torch.tensor(want), "the loss of each epoch", rtol=1e-4,
                 hint="compare your loop with: loss = BCELoss() on the whole set, zero_grad, backward, step")


@pytest.mark.task("ch07.train")
@pytest.mark.points(4)
def test_train_reaches_held_out_accuracy(probes, datasets_dir):
    x_train, y_train, x_test, y_test = _split(datasets_dir)
    model = _reference_model(7, nn.ReLU, seed=0)
    # the student's side trains a copy of the model; its weights come back and are evaluated here
    losses, trained = probes.train_and_weights(model, x_train, y_train, 1000, 0.1)
    model.load_state_dict(trained)
    assert losses[-1] < losses[0] - 0.1, \
        f"the training loss went from {losses[0]:.4f} to {losses[-1]:.4f} in 1000 epochs: check the " \
        "loop (mean BCELoss, then zero_grad, backward, step every epoch)"
    with torch.no_grad():
        held_out = ((model(x_test) >= 0.5).float() == y_test).float().mean().item()
    majority = 1 - y_test.mean().item()
    assert held_out > 0.75, \
        f"after 1000 epochs (ReLU network, lr = 0.1) the held-out accuracy is {held_out:.3f}; expected " \
        f"above 0.75 (always guessing 'not diabetic' scores {majority:.3f})"


# ----------------------------------------------------------------------------- accuracy

def _accuracy(probes, probs, y):
    """The student's accuracy of `probs` against `y` (from a 'model' whose output is its input,
    probes.accuracy_of), naming the mistake when it is a known one. Returns the accuracy and
    whether grad mode was on at each of the model's calls."""
    got, grad_enabled = probes.accuracy_of(probs, y)
    assert isinstance(got, float), f"accuracy returned {type_name(got)}: return a Python float (.item())"
    predicted = (probs >= 0.5).float()
    want = (predicted == y).float().mean().item()
    if abs(got - want) < 1e-6:
        return got, grad_enabled
    if abs(got - (predicted.flatten() == y).float().mean().item()) < 1e-6:
        raise AssertionError(f"accuracy is {got:.4f}, expected {want:.4f}: the predictions [N] are compared "
                             "with labels [N, 1], which broadcasts to an [N, N] table; keep both [N, 1]")
    if abs(got - (1 - want)) < 1e-6:
        raise AssertionError(f"accuracy is {got:.4f}, expected {want:.4f}: the predictions are inverted; "
                             "a probability >= 0.5 means class 1")
    if abs(got - 100 * want) < 1e-4:
        raise AssertionError(f"accuracy is {got:.4f}: return a fraction in [0, 1], not a percentage")
    if abs(got - predicted.mean().item()) < 1e-6:
        raise AssertionError(f"accuracy is {got:.4f}, expected {want:.4f}: count predictions equal to "
                             "the labels, not predictions of class 1")
    raise AssertionError(f"accuracy is {got:.4f}, expected {want:.4f}: predict 1 when the probability "
                         "is >= 0.5, 0 otherwise, and return the fraction equal to y")


@pytest.mark.task("ch07.accuracy")
@pytest.mark.points(3)
def test_accuracy_values(probes):
    torch.manual_seed(0)
    _accuracy(probes, torch.rand(40, 1), (torch.rand(40, 1) > 0.5).float())


@pytest.mark.task("ch07.accuracy")
@pytest.mark.points(1)
def test_accuracy_threshold_is_one_half(probes):
    probs = torch.tensor([[0.49], [0.51], [0.05], [0.95], [0.3], [0.7]])
    y = torch.tensor([[0.0], [1.0], [0.0], [1.0], [0.0], [1.0]])
    _accuracy(probes, probs, y)


@pytest.mark.task("ch07.accuracy")
@pytest.mark.points(2)
def test_accuracy_tracks_no_gradients(probes):
    _, grad_enabled = _accuracy(probes, torch.tensor([[0.2], [0.8], [0.6]]), torch.tensor([[0.0], [1.0], [0.0]]))
    assert grad_enabled and not any(grad_enabled), \
        "accuracy ran the model with gradient tracking on: wrap the evaluation in `with torch.no_grad():` " \
        "(no graph is needed to count correct predictions)"
