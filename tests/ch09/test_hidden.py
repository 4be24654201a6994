"""Chapter 09, hidden tests: values against PyTorch, stability, gradients, common mistakes, accuracy."""
import copy

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

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
def test_softmax_gradient(impl):
    z = torch.randn(3, 5, dtype=torch.float64)
    weights = torch.randn(3, 5, dtype=torch.float64)
    check_gradients(lambda t: (impl.softmax(t) * weights).sum(), [z], names=["the logits z"],
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
        assert isinstance(got, torch.Tensor), f"cross_entropy returned {type(got).__name__}, expected a tensor"
        if got.shape == want.shape and not torch.allclose(got.to(want.dtype), want, rtol=1e-6):
            mistake = _fingerprint_cross_entropy(got, logits, targets)
            if mistake:
                raise AssertionError(f"cross_entropy follows a known mistake: {mistake}")
        assert got.dim() == 0, f"cross_entropy returned shape {list(got.shape)}: return the mean, a 0-d tensor"
        assert_close(got, want, f"cross_entropy on [{n}, {c}] logits vs nn.CrossEntropyLoss()", rtol=1e-6,
                     hint="mean over the batch of -(log_softmax(logits)[i, targets[i]])")


@pytest.mark.task("ch09.cross_entropy")
@pytest.mark.points(2)
def test_cross_entropy_gradient_matches_crossentropyloss(impl):
    logits = torch.randn(6, 4, dtype=torch.float64)
    targets = torch.tensor([0, 3, 1, 1, 2, 0])
    leaf = logits.clone().requires_grad_(True)
    loss = impl.cross_entropy(leaf, targets)
    assert isinstance(loss, torch.Tensor) and loss.requires_grad, \
        "cross_entropy's result does not require grad: build it from tensor operations on the logits " \
        "(no .item(), .detach() or numpy)"
    (got,) = torch.autograd.grad(loss, leaf)
    ref = logits.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(nn.CrossEntropyLoss()(ref, targets), ref)
    assert_close(got, want, "the gradient of cross_entropy with respect to the logits", rtol=1e-6,
                 hint="expected (softmax(logits) - one_hot(targets)) / N")
    check_gradients(lambda t: impl.cross_entropy(t, targets), [logits], names=["the logits"])


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
        f"mnist_transform() turned a 28x28 image into {getattr(got, 'shape', type(got).__name__)}, " \
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
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


@pytest.mark.task("ch09.model")
@pytest.mark.points(2)
def test_model_architecture(impl):
    model = impl.MnistMLP()
    shapes = [(m.in_features, m.out_features) for m in _linears(model)]
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
    x = torch.randn(6, 1, 28, 28)
    with torch.no_grad():
        got = model(x)
        h = x.view(-1, 784)
        for layer in layers[:-1]:
            h = torch.relu(layer(h))
        want = layers[-1](h)
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
    with torch.no_grad():
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
def test_model_overfits_a_small_batch(impl, datasets_dir):
    x, y = _mnist_tensors(datasets_dir, train=True, limit=128)
    torch.manual_seed(0)
    model = impl.MnistMLP()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    for _ in range(40):
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = (model(x).argmax(dim=1) == y).float().mean().item()
    assert accuracy >= 0.95, \
        f"after 40 full-batch Adam steps on 128 digits MnistMLP classifies only {accuracy:.0%} of them, " \
        "expected at least 95%: are the layers chained with ReLU and the logits returned as they are?"


# --------------------------------------------------------------------------- train and evaluate

class ModeSpy(nn.Module):
    """A linear classifier that records, at each forward, training mode and grad mode."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(784, 10)
        self.seen = []

    def forward(self, x):
        self.seen.append((self.training, torch.is_grad_enabled()))
        return self.linear(x.view(-1, 784))


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
def test_train_epoch_matches_the_lecture_loop(impl, datasets_dir):
    x, y = _mnist_tensors(datasets_dir, train=True, limit=300)
    loader = DataLoader(TensorDataset(x, y), batch_size=50, shuffle=False)
    torch.manual_seed(0)
    start = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))

    def run(fn, **kwargs):
        model = copy.deepcopy(start)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
        values = [fn(model, loader, optimizer, nn.CrossEntropyLoss(), **kwargs) for _ in range(2)]
        return torch.tensor([float(v) for v in values]), model

    got, got_model = run(impl.train_epoch)
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
    for (name, p), q in zip(got_model.named_parameters(), want_model.parameters()):
        assert_close(p, q, f"parameter {name} after two epochs", rtol=1e-4, atol=1e-6)


@pytest.mark.task("ch09.train")
@pytest.mark.points(1)
def test_train_epoch_uses_training_mode(impl):
    loader = DataLoader(TensorDataset(torch.randn(20, 1, 28, 28), torch.randint(0, 10, (20,))), batch_size=10)
    model = ModeSpy()
    model.eval()  # as evaluate() leaves it
    impl.train_epoch(model, loader, torch.optim.SGD(model.parameters(), lr=0.01), nn.CrossEntropyLoss())
    assert model.seen, "train_epoch never called the model"
    assert all(training for training, _ in model.seen), \
        "train_epoch ran the model in eval mode: call model.train() at its start (evaluate() switches " \
        "to eval mode, which changes layers such as Dropout and BatchNorm)"


@pytest.mark.task("ch09.train")
@pytest.mark.points(2)
def test_evaluate_uses_eval_mode_and_no_grad(impl):
    loader = DataLoader(TensorDataset(torch.randn(20, 1, 28, 28), torch.randint(0, 10, (20,))), batch_size=10)
    model = ModeSpy()
    model.train()
    impl.evaluate(model, loader)
    assert model.seen, "evaluate never called the model"
    assert not any(training for training, _ in model.seen), \
        "evaluate ran the model in training mode: call model.eval() first"
    assert not any(grad for _, grad in model.seen), \
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
    with torch.no_grad():
        model[1].weight.copy_(torch.eye(10, 784))
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
    assert isinstance(got, float), f"evaluate returned {type(got).__name__}: return a Python float"
    assert abs(got - want) < 1e-6, \
        f"evaluate returned {got}, expected {want}: predictions are the argmax of the logits over dim 1"


@pytest.mark.task("ch09.train")
@pytest.mark.points(3)
def test_mlp_reaches_90_percent_on_the_subset(impl, datasets_dir):
    x_train, y_train = _mnist_tensors(datasets_dir, train=True)
    x_test, y_test = _mnist_tensors(datasets_dir, train=False)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                          nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    train_loader = DataLoader(TensorDataset(x_train, y_train), batch_size=64, shuffle=True,
                              generator=torch.Generator().manual_seed(0))
    test_loader = DataLoader(TensorDataset(x_test, y_test), batch_size=500)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    criterion = nn.CrossEntropyLoss()
    losses = [impl.train_epoch(model, train_loader, optimizer, criterion) for _ in range(6)]
    accuracy = impl.evaluate(model, test_loader)
    assert losses[-1] < losses[0], \
        f"the epoch loss went from {losses[0]:.3f} to {losses[-1]:.3f}: training does not learn"
    assert 0.0 <= accuracy <= 1.0, f"evaluate returned {accuracy}: return a fraction in [0, 1]"
    assert accuracy >= 0.90, \
        f"after 6 epochs on the 4,000 training digits (SGD lr 0.1, momentum 0.5) the test accuracy is " \
        f"{accuracy:.1%}, expected at least 90%"
