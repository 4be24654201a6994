"""Chapter 09, public tests: the lecture's examples, published inputs and a small slice of MNIST.

The hidden tests check the same properties on held-out shapes, seeds, images and loaders, and
train the lecture's MLP to 90% on the subset. softmax and cross_entropy are exercises in
writing them by hand: they run with torch's softmax, log-softmax and cross-entropy built-ins
watched (probes.by_hand), and calling one of them costs the points. The model tests find your
five Linear layers by their shapes (784 -> 512 -> 256 -> 128 -> 64 -> 10): any names, any
registration order and an nn.Sequential are fine. train_epoch and evaluate are tested on the
tests' own models, so their tests do not depend on your MnistMLP.
"""
import copy

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from grader.remote import is_instance, type_name
from grader.testing import assert_close

MEAN, STD = 0.1307, 0.3081


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


NUM_CLASSES = ("F.one_hot(targets) alone makes max(targets) + 1 columns, not C, when no target is the "
               "last class; pass num_classes=logits.shape[1]")


def _one_hot_too_narrow(probes, logits, targets):
    """True when cross_entropy fails or is wrong only because no target is the last class:
    with one target changed to the last class it runs and matches nn.CrossEntropyLoss."""
    if int(targets.max()) >= logits.shape[1] - 1:
        return False
    complete = targets.clone()
    complete[0] = logits.shape[1] - 1
    try:
        out = probes.by_hand("cross_entropy", [logits, complete], [], None)["out"]
    except RuntimeError:
        return False
    return isinstance(out, torch.Tensor) and out.shape == () and \
        torch.allclose(out.to(logits.dtype), F.cross_entropy(logits, complete), rtol=1e-5, atol=1e-6)


def by_hand(probes, function, args, what, wrt=(), weights=None):
    """probes.by_hand (your function with torch's softmax and cross-entropy built-ins watched),
    turning a RuntimeError into an instructive failure."""
    try:
        return probes.by_hand(function, list(args), list(wrt), weights)
    except NotImplementedError:
        raise
    except RuntimeError as exc:
        if function == "cross_entropy" and _one_hot_too_narrow(probes, *args[:2]):
            raise AssertionError(f"{what} raised RuntimeError ({_first_line(exc)}): {NUM_CLASSES}") from None
        raise AssertionError(f"{what} raised RuntimeError: {_first_line(exc)} (reduce over dim=1 with "
                             "keepdim=True, so the [N, 1] result broadcasts against [N, C])") from None


def assert_by_hand(seen, function):
    """The by-hand rule: no torch softmax / log-softmax / cross-entropy built-in was called."""
    if seen["called"]:
        raise AssertionError(
            f"{function} calls {seen['called'][0]} (itself or through a function it uses): the task is to write "
            "it by hand, from exp, log, max and sum (the tests compare it with the built-in, which it must "
            "not call)")


# --------------------------------------------------------------------------- ch09.softmax

def check_softmax(probes, z, what, atol=1e-6):
    """softmax(z) against torch.softmax(z, dim=1), naming the known mistakes, then the by-hand rule."""
    seen = by_hand(probes, "softmax", [z], f"softmax of {what}")
    got = seen["out"]
    assert isinstance(got, torch.Tensor) and got.shape == z.shape, \
        f"softmax of {what} [{', '.join(map(str, z.shape))}] returned " \
        f"{list(got.shape) if isinstance(got, torch.Tensor) else type_name(got)}: keep the shape"
    assert got.dtype == z.dtype, f"softmax turned {z.dtype} input into {got.dtype}: keep the dtype"
    if not bool(torch.isfinite(got).all()):
        raise AssertionError(f"softmax of {what} returned NaN or inf: exp(1000) overflows to inf and inf / inf "
                             "is NaN; subtract each row's max before exp (softmax is unchanged by the shift)")
    hint = None
    rows, columns = z.shape
    if rows > 1 and torch.allclose(got.sum(dim=0), torch.ones(columns, dtype=got.dtype), atol=1e-5) \
            and not torch.allclose(got.sum(dim=1), torch.ones(rows, dtype=got.dtype), atol=1e-5):
        hint = "each column sums to 1: normalise each row, over dim=1"
    elif rows == 1 and columns > 1 and torch.allclose(got, torch.ones_like(got)):
        hint = "every entry is divided by itself (a sum over dim=0 of one row): normalise each row, over dim=1"
    assert_close(got, torch.softmax(z, dim=1), f"softmax of {what}", rtol=1e-5, atol=atol,
                 hint=hint or "exp(z - row max) / its sum over dim=1, with keepdim=True")
    assert_by_hand(seen, "softmax")
    return seen


