"""Chapter 09, hidden tests: values against PyTorch, stability, gradients, common mistakes, accuracy."""
import copy

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from grader.remote import is_instance, type_name
from grader.testing import assert_close, check_gradients

MEAN, STD = 0.1307, 0.3081


def _call(fn, *args, what):
    """Call a student function, turning a shape error into an instructive failure."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AssertionError(f"{what} raised RuntimeError: {first} (reduce over dim=1 with "
                             "keepdim=True, so the [N, 1] result broadcasts against [N, C])") from None


def _assert_autograd(backward):
    """check_gradients' own message when the result has no autograd graph."""
    if not backward["requires_grad"]:
        raise AssertionError("the result does not depend on the inputs through autograd "
                             "(was the graph cut with .item(), .detach() or .data?)")


def _grads(backward, inputs):
    """The gradients a `gradients` probe observed, zeros where none reached an input."""
    return [torch.zeros_like(x) if g is None else g for g, x in zip(backward["grads"], inputs)]


# --------------------------------------------------------------------------- softmax

@pytest.mark.task("ch09.softmax")
@pytest.mark.points(2)
def test_softmax_matches_torch(impl):
    for shape in [(4, 10), (5, 5), (1, 3)]:
        z = torch.randn(*shape, dtype=torch.float64) * 3
        got = _call(impl.softmax, z, what=f"softmax of a {list(shape)} tensor")
        assert isinstance(got, torch.Tensor) and got.shape == z.shape, \
            f"softmax of a {list(shape)} tensor has shape {list(getattr(got, 'shape', []))}"
        assert got.dtype == torch.float64, f"softmax turned float64 input into {got.dtype}: keep the dtype"
        hint = None
        if shape[0] > 1 and torch.allclose(got.sum(dim=0), torch.ones(shape[1], dtype=got.dtype), atol=1e-9):
            hint = "each column sums to 1: normalise each row, over dim=1"
        assert_close(got, torch.softmax(z, dim=1), f"softmax of a {list(shape)} tensor", atol=1e-7,
                     hint=hint or "exp(z - row max) / its sum over dim=1, with keepdim=True")


@pytest.mark.task("ch09.softmax")
@pytest.mark.points(2)
def test_softmax_is_stable_for_large_logits(impl):
    z = torch.tensor([[1000.0, 0.0, -1000.0], [1000.0, 1000.0, 999.0], [-1000.0, -1000.0, -999.0],
                      [0.5, 0.25, 0.0]])
    got = _call(impl.softmax, z, what="softmax of logits of +-1000")
    assert bool(torch.isfinite(got).all()), \
        "softmax returned NaN or inf for logits of +-1000: exp(1000) overflows to inf and inf / inf is " \
        "NaN; subtract each row's max before exp (softmax is unchanged by the shift)"
    assert_close(got, torch.softmax(z, dim=1), "softmax of logits of +-1000", atol=1e-6)


@pytest.mark.task("ch09.softmax")
@pytest.mark.points(1)
def test_softmax_gradient(impl, probes):
    z = torch.randn(3, 5, dtype=torch.float64)
    weights = torch.randn(3, 5, dtype=torch.float64)
    # autograd's gradient of (softmax(z) * weights).sum(), taken beside your code
    backward = probes.gradients("softmax", [z], [0], weights)
    _assert_autograd(backward)
    check_gradients(lambda t: (impl.softmax(t) * weights).sum(), [z], analytic=_grads(backward, [z]),
                    names=["the logits z"],
                    hint="softmax must be built from differentiable tensor operations "
                         "(no .detach(), .item(), .numpy() or in-place writes)")


# --------------------------------------------------------------------------- cross-entropy

def _fingerprint_cross_entropy(got, logits, targets):
    """Name the mistake whose value `got` matches, or None."""
    n, c = logits.shape
    log_probs = torch.log_softmax(logits, dim=1)
    picked = log_probs[torch.arange(n), targets]
    probs = log_probs.exp()
    candidates = [
        (F.cross_entropy(torch.softmax(logits, dim=1), targets),
         "softmax is applied before the cross-entropy, so it is applied twice: take the "
         "log-softmax of the raw logits"),
        (-picked.sum(), "the losses are summed over the batch: take the mean, as nn.CrossEntropyLoss does"),
        (-picked.sum() / (n * c), "the sum is divided by N*C: sum over the classes (one-hot picks one), "
                                  "then take the mean over the N samples"),
        (picked.mean(), "the minus sign is missing: the loss is -log p[target]"),
        (-probs[torch.arange(n), targets].mean(), "the log is missing: the loss is -log p[target], not -p[target]"),
        (-log_probs[:, targets].mean(), "the targets pick the wrong entries: row i needs log_probs[i, targets[i]] "
                                        "(one-hot rows, or gather on dim 1)"),
    ]
    for value, mistake in candidates:
        if torch.isfinite(value) and torch.allclose(got.detach().to(value.dtype), value, rtol=1e-6, atol=1e-9):
            return mistake
    return None


