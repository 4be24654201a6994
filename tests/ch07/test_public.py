"""Chapter 07, public tests: the lecture's data and published examples.

The hidden tests check the same properties on held-out files, widths, seeds, activations and
learning rates. The model tests find your three Linear layers by their shapes (F -> 6, 6 -> 4,
4 -> 1): any attribute names, any registration order and an nn.Sequential are fine.
train_full_batch and accuracy are tested on the tests' own models, so their tests do not
depend on your DiabetesModel.
"""
import gzip

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grader.remote import is_instance, type_name
from grader.testing import assert_close, reference_losses

# --------------------------------------------------------------------------- ch07.load

# A published 5-row file: 3 features, then the label.
TINY = np.array([[0.5, -1.0, 0.25, 1.0],
                 [-0.5, 0.75, 0.0, 0.0],
                 [1.0, 0.125, -0.25, 1.0],
                 [0.0, -0.375, 0.5, 0.0],
                 [-1.0, 1.0, 1.0, 1.0]])


def _csv_bytes(table, gz=False):
    """`table` as the bytes of a comma-separated file, gzip-compressed with `gz`."""
    data = "".join(",".join(f"{v:g}" for v in row) + "\n" for row in table).encode()
    return gzip.compress(data) if gz else data


def _check_loaded(x, y, table, what):
    """load_diabetes's (x, y) for a file holding `table`: types, shapes, dtypes, values."""
    n, columns = table.shape
    assert isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor), \
        f"load_diabetes returned {type_name(x)} and {type_name(y)}: convert the numpy arrays " \
        "with torch.from_numpy"
    assert y.dim() == 2 and y.shape == (n, 1), (
        f"the label has shape {list(y.shape)} for {what}, expected [{n}, 1]: keep the label 2-D "
        "(indexing the last column with a single integer drops the column dimension, and BCELoss then "
        "broadcasts or fails against the model's [N, 1] output; a list or a slice keeps it)")
    assert x.shape == (n, columns - 1), (
        f"the features have shape {list(x.shape)} for {what} with {columns - 1} features and a label, "
        f"expected [{n}, {columns - 1}]: take all columns but the last, data[:, :-1]")
    assert x.dtype == torch.float32 and y.dtype == torch.float32, (
        f"got {x.dtype} features and a {y.dtype} label, expected float32: pass dtype=np.float32 "
        "to np.loadtxt (float64 tensors do not mix with the model's float32 weights)")
    assert_close(x, table[:, :-1], f"the features read from {what}")
    assert_close(y, table[:, [-1]], f"the labels read from {what}")


@pytest.mark.task("ch07.load")
@pytest.mark.points(2)
def test_load_shapes(impl, datasets_dir):
    x, y = impl.load_diabetes(datasets_dir / "diabetes.csv.gz")
    assert isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor), \
        f"load_diabetes returned {type_name(x)} and {type_name(y)}: return tensors " \
        "(torch.from_numpy)"
    assert x.shape == (532, 7), f"x has shape {list(x.shape)}, expected [532, 7]: all columns but the last"
    assert y.shape == (532, 1), f"y has shape {list(y.shape)}, expected [532, 1]: keep the label 2-D " \
                                "(select the last column with a list or a slice, not a single integer)"
    assert x.dtype == torch.float32 and y.dtype == torch.float32, \
        f"got {x.dtype} features and a {y.dtype} label, expected float32: pass dtype=np.float32 to np.loadtxt"
    assert set(torch.unique(y).tolist()) == {0.0, 1.0} and int(y.sum()) == 177, \
        "y should be the last column: 0/1 labels, 177 diabetic patients"


@pytest.mark.task("ch07.load")
@pytest.mark.points(1)
@pytest.mark.parametrize("gz", [False, True], ids=["csv", "csv.gz"])
def test_load_published_file(probes, gz):
    # the file is written in your process, then read there with load_diabetes
    x, y = probes.load_written("tiny.csv.gz" if gz else "tiny.csv", _csv_bytes(TINY, gz=gz))
    _check_loaded(x, y, TINY, "a 5-row file")


# --------------------------------------------------------------------------- ch07.model