@pytest.mark.task("ch09.softmax")
@pytest.mark.points(1)
def test_softmax_rows_are_distributions(probes):
    z = torch.randn(4, 10)
    seen = by_hand(probes, "softmax", [z], "a [4, 10] tensor")
    p = seen["out"]
    assert isinstance(p, torch.Tensor) and p.shape == (4, 10), \
        f"softmax of a [4, 10] tensor should have shape [4, 10], got " \
        f"{list(p.shape) if isinstance(p, torch.Tensor) else type_name(p)}"
    assert bool((p > 0).all()), "every softmax output should be positive"
    if torch.allclose(p.sum(dim=0), torch.ones(10), atol=1e-5):
        raise AssertionError("each column of softmax(z) sums to 1: normalise each row, over dim=1")
    assert torch.allclose(p.sum(dim=1), torch.ones(4), atol=1e-5), \
        "each row of softmax(z) should sum to 1: normalise each row, over dim=1 (keepdim=True)"
    assert_by_hand(seen, "softmax")


@pytest.mark.task("ch09.softmax")
@pytest.mark.points(1)
def test_softmax_matches_torch_on_published_inputs(probes):
    # the lecture's scores, a square batch (rows and columns are easy to mix up) and a random one
    check_softmax(probes, torch.tensor([[0.2, 0.1, -0.1]]), "the lecture's scores [[0.2, 0.1, -0.1]]")
    torch.manual_seed(0)
    check_softmax(probes, torch.randn(5, 5) * 3, "a square [5, 5] batch")
    check_softmax(probes, torch.randn(4, 10) * 3, "a [4, 10] batch")


@pytest.mark.task("ch09.softmax")
@pytest.mark.points(1)
def test_softmax_is_stable_for_logits_of_1000(probes):
    z = torch.tensor([[1000.0, 0.0, -1000.0], [1000.0, 1000.0, 999.0], [-1000.0, -1000.0, -999.0],
                      [0.5, 0.25, 0.0]])
    check_softmax(probes, z, "logits of +-1000")


def check_softmax_gradient(probes, z, weights):
    """autograd's gradient of (softmax(z) * weights).sum() through your softmax, against torch's."""
    seen = by_hand(probes, "softmax", [z], "softmax", wrt=[0], weights=weights)
    assert seen["requires_grad"], \
        "softmax's result does not require grad: build it from differentiable tensor operations " \
        "(no .detach(), .item(), .numpy() or in-place writes)"
    ref = z.clone().requires_grad_(True)
    (want,) = torch.autograd.grad((torch.softmax(ref, dim=1) * weights).sum(), ref)
    got = seen["grads"][0]
    assert got is not None, "no gradient reaches the logits z: build softmax from tensor operations on z"
    assert_close(got, want, "the gradient of softmax for the logits z", rtol=1e-5, atol=1e-6,
                 hint="build softmax from differentiable tensor operations (no .detach(), .item(), "
                      ".numpy() or in-place writes)")
    assert_by_hand(seen, "softmax")


@pytest.mark.task("ch09.softmax")
@pytest.mark.points(1)
def test_softmax_gradient(probes):
    torch.manual_seed(0)
    check_softmax_gradient(probes, torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64))