@pytest.mark.task("ch09.cross_entropy")
@pytest.mark.points(3)
def test_cross_entropy_matches_crossentropyloss(impl):
    for n, c in [(8, 10), (5, 3), (1, 4)]:
        logits = torch.randn(n, c, dtype=torch.float64) * 2
        targets = torch.randint(0, c, (n,))
        got = _call(impl.cross_entropy, logits, targets, what=f"cross_entropy on [{n}, {c}] logits")
        want = nn.CrossEntropyLoss()(logits, targets)
        assert isinstance(got, torch.Tensor), f"cross_entropy returned {type_name(got)}, expected a tensor"
        if got.shape == want.shape and not torch.allclose(got.to(want.dtype), want, rtol=1e-6):
            mistake = _fingerprint_cross_entropy(got, logits, targets)
            if mistake:
                raise AssertionError(f"cross_entropy follows a known mistake: {mistake}")
        assert got.dim() == 0, f"cross_entropy returned shape {list(got.shape)}: return the mean, a 0-d tensor"
        assert_close(got, want, f"cross_entropy on [{n}, {c}] logits vs nn.CrossEntropyLoss()", rtol=1e-6,
                     hint="mean over the batch of -(log_softmax(logits)[i, targets[i]])")


@pytest.mark.task("ch09.cross_entropy")
@pytest.mark.points(2)
def test_cross_entropy_gradient_matches_crossentropyloss(impl, probes):
    logits = torch.randn(6, 4, dtype=torch.float64)
    targets = torch.tensor([0, 3, 1, 1, 2, 0])
    # cross_entropy(logits, targets) and its gradient for the logits, taken beside your code
    backward = probes.gradients("cross_entropy", [logits, targets], [0])
    assert backward["requires_grad"], \
        "cross_entropy's result does not require grad: build it from tensor operations on the logits " \
        "(no .item(), .detach() or numpy)"
    (got,) = _grads(backward, [logits])
    ref = logits.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(nn.CrossEntropyLoss()(ref, targets), ref)
    assert_close(got, want, "the gradient of cross_entropy with respect to the logits", rtol=1e-6,
                 hint="expected (softmax(logits) - one_hot(targets)) / N")
    check_gradients(lambda t: impl.cross_entropy(t, targets), [logits], analytic=[got], names=["the logits"])


@pytest.mark.task("ch09.cross_entropy")
@pytest.mark.points(1)
def test_cross_entropy_is_stable_for_large_logits(impl):
    logits = torch.tensor([[1000.0, 0.0, -1000.0], [0.0, 1000.0, 0.0], [-500.0, 500.0, 0.0]])
    targets = torch.tensor([2, 1, 0])
    got = _call(impl.cross_entropy, logits, targets, what="cross_entropy on logits of +-1000")
    assert bool(torch.isfinite(got).all()), \
        "cross_entropy returned inf or NaN for logits of +-1000: log(softmax) underflows to log(0); " \
        "compute the log-softmax directly as shifted - log(sum(exp(shifted))), shifted = logits - row max"
    assert_close(got, nn.CrossEntropyLoss()(logits, targets), "cross_entropy on logits of +-1000", rtol=1e-5)


# --------------------------------------------------------------------------- transform