def _make(impl, n_features, activation=None):
    """DiabetesModel(n_features) or DiabetesModel(n_features, activation)."""
    try:
        if activation is None:
            return impl.DiabetesModel(n_features)
        return impl.DiabetesModel(n_features, activation)
    except TypeError as exc:
        called = f"DiabetesModel({n_features}{', ' + activation.__name__ if activation else ''})"
        raise AssertionError(f"{called} failed: {exc}: take the activation class as the second argument "
                             "(default nn.Sigmoid) and instantiate it in __init__: it is a class, not a layer") from None


def _key(name, tensor):
    """The state_dict key of a module's tensor ("weight", "bias")."""
    return f"{name}.{tensor}" if name else tensor


def _layers(model, n_features):
    """The (weight, bias) of DiabetesModel's three Linear layers in the network's order
    (F -> 6, 6 -> 4, 4 -> 1), found by their shapes in the state_dict: any attribute names,
    any registration order, an nn.Sequential."""
    sd = model.state_dict()
    names = [name for name, m in model.named_modules() if is_instance(m, nn.Linear)]
    shapes = {name: tuple(sd[_key(name, "weight")].shape[::-1]) for name in names}  # (in, out)
    listed = ", ".join(str(s) for s in shapes.values()) or "none"
    by_shape = {s: name for name, s in shapes.items()}
    if (n_features, 6) not in by_shape:
        wide = [i for i, o in shapes.values() if o == 6]
        if wide:
            raise AssertionError(f"DiabetesModel({n_features}) has a first layer with {wide[0]} inputs: use "
                                 "n_features, not a fixed width (the lecture's 8, the bundled data's 7)")
    want = [(n_features, 6), (6, 4), (4, 1)]
    assert len(names) == 3 and all(s in by_shape for s in want), \
        f"DiabetesModel({n_features}) has Linear layers (in, out) {listed}, expected three: " \
        f"{want[0]}, (6, 4), (4, 1)"
    n_params = sum(v.numel() for v in sd.values())
    expected = sum(i * o + o for i, o in want)
    assert n_params == expected, \
        f"DiabetesModel({n_features}) has {n_params} parameters, expected {expected} (three Linear layers " \
        "and nothing else)"
    return [(sd[_key(by_shape[s], "weight")], sd.get(_key(by_shape[s], "bias"))) for s in want]


def _forward(model, x, activation_name):
    """The student's model on x, with a teaching message when forward fails."""
    try:
        out = model(x)
    except TypeError as exc:
        raise AssertionError(f"DiabetesModel with {activation_name} failed in forward: {exc}: the "
                             "activation is a class; instantiate it in __init__ "
                             "and call the instance in forward") from None
    except RuntimeError as exc:
        if "cannot be multiplied" not in str(exc):
            raise
        raise AssertionError(f"DiabetesModel({x.shape[1]}).forward failed on [N, {x.shape[1]}] inputs ({exc}): "
                             "chain the layers F -> 6 -> 4 -> 1, the first one nn.Linear(n_features, 6)") from None
    assert isinstance(out, torch.Tensor) and out.shape == (x.shape[0], 1), \
        f"DiabetesModel maps [{x.shape[0]}, {x.shape[1]}] to " \
        f"{list(out.shape) if isinstance(out, torch.Tensor) else type_name(out)}, expected [{x.shape[0]}, 1]"
    return out


def _network(layers, x, act):
    """The lecture's network on the student's weights: act between the layers, sigmoid last."""
    (w1, b1), (w2, b2), (w3, b3) = layers
    return torch.sigmoid(F.linear(act(F.linear(act(F.linear(x, w1, b1)), w2, b2)), w3, b3))


ACTIVATIONS = {nn.Sigmoid: torch.sigmoid, nn.ReLU: torch.relu, nn.Tanh: torch.tanh,
               nn.LeakyReLU: F.leaky_relu, nn.ELU: F.elu}