# --------------------------------------------------------------------------- ch09.cross_entropy

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
        if torch.isfinite(value) and torch.allclose(got.detach().to(value.dtype), value, rtol=1e-5, atol=1e-6):
            return mistake
    return None


def check_cross_entropy(probes, logits, targets, what):
    """cross_entropy(logits, targets) against nn.CrossEntropyLoss(), naming the known mistakes,
    then the by-hand rule."""
    seen = by_hand(probes, "cross_entropy", [logits, targets], f"cross_entropy on {what}")
    got = seen["out"]
    want = nn.CrossEntropyLoss()(logits, targets)
    assert isinstance(got, torch.Tensor), f"cross_entropy returned {type_name(got)}, expected a tensor"
    if not bool(torch.isfinite(got).all()):
        raise AssertionError(f"cross_entropy on {what} returned inf or NaN: log(softmax) underflows to log(0) "
                             "(and exp overflows); compute the log-softmax directly as shifted - "
                             "log(sum(exp(shifted))), shifted = logits - row max")
    if got.shape == want.shape and not torch.allclose(got.to(want.dtype), want, rtol=1e-5, atol=1e-6):
        if _one_hot_too_narrow(probes, logits, targets):
            raise AssertionError(f"cross_entropy on {what} is wrong: {NUM_CLASSES}")
        mistake = _fingerprint_cross_entropy(got, logits, targets)
        if mistake:
            raise AssertionError(f"cross_entropy follows a known mistake: {mistake}")
    assert got.dim() == 0, f"cross_entropy returned shape {list(got.shape)}: return the mean, a 0-d tensor"
    assert_close(got, want, f"cross_entropy on {what} vs nn.CrossEntropyLoss()", rtol=1e-5, atol=1e-6,
                 hint="mean over the batch of -(log_softmax(logits)[i, targets[i]])")
    assert_by_hand(seen, "cross_entropy")


@pytest.mark.task("ch09.cross_entropy")
@pytest.mark.points(1)
def test_cross_entropy_is_a_positive_scalar(probes):
    logits = torch.randn(6, 10)
    targets = torch.tensor([0, 3, 9, 1, 1, 5])
    seen = by_hand(probes, "cross_entropy", [logits, targets], "cross_entropy on [6, 10] logits")
    loss = seen["out"]
    assert isinstance(loss, torch.Tensor) and loss.dim() == 0, \
        f"cross_entropy should return a 0-d tensor (the mean over the batch), got " \
        f"{list(loss.shape) if isinstance(loss, torch.Tensor) else type_name(loss)}"
    assert float(loss) > 0, f"cross_entropy returned {float(loss):.4f}: -log p is positive for p < 1"
    assert_by_hand(seen, "cross_entropy")


@pytest.mark.task("ch09.cross_entropy")
@pytest.mark.points(2)
def test_cross_entropy_matches_crossentropyloss_on_published_inputs(probes):
    # the lecture's example: scores [0.2, 0.1, -0.1] for class 0, loss 0.9729
    check_cross_entropy(probes, torch.tensor([[0.2, 0.1, -0.1]]), torch.tensor([0]), "the lecture's example")
    torch.manual_seed(0)
    check_cross_entropy(probes, torch.randn(6, 10) * 2, torch.tensor([0, 3, 9, 1, 1, 5]), "[6, 10] logits")
    # no target is the last class here
    check_cross_entropy(probes, torch.randn(4, 5) * 2, torch.tensor([0, 2, 1, 2]), "[4, 5] logits")


@pytest.mark.task("ch09.cross_entropy")
@pytest.mark.points(1)
def test_cross_entropy_is_stable_for_logits_of_1000(probes):
    logits = torch.tensor([[1000.0, 0.0, -1000.0], [0.0, 1000.0, 0.0], [-500.0, 500.0, 0.0]])
    check_cross_entropy(probes, logits, torch.tensor([2, 1, 0]), "logits of +-1000")