@pytest.mark.task("ch09.transform")
@pytest.mark.points(3)
def test_transform_values(impl, datasets_dir):
    with np.load(datasets_dir / "mnist_subset.npz") as data:
        pixels = data["train_images"][0]
    pixels = pixels.copy()
    pixels[0, :3] = [0, 128, 255]
    want = (torch.from_numpy(pixels).float().div(255).unsqueeze(0) - MEAN) / STD
    transform = impl.mnist_transform()
    try:
        got = transform(Image.fromarray(pixels))
    except TypeError as exc:
        raise AssertionError(f"the transform failed on a PIL image ({exc}): Normalize works on tensors, "
                             "so ToTensor() must come first in the Compose") from None
    assert isinstance(got, torch.Tensor) and got.shape == (1, 28, 28), \
        f"mnist_transform() turned a 28x28 image into " \
        f"{list(got.shape) if isinstance(got, torch.Tensor) else type_name(got)}, " \
        "expected a tensor [1, 28, 28]"
    raw = torch.from_numpy(pixels).float().div(255).unsqueeze(0)
    hint = None
    if torch.allclose(got, raw, atol=1e-5):
        hint = "the values are still in [0, 1]: Normalize((0.1307,), (0.3081,)) is missing"
    elif torch.allclose(got, (raw - STD) / MEAN, atol=1e-4):
        hint = "the mean and std are swapped: Normalize(mean=(0.1307,), std=(0.3081,))"
    elif torch.allclose(got, (raw * 255 - MEAN) / STD, atol=1e-3):
        hint = "the pixels were not scaled to [0, 1] first: use ToTensor() on the image"
    assert_close(got, want, "the transformed image", atol=1e-5,
                 hint=hint or "ToTensor() then Normalize((0.1307,), (0.3081,))")


# --------------------------------------------------------------------------- model

def _linears(model):
    """The names of the model's nn.Linear modules, in the order of model.modules()."""
    return [name for name, m in model.named_modules() if is_instance(m, nn.Linear)]


def _key(name, tensor):
    """The state_dict key of a module's tensor ("weight", "bias")."""
    return f"{name}.{tensor}" if name else tensor


@pytest.mark.task("ch09.model")
@pytest.mark.points(2)
def test_model_architecture(impl):
    model = impl.MnistMLP()
    weights = model.state_dict()
    shapes = [tuple(weights[_key(name, "weight")].shape[::-1]) for name in _linears(model)]
    want = [(784, 512), (512, 256), (256, 128), (128, 64), (64, 10)]
    assert shapes == want, f"MnistMLP's Linear layers are {shapes}, expected {want} (784-512-256-128-64-10)"
    n_params = sum(p.numel() for p in model.parameters())
    expected = sum(i * o + o for i, o in want)
    assert n_params == expected, \
        f"MnistMLP has {n_params} parameters, expected {expected}: only the five Linear layers"


@pytest.mark.task("ch09.model")
@pytest.mark.points(3)
def test_model_forward_returns_logits(impl):
    model = impl.MnistMLP()
    layers = _linears(model)
    assert len(layers) == 5, f"MnistMLP should have 5 Linear layers, found {len(layers)}"
    w = model.state_dict()

    def layer(name, h):
        return F.linear(h, w[_key(name, "weight")], w.get(_key(name, "bias")))

    x = torch.randn(6, 1, 28, 28)
    got = model(x)
    h = x.view(-1, 784)
    for name in layers[:-1]:
        h = torch.relu(layer(name, h))
    want = layer(layers[-1], h)
    assert got.shape == (6, 10), f"MnistMLP maps [6, 1, 28, 28] to {list(got.shape)}, expected [6, 10]"
    hint = None
    if torch.allclose(got, torch.softmax(want, dim=1), atol=1e-6):
        hint = ("forward applies softmax: return the logits of the last layer, because "
                "nn.CrossEntropyLoss applies log-softmax itself (softmax twice slows learning)")
    elif torch.allclose(got, torch.log_softmax(want, dim=1), atol=1e-5):
        hint = "forward applies log_softmax: return the raw logits for nn.CrossEntropyLoss"
    elif torch.allclose(got, torch.relu(want), atol=1e-6):
        hint = "there is a ReLU after the last layer: the logits must be able to go negative"
    elif got.min() >= 0 and got.max() <= 1:
        hint = "the outputs are squashed into [0, 1]: return the raw logits, no activation after l5"
    assert_close(got, want, "MnistMLP's output", atol=1e-5,
                 hint=hint or "view(-1, 784), then Linear and ReLU four times, then the last Linear alone")
    x_flat = x.view(6, 784)
    assert_close(model(x_flat), want, "MnistMLP's output for already flat [6, 784] input", atol=1e-5,
                 hint="flatten with x.view(-1, 784)")