def check_model_values(impl, n_features, activation, x):
    """DiabetesModel(n_features, activation) on x against the lecture's network computed here from
    its weights, naming the known mistakes. activation=None: the default (nn.Sigmoid)."""
    model = _make(impl, n_features, activation)
    layers = _layers(model, n_features)
    name = (activation or nn.Sigmoid).__name__
    got = _forward(model, x, name)
    act = ACTIVATIONS[activation or nn.Sigmoid]
    want = _network(layers, x, act)
    (w1, b1), (w2, b2), (w3, b3) = layers
    hint = None
    if not torch.allclose(got, want, rtol=1e-5, atol=1e-6):
        others = [(a, f) for a, f in ACTIVATIONS.items() if a is not (activation or nn.Sigmoid)]
        hidden_with = {a: f(F.linear(f(F.linear(x, w1, b1)), w2, b2)) for a, f in ACTIVATIONS.items()}
        if activation is None and any(torch.allclose(got, _network(layers, x, f), atol=1e-6) for _, f in others):
            hint = "the default activation is not nn.Sigmoid: keep the signature's default, activation=nn.Sigmoid"
        elif activation not in (None, nn.Sigmoid) and torch.allclose(got, _network(layers, x, torch.sigmoid),
                                                                     atol=1e-6):
            hint = (f"the activation argument is ignored: with {name} the hidden layers still use a sigmoid; "
                    "build the hidden layers' activation from that argument")
        elif torch.allclose(got, act(F.linear(hidden_with[activation or nn.Sigmoid], w3, b3)), atol=1e-6):
            hint = ("the output goes through the activation, not a sigmoid: the last step must be the "
                    "sigmoid so the output is a probability")
        elif torch.allclose(got, torch.sigmoid(F.linear(F.linear(F.linear(x, w1, b1), w2, b2), w3, b3)),
                            atol=1e-6):
            hint = "there is no activation between the layers: apply the activation after the first two layers"
    what = f"DiabetesModel({n_features}{', ' + name if activation else ''})'s output"
    assert_close(got, want, what, rtol=1e-5, atol=1e-6,
                 hint=hint or "Linear, activation, Linear, activation, Linear, sigmoid")


@pytest.mark.task("ch07.model")
@pytest.mark.points(1)
def test_model_shape(impl):
    model = _make(impl, 7)
    out = _forward(model, torch.randn(5, 7), "Sigmoid")
    assert bool(((out > 0) & (out < 1)).all()), "DiabetesModel's outputs should be probabilities in (0, 1)"


@pytest.mark.task("ch07.model")
@pytest.mark.points(1)
def test_model_layers_by_shape(impl):
    _layers(_make(impl, 5, nn.Sigmoid), 5)


@pytest.mark.task("ch07.model")
@pytest.mark.points(1)
@pytest.mark.parametrize("activation", [nn.Sigmoid, nn.ReLU, nn.Tanh], ids=lambda a: a.__name__)
def test_model_follows_the_lecture(impl, activation):
    torch.manual_seed(0)
    check_model_values(impl, 5, activation, torch.randn(8, 5) * 2)


@pytest.mark.task("ch07.model")
@pytest.mark.points(1)
def test_model_default_activation_is_sigmoid(impl):
    torch.manual_seed(1)
    check_model_values(impl, 5, None, torch.randn(6, 5) * 2)


def check_gradients_reach_every_layer(impl, probes, n_features, x):
    model = _make(impl, n_features, nn.Tanh)
    layers = _layers(model, n_features)
    # forward, then out.sum().backward() on your side: the output and the parameters' gradients
    try:
        out, grads = probes.backward_grads(model, x)
    except TypeError as exc:
        raise AssertionError(f"DiabetesModel with Tanh failed: {exc}: instantiate the activation class "
                             "in __init__ (it is a class, not a layer)") from None
    assert isinstance(out, torch.Tensor) and out.requires_grad, \
        "the output does not require grad: do not detach inside forward"
    by_shape = {tuple(g.shape): g for g in grads.values() if isinstance(g, torch.Tensor) and g.dim() == 2}
    for (w, _), (i, o) in zip(layers, [(n_features, 6), (6, 4), (4, 1)]):
        g = by_shape.get(tuple(w.shape))
        assert g is not None and bool(g.abs().sum() > 0), \
            f"no gradient reaches the Linear layer ({i} -> {o}): every layer must be used in forward"