def check_cross_entropy_gradient(probes, logits, targets):
    """autograd's gradient of cross_entropy through your code, against nn.CrossEntropyLoss's."""
    seen = by_hand(probes, "cross_entropy", [logits, targets], "cross_entropy", wrt=[0])
    assert seen["requires_grad"], \
        "cross_entropy's result does not require grad: build it from tensor operations on the logits " \
        "(no .item(), .detach() or numpy)"
    ref = logits.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(nn.CrossEntropyLoss()(ref, targets), ref)
    got = seen["grads"][0]
    assert got is not None, "no gradient reaches the logits: build the loss from tensor operations on them"
    assert_close(got, want, "the gradient of cross_entropy with respect to the logits", rtol=1e-5, atol=1e-6,
                 hint="expected (softmax(logits) - one_hot(targets)) / N")
    assert_by_hand(seen, "cross_entropy")


@pytest.mark.task("ch09.cross_entropy")
@pytest.mark.points(1)
def test_cross_entropy_gradient(probes):
    torch.manual_seed(0)
    check_cross_entropy_gradient(probes, torch.randn(6, 4, dtype=torch.float64), torch.tensor([0, 3, 1, 1, 2, 0]))


# --------------------------------------------------------------------------- ch09.transform

def check_transform(impl, pixels, what):
    """mnist_transform() on the uint8 image `pixels` against (pixels / 255 - mean) / std."""
    transform = impl.mnist_transform()
    try:
        got = transform(Image.fromarray(pixels))
    except TypeError as exc:
        raise AssertionError(f"the transform failed on a PIL image ({exc}): Normalize works on tensors, "
                             "so ToTensor() must come first in the Compose") from None
    assert isinstance(got, torch.Tensor) and got.shape == (1, 28, 28) and got.dtype == torch.float32, \
        f"mnist_transform() turned {what} into " \
        f"{f'{got.dtype} {list(got.shape)}' if isinstance(got, torch.Tensor) else type_name(got)}, " \
        "expected a float32 tensor [1, 28, 28]"
    raw = torch.from_numpy(pixels).float().div(255).unsqueeze(0)
    hint = None
    if torch.allclose(got, raw, atol=1e-5):
        hint = "the values are still in [0, 1]: Normalize((0.1307,), (0.3081,)) is missing"
    elif torch.allclose(got, (raw - STD) / MEAN, atol=1e-4):
        hint = "the mean and std are swapped: Normalize(mean=(0.1307,), std=(0.3081,))"
    elif torch.allclose(got, (raw * 255 - MEAN) / STD, atol=1e-3):
        hint = "the pixels were not scaled to [0, 1] first: use ToTensor() on the image"
    assert_close(got, (raw - MEAN) / STD, f"the transformed {what}", rtol=1e-5, atol=1e-5,
                 hint=hint or "ToTensor() then Normalize((0.1307,), (0.3081,))")


@pytest.mark.task("ch09.transform")
@pytest.mark.points(1)
def test_transform_gives_a_one_channel_float_tensor(impl):
    image = Image.fromarray(np.full((28, 28), 255, dtype=np.uint8))
    transform = impl.mnist_transform()
    try:
        x = transform(image)
    except TypeError as exc:
        raise AssertionError(f"the transform failed on a PIL image ({exc}): Normalize works on tensors, "
                             "so ToTensor() must come first in the Compose") from None
    assert isinstance(x, torch.Tensor), f"mnist_transform()(image) returned {type_name(x)}, expected a Tensor"
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32, \
        f"a 28x28 grey image became {x.dtype} {list(x.shape)}, expected float32 [1, 28, 28]"


@pytest.mark.task("ch09.transform")
@pytest.mark.points(2)
def test_transform_values_on_a_published_image(impl):
    # every grey level 0..255 appears: a white pixel becomes (1 - 0.1307) / 0.3081 = 2.8215
    pixels = (np.arange(28 * 28) % 256).astype(np.uint8).reshape(28, 28)
    check_transform(impl, pixels, "grey-ramp image")