def _mnist_tensors(datasets_dir, train, limit=None):
    """The subset's images normalised in one go (what mnist_transform does image by image)."""
    split = "train" if train else "test"
    with np.load(datasets_dir / "mnist_subset.npz") as data:
        images, labels = data[f"{split}_images"][:limit], data[f"{split}_labels"][:limit]
    x = (torch.from_numpy(images).float().div(255).unsqueeze(1) - MEAN) / STD
    return x, torch.from_numpy(labels)


@pytest.mark.task("ch09.model")
@pytest.mark.points(1)
def test_model_overfits_a_small_batch(probes, student, datasets_dir):
    x, y = _mnist_tensors(datasets_dir, train=True, limit=128)
    student.seed(0)
    # a new MnistMLP, 40 full-batch Adam(lr=1e-3) steps of CrossEntropyLoss, then its logits for x
    logits = probes.overfit_logits(x, y, 40, 1e-3)
    accuracy = (logits.argmax(dim=1) == y).float().mean().item()
    assert accuracy >= 0.95, \
        f"after 40 full-batch Adam steps on 128 digits MnistMLP classifies only {accuracy:.0%} of them, " \
        "expected at least 95%: are the layers chained with ReLU and the logits returned as they are?"


# --------------------------------------------------------------------------- train and evaluate

def _reference_train_epoch(model, loader, optimizer, criterion, *, zero_grad=True, step=True,
                           value="mean_of_batches"):
    """The lecture's loop, and the usual ways of getting it wrong, for fingerprints."""
    losses = []
    for inputs, targets in loader:
        if zero_grad:
            optimizer.zero_grad()
        loss = criterion(model(inputs), targets)
        loss.backward()
        if step:
            optimizer.step()
        losses.append(loss.item())
    return {"mean_of_batches": sum(losses) / len(losses), "sum_of_batches": sum(losses),
            "last_batch": losses[-1], "per_sample": sum(losses) / len(loader.dataset)}[value]


@pytest.mark.task("ch09.train")
@pytest.mark.points(3)
def test_train_epoch_matches_the_lecture_loop(probes, datasets_dir):
    x, y = _mnist_tensors(datasets_dir, train=True, limit=300)
    loader = DataLoader(TensorDataset(x, y), batch_size=50, shuffle=False)
    torch.manual_seed(0)
    start = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))

    def run(fn, **kwargs):
        model = copy.deepcopy(start)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
        values = [fn(model, loader, optimizer, nn.CrossEntropyLoss(), **kwargs) for _ in range(2)]
        return torch.tensor([float(v) for v in values]), model

    # your train_epoch, twice, on a copy of `start` with the same SGD, beside your code
    student_run = probes.train_epochs(start, loader, torch.optim.SGD, {"lr": 0.1, "momentum": 0.5},
                                      nn.CrossEntropyLoss(), 2)
    got = torch.tensor([float(v) for v in student_run["losses"]])
    want, want_model = run(_reference_train_epoch)
    if not torch.allclose(got, want, rtol=1e-4):
        for kwargs, mistake in [
            (dict(zero_grad=False), "the gradients pile up: call optimizer.zero_grad() for every batch"),
            (dict(step=False), "the weights never change: call optimizer.step() after loss.backward()"),
            (dict(value="sum_of_batches"), "the epoch's loss is the sum of the batch losses: divide the total "
                                           "by the number of batches"),
            (dict(value="per_sample"), "the total is divided by the number of samples: divide it by the "
                                       "number of batches, len(loader)"),
            (dict(value="last_batch"), "only the last batch's loss is returned: average over all batches"),
        ]:
            wrong, _ = run(_reference_train_epoch, **kwargs)
            if torch.allclose(got, wrong, rtol=1e-4):
                raise AssertionError(f"train_epoch follows a known mistake: {mistake}")
    assert_close(got, want, "the mean batch loss of two epochs", rtol=1e-4,
                 hint="for every batch: zero_grad, loss, backward, step; return the mean batch loss")
    for name, q in want_model.named_parameters():
        assert name in student_run["state"], f"parameter {name} is missing from the model after two epochs"
        assert_close(student_run["state"][name], q, f"parameter {name} after two epochs", rtol=1e-4, atol=1e-6)