@pytest.mark.task("ch07.model")
@pytest.mark.points(1)
def test_model_gradients_reach_every_layer(impl, probes):
    torch.manual_seed(0)
    check_gradients_reach_every_layer(impl, probes, 3, torch.randn(6, 3))


# --------------------------------------------------------------------------- ch07.train

def diabetes(datasets_dir):
    """The bundled table as (x [532, 7], y [532, 1]), float32."""
    data = np.loadtxt(datasets_dir / "diabetes.csv.gz", delimiter=",", dtype=np.float32)
    return torch.from_numpy(data[:, :-1]), torch.from_numpy(data[:, [-1]])


def reference_model(n_features=7, activation=nn.ReLU, seed=0):
    """The lecture's network as an nn.Sequential, built here from a seed (sent to your code as a copy)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_features, 6), activation(), nn.Linear(6, 4), activation(),
                         nn.Linear(4, 1), nn.Sigmoid())


def _lecture_losses(x, y, epochs, lr, activation, seed, *, criterion=None, **mistake):
    """The lecture's full-batch loop, and (with `mistake`) the common ways of getting it wrong."""
    return reference_losses(reference_model(x.shape[1], activation, seed), criterion or nn.BCELoss(),
                            x, y, epochs, lr, **mistake)


def _as_losses(got, epochs, call):
    assert isinstance(got, list), f"{call} should return a list of {epochs} losses, got {type_name(got)}"
    assert len(got) == epochs, f"{call} returned {len(got)} losses, expected one per epoch ({epochs})"
    assert all(isinstance(v, float) for v in got), \
        f"{call} should return Python floats: append loss.item(), not the loss tensor"
    return torch.tensor(got)


def check_train_loop(impl, x, y, epochs, lr, activation, seed):
    """train_full_batch(epochs, lr) on the lecture's network against the lecture's loop, naming
    the known mistakes."""
    call = f"train_full_batch(epochs={epochs}, lr={lr})"
    got = _as_losses(impl.train_full_batch(reference_model(x.shape[1], activation, seed), x, y,
                                           epochs=epochs, lr=lr), epochs, call)
    want = torch.tensor(_lecture_losses(x, y, epochs, lr, activation, seed))
    if not torch.allclose(got, want, rtol=1e-4, atol=1e-6):
        candidates = [
            (dict(zero_grad=False), "the gradients pile up: call optimizer.zero_grad() every epoch, "
                                    "before loss.backward()"),
            (dict(criterion=nn.BCELoss(reduction="sum")),
             "the loss is summed over the samples: use the mean, nn.BCELoss() (with the sum, the steps "
             "grow with the number of samples)"),
            (dict(record_after=True), "you record the loss after optimizer.step(): keep the loss computed "
                                      "before the update"),
            (dict(criterion=nn.BCEWithLogitsLoss()),
             "the loss is BCEWithLogitsLoss, which applies its own sigmoid to outputs that are already "
             "probabilities: use nn.BCELoss() on the model's output"),
        ]
        if lr != 0.1:
            candidates.append((dict(lr=0.1), f"the lr argument is ignored (these losses are those of lr=0.1, "
                                             f"not lr={lr}): build the optimizer with lr=lr"))
        for kwargs, mistake in candidates:
            run_lr = kwargs.pop("lr", lr)
            wrong = torch.tensor(_lecture_losses(x, y, epochs, run_lr, activation, seed, **kwargs))
            if torch.allclose(got, wrong, rtol=1e-4, atol=1e-6, equal_nan=True):
                raise AssertionError(f"train_full_batch's losses follow a known mistake: {mistake}")
        if torch.allclose(got, torch.full_like(got, got[0].item())):
            raise AssertionError("the loss never changes: call optimizer.step() after loss.backward(), "
                                 "with an optimizer built on model.parameters()")
    assert_close(got, want, f"the loss of each epoch of {call}", rtol=1e-4, atol=1e-6,
                 hint="compare your loop with: mean BCELoss on the whole set, zero_grad, backward, step")