# --------------------------------------------------------------------------- ch09.model

WIDTHS = [(784, 512), (512, 256), (256, 128), (128, 64), (64, 10)]


def _key(name, tensor):
    """The state_dict key of a module's tensor ("weight", "bias")."""
    return f"{name}.{tensor}" if name else tensor


def mlp_layers(model):
    """The (weight, bias) of MnistMLP's five Linear layers in the network's order, found by their
    shapes in the state_dict: any attribute names, any registration order, an nn.Sequential."""
    sd = model.state_dict()
    names = [name for name, m in model.named_modules() if is_instance(m, nn.Linear)]
    shapes = {tuple(sd[_key(name, "weight")].shape[::-1]): name for name in names}  # (in, out) -> name
    listed = ", ".join(str(s) for s in shapes) or "none"
    assert len(names) == 5 and sorted(shapes) == sorted(WIDTHS), \
        f"MnistMLP's Linear layers (in, out) are {listed}, expected {', '.join(map(str, WIDTHS))} " \
        "(784-512-256-128-64-10)"
    n_params = sum(v.numel() for v in sd.values())
    expected = sum(i * o + o for i, o in WIDTHS)
    assert n_params == expected, \
        f"MnistMLP has {n_params} parameters, expected {expected}: only the five Linear layers"
    return [(sd[_key(shapes[s], "weight")], sd.get(_key(shapes[s], "bias"))) for s in WIDTHS]


def check_logits(impl, x):
    """MnistMLP on x (images [N, 1, 28, 28]) and on x flattened, against the lecture's network
    computed here from its weights, naming the known mistakes."""
    model = impl.MnistMLP()
    layers = mlp_layers(model)
    n = x.shape[0]
    got = model(x)
    assert isinstance(got, torch.Tensor) and got.shape == (n, 10), \
        f"MnistMLP maps [{n}, 1, 28, 28] to " \
        f"{list(got.shape) if isinstance(got, torch.Tensor) else type_name(got)}, expected [{n}, 10]"
    h = x.view(-1, 784)
    for w, b in layers[:-1]:
        h = torch.relu(F.linear(h, w, b))
    want = F.linear(h, *layers[-1])
    hint = None
    if torch.allclose(got, torch.softmax(want, dim=1), atol=1e-6):
        hint = ("forward applies softmax: return the logits of the last layer, because "
                "nn.CrossEntropyLoss applies log-softmax itself (softmax twice slows learning)")
    elif torch.allclose(got, torch.log_softmax(want, dim=1), atol=1e-5):
        hint = "forward applies log_softmax: return the raw logits for nn.CrossEntropyLoss"
    elif torch.allclose(got, torch.relu(want), atol=1e-6):
        hint = "there is a ReLU after the last layer: the logits must be able to go negative"
    elif got.min() >= 0 and got.max() <= 1:
        hint = "the outputs are squashed into [0, 1]: return the raw logits, no activation after the last layer"
    assert_close(got, want, "MnistMLP's output", rtol=1e-5, atol=1e-5,
                 hint=hint or "flatten to [N, 784], then Linear and ReLU four times, then the last Linear alone")
    assert_close(model(x.view(n, 784)), want, f"MnistMLP's output for already flat [{n}, 784] input",
                 rtol=1e-5, atol=1e-5, hint="flatten with x.view(-1, 784)")


@pytest.mark.task("ch09.model")
@pytest.mark.points(1)
def test_model_maps_images_to_ten_logits(impl):
    model = impl.MnistMLP()
    out = model(torch.randn(3, 1, 28, 28))
    assert isinstance(out, torch.Tensor) and out.shape == (3, 10), \
        f"MnistMLP maps [3, 1, 28, 28] to {list(out.shape)}, expected [3, 10]"


@pytest.mark.task("ch09.model")
@pytest.mark.points(1)
def test_model_layers_by_shape(impl):
    mlp_layers(impl.MnistMLP())