@pytest.mark.task("ch09.train")
@pytest.mark.points(1)
def test_train_epoch_uses_training_mode(probes):
    x, y = torch.randn(20, 1, 28, 28), torch.randint(0, 10, (20,))
    # a model that records its mode at each forward, put in eval mode (as evaluate() leaves it)
    seen = probes.modes_seen("train_epoch", x, y, 10, False)
    assert seen, "train_epoch never called the model"
    assert all(training for training, _ in seen), \
        "train_epoch ran the model in eval mode: call model.train() at its start (evaluate() switches " \
        "to eval mode, which changes layers such as Dropout and BatchNorm)"


@pytest.mark.task("ch09.train")
@pytest.mark.points(2)
def test_evaluate_uses_eval_mode_and_no_grad(probes):
    x, y = torch.randn(20, 1, 28, 28), torch.randint(0, 10, (20,))
    # a model that records its mode and grad mode at each forward, put in training mode
    seen = probes.modes_seen("evaluate", x, y, 10, True)
    assert seen, "evaluate never called the model"
    assert not any(training for training, _ in seen), \
        "evaluate ran the model in training mode: call model.eval() first"
    assert not any(grad for _, grad in seen), \
        "evaluate tracked gradients: wrap the loop in `with torch.no_grad():` (saves memory and time)"


@pytest.mark.task("ch09.train")
@pytest.mark.points(2)
def test_evaluate_counts_every_sample(impl):
    # 20 samples in batches of 6, 6, 6, 2; the model predicts x's class exactly when flagged.
    targets = torch.arange(20) % 10
    right = torch.tensor([1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 1], dtype=torch.bool)
    predicted = torch.where(right, targets, (targets + 1) % 10)
    x = F.one_hot(predicted, 784).float().view(20, 1, 28, 28) * 5.0
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10, bias=False))
    model[1].load_state_dict({"weight": torch.eye(10, 784)})  # the test's own model, sent to evaluate
    loader = DataLoader(TensorDataset(x, targets), batch_size=6, shuffle=False)
    got = impl.evaluate(model, loader)
    want = int(right.sum()) / 20  # 7 / 20
    per_batch = np.mean([float(right[i:i + 6].float().mean()) for i in range(0, 20, 6)])
    assert not (isinstance(got, (int, float)) and abs(got - 100 * want) < 1e-6), \
        f"evaluate returned {got}: return a fraction in [0, 1], not a percentage"
    assert abs(float(got) - int(right.sum())) > 1e-6, \
        f"evaluate returned {got}, the number of correct samples: divide by the number of samples"
    assert abs(float(got) - int(right.sum()) / len(loader)) > 1e-6, \
        "evaluate divides the correct count by the number of batches: divide by the number of samples"
    assert abs(float(got) - per_batch) > 1e-6, \
        "evaluate averages the accuracies of the batches, but the last batch is smaller: count correct " \
        "samples over the whole loader, then divide by the number of samples"
    assert isinstance(got, float), f"evaluate returned {type_name(got)}: return a Python float"
    assert abs(got - want) < 1e-6, \
        f"evaluate returned {got}, expected {want}: predictions are the argmax of the logits over dim 1"


@pytest.mark.task("ch09.train")
@pytest.mark.points(3)
def test_mlp_reaches_90_percent_on_the_subset(probes, datasets_dir):
    x_train, y_train = _mnist_tensors(datasets_dir, train=True)
    x_test, y_test = _mnist_tensors(datasets_dir, train=False)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                          nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    train_loader = DataLoader(TensorDataset(x_train, y_train), batch_size=64, shuffle=True,
                              generator=torch.Generator().manual_seed(0))
    test_loader = DataLoader(TensorDataset(x_test, y_test), batch_size=500)
    # your train_epoch six times with SGD(lr=0.1, momentum=0.5), then your evaluate, beside your code
    run = probes.train_epochs(model, train_loader, torch.optim.SGD, {"lr": 0.1, "momentum": 0.5},
                              nn.CrossEntropyLoss(), 6, eval_loader=test_loader)
    losses, accuracy = run["losses"], run["accuracy"]
    assert losses[-1] < losses[0], \
        f"the epoch loss went from {losses[0]:.3f} to {losses[-1]:.3f}: training does not learn"
    assert 0.0 <= accuracy <= 1.0, f"evaluate returned {accuracy}: return a fraction in [0, 1]"
    assert accuracy >= 0.90, \
        f"after 6 epochs on the 4,000 training digits (SGD lr 0.1, momentum 0.5) the test accuracy is " \
        f"{accuracy:.1%}, expected at least 90%"