@pytest.mark.task("ch07.train")
@pytest.mark.points(1)
def test_train_returns_one_float_per_epoch(impl):
    model = nn.Sequential(nn.Linear(3, 1), nn.Sigmoid())
    x, y = torch.randn(10, 3), (torch.rand(10, 1) > 0.5).float()
    _as_losses(impl.train_full_batch(model, x, y, epochs=5), 5, "train_full_batch(epochs=5)")


@pytest.mark.task("ch07.train")
@pytest.mark.points(2)
def test_train_matches_lecture_loop_on_diabetes(impl, datasets_dir):
    x, y = diabetes(datasets_dir)
    check_train_loop(impl, x[:48], y[:48], 12, 0.5, nn.Tanh, 0)


@pytest.mark.task("ch07.train")
@pytest.mark.points(1)
def test_train_defaults_are_100_epochs_at_lr_0_1(impl, datasets_dir):
    x, y = diabetes(datasets_dir)
    x, y = x[:32], y[:32]
    explicit = impl.train_full_batch(reference_model(7, nn.Tanh, 0), x, y, epochs=100, lr=0.1)
    want = torch.tensor(_lecture_losses(x, y, 100, 0.1, nn.Tanh, 0))
    assert isinstance(explicit, list) and len(explicit) == 100 and \
        torch.allclose(torch.tensor([float(v) for v in explicit]), want, rtol=1e-4, atol=1e-6), \
        "train_full_batch(epochs=100, lr=0.1) does not follow the lecture's loop: fix the loop first " \
        "(see test_train_matches_lecture_loop_on_diabetes)"
    got = impl.train_full_batch(reference_model(7, nn.Tanh, 0), x, y)
    assert isinstance(got, list) and len(got) == 100, \
        f"train_full_batch(model, x, y) ran {len(got) if isinstance(got, list) else '?'} epochs: keep the " \
        "signature's default epochs=100"
    assert torch.allclose(torch.tensor([float(v) for v in got]), want, rtol=1e-4, atol=1e-6), \
        "train_full_batch(model, x, y) does not train like lr=0.1: keep the default lr=0.1 of the signature"


# --------------------------------------------------------------------------- ch07.accuracy

def check_accuracy(probes, probs, y):
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
    if abs(got - ((probs > 0.5).float() == y).float().mean().item()) < 1e-6:
        raise AssertionError(f"accuracy is {got:.4f}, expected {want:.4f}: a probability of exactly 0.5 counts "
                             "as class 1 (>= 0.5); > 0.5 and torch.round send it to class 0")
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
@pytest.mark.points(1)
def test_accuracy_simple(impl):
    probs = torch.tensor([[0.9], [0.2], [0.7], [0.4]])
    y = torch.tensor([[1.0], [0.0], [0.0], [0.0]])
    got = impl.accuracy(nn.Identity(), probs, y)  # the input is already a probability
    assert isinstance(got, float), f"accuracy returned {type_name(got)}: return a Python float (.item())"
    assert abs(got - 0.75) < 1e-6, f"accuracy is {got}, expected 0.75 (3 of 4 predictions right)"


@pytest.mark.task("ch07.accuracy")
@pytest.mark.points(2)
def test_accuracy_published_examples(probes):
    # three probabilities of exactly 0.5: they predict class 1; the answer is 0.8
    probs = torch.tensor([[0.5], [0.9], [0.2], [0.5], [0.7], [0.1], [0.45], [0.55], [0.3], [0.5]])
    y = torch.tensor([[1.0], [1.0], [0.0], [1.0], [0.0], [1.0], [0.0], [1.0], [0.0], [1.0]])
    check_accuracy(probes, probs, y)
    torch.manual_seed(0)
    check_accuracy(probes, torch.rand(40, 1), (torch.rand(40, 1) > 0.5).float())


@pytest.mark.task("ch07.accuracy")
@pytest.mark.points(1)
def test_accuracy_tracks_no_gradients(probes):
    _, grad_enabled = check_accuracy(probes, torch.tensor([[0.2], [0.8], [0.6]]), torch.tensor([[0.0], [1.0], [0.0]]))
    assert grad_enabled and not any(grad_enabled), \
        "accuracy ran the model with gradient tracking on: wrap the evaluation in `with torch.no_grad():` " \
        "(no graph is needed to count correct predictions)"