@pytest.mark.task("ch09.model")
@pytest.mark.points(2)
def test_model_returns_the_logits(impl):
    torch.manual_seed(0)
    check_logits(impl, torch.randn(6, 1, 28, 28))


# --------------------------------------------------------------------------- ch09.train

def mnist_tensors(datasets_dir, train, limit=None, start=0):
    """The subset's images normalised in one go (what mnist_transform does image by image)."""
    split = "train" if train else "test"
    stop = None if limit is None else start + limit
    with np.load(datasets_dir / "mnist_subset.npz") as data:
        images, labels = data[f"{split}_images"][start:stop], data[f"{split}_labels"][start:stop]
    x = (torch.from_numpy(images).float().div(255).unsqueeze(1) - MEAN) / STD
    return x, torch.from_numpy(labels)


def _reference_train_epoch(model, loader, optimizer, criterion, *, zero_grad=True, step=True,
                           softmax_first=False, value="mean_of_batches"):
    """The lecture's loop, and the usual ways of getting it wrong, for fingerprints."""
    losses = []
    for inputs, targets in loader:
        if zero_grad:
            optimizer.zero_grad()
        outputs = model(inputs)
        loss = criterion(torch.softmax(outputs, dim=1) if softmax_first else outputs, targets)
        loss.backward()
        if step:
            optimizer.step()
        losses.append(loss.item())
    return {"mean_of_batches": sum(losses) / len(losses), "sum_of_batches": sum(losses),
            "last_batch": losses[-1], "per_sample": sum(losses) / len(loader.dataset)}[value]


def check_train_loop(probes, start, loader, optimizer_kwargs, epochs):
    """Your train_epoch `epochs` times on a copy of `start` with SGD(**optimizer_kwargs), against
    the lecture's loop run here, naming the known mistakes; then the weights after training."""

    def run(**mistake):
        model = copy.deepcopy(start)
        optimizer = torch.optim.SGD(model.parameters(), **optimizer_kwargs)
        values = [_reference_train_epoch(model, loader, optimizer, nn.CrossEntropyLoss(), **mistake)
                  for _ in range(epochs)]
        return torch.tensor(values), model

    # your train_epoch on a copy of `start`, with the same SGD, beside your code
    student_run = probes.train_epochs(start, loader, torch.optim.SGD, optimizer_kwargs,
                                      nn.CrossEntropyLoss(), epochs)
    losses = student_run["losses"]
    assert all(isinstance(v, float) for v in losses), \
        f"train_epoch returned {type_name(losses[0])}: return a Python float (add up loss.item())"
    got = torch.tensor(losses)
    want, want_model = run()
    if not torch.allclose(got, want, rtol=1e-4, atol=1e-6):
        for kwargs, mistake in [
            (dict(zero_grad=False), "the gradients pile up: call optimizer.zero_grad() for every batch"),
            (dict(step=False), "the weights never change: call optimizer.step() after loss.backward()"),
            (dict(softmax_first=True), "softmax is applied before the loss: nn.CrossEntropyLoss applies "
                                       "log-softmax itself, so pass it the raw logits"),
            (dict(value="sum_of_batches"), "the epoch's loss is the sum of the batch losses: divide the total "
                                           "by the number of batches"),
            (dict(value="per_sample"), "the total is divided by the number of samples: divide it by the "
                                       "number of batches, len(loader)"),
            (dict(value="last_batch"), "only the last batch's loss is returned: average over all batches"),
        ]:
            wrong, _ = run(**kwargs)
            if torch.allclose(got, wrong, rtol=1e-4, atol=1e-6):
                raise AssertionError(f"train_epoch follows a known mistake: {mistake}")
    assert_close(got, want, f"the mean batch loss of {epochs} epoch(s)", rtol=1e-4, atol=1e-6,
                 hint="for every batch: zero_grad, loss, backward, step; return the mean batch loss")
    for name, q in want_model.named_parameters():
        assert name in student_run["state"], f"parameter {name} is missing from the model after training"
        assert_close(student_run["state"][name], q, f"parameter {name} after training", rtol=1e-4, atol=1e-5)


def check_evaluate(impl, right, batch_size):
    """evaluate on the test's own model and a loader whose sample i is predicted right exactly
    when right[i], naming the known mistakes."""
    n = len(right)
    targets = torch.arange(n) % 10
    predicted = torch.where(right, targets, (targets + 1) % 10)
    x = F.one_hot(predicted, 784).float().view(n, 1, 28, 28) * 5.0
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10, bias=False))
    model[1].load_state_dict({"weight": torch.eye(10, 784)})  # the test's own model, sent to evaluate
    loader = DataLoader(TensorDataset(x, targets), batch_size=batch_size, shuffle=False)
    got = impl.evaluate(model, loader)
    correct = int(right.sum())
    want = correct / n
    per_batch = np.mean([float(right[i:i + batch_size].float().mean()) for i in range(0, n, batch_size)])
    what = f"evaluate on {n} samples in batches of {batch_size}"
    assert isinstance(got, (int, float)), f"evaluate returned {type_name(got)}: return a Python float"
    assert not abs(got - 100 * want) < 1e-6, \
        f"{what} returned {got}: return a fraction in [0, 1], not a percentage"
    assert abs(got - correct) > 1e-6, \
        f"{what} returned {got}, the number of correct samples: divide by the number of samples"
    assert abs(got - correct / len(loader)) > 1e-6, \
        f"{what} divides the correct count by the number of batches: divide by the number of samples"
    assert abs(got - per_batch) > 1e-6, \
        f"{what} averages the accuracies of the batches, but the last batch is smaller: count correct " \
        "samples over the whole loader, then divide by the number of samples"
    assert abs(got - correct / (len(loader) * batch_size)) > 1e-6, \
        f"{what} divides by len(loader) * batch_size, but the last batch is smaller: count the samples " \
        "as you go (targets.shape[0] per batch)"
    assert isinstance(got, float), f"evaluate returned {type_name(got)}: return a Python float"
    assert abs(got - want) < 1e-6, \
        f"{what} returned {got}, expected {want}: predictions are the argmax of the logits over dim 1"


@pytest.mark.task("ch09.train")
@pytest.mark.points(1)
def test_train_epoch_and_evaluate_return_floats(probes):
    x, y = torch.randn(40, 1, 28, 28), torch.randint(0, 10, (40,))
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    # one train_epoch with SGD(lr=0.01), then evaluate on the same model, beside your code
    run = probes.train_epochs(model, loader, torch.optim.SGD, {"lr": 0.01}, nn.CrossEntropyLoss(), 1,
                              eval_loader=loader)
    loss, accuracy = run["losses"][0], run["accuracy"]
    assert isinstance(loss, float), \
        f"train_epoch returned {type_name(loss)}: return a Python float (add up loss.item())"
    assert isinstance(accuracy, float) and 0.0 <= accuracy <= 1.0, \
        f"evaluate returned {accuracy!r}: return the accuracy as a float between 0 and 1"


@pytest.mark.task("ch09.train")
@pytest.mark.points(2)
def test_train_epoch_matches_the_lecture_loop_on_digits(probes, datasets_dir):
    x, y = mnist_tensors(datasets_dir, train=True, limit=120)
    loader = DataLoader(TensorDataset(x, y), batch_size=40, shuffle=False)
    torch.manual_seed(0)
    start = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10))
    check_train_loop(probes, start, loader, {"lr": 0.1, "momentum": 0.5}, 2)


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
@pytest.mark.points(1)
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
@pytest.mark.points(1)
def test_evaluate_counts_every_sample(impl):
    # 20 samples in batches of 6, 6, 6, 2; 7 are predicted right: the answer is 0.35
    right = torch.tensor([1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 1], dtype=torch.bool)
    check_evaluate(impl, right, 6)
