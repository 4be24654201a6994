"""Chapter 10, public tests: the lecture's examples, the CNN's values, and device placement.

These tests check the same properties as the grading tests, on the lecture's examples and
small fixed inputs; the grading tests check them again on other inputs, sizes and seeds,
and hold the accuracy of a longer training run.

Device placement is checked on machines without a GPU too, on PyTorch's `meta` device:
tensors there have a shape and a device but no data, so a model, input or target left on
the CPU fails exactly as it would next to a GPU. The probes (probes.py: a tiny model, a
criterion, an optimizer and labels that refuse to meet a tensor of another device) report
whatever was left behind. Reading a value from a meta tensor (`loss.item()`, the count of
correct predictions) is impossible, so the probe labels answer such reads with 0: the meta
runs check placement only, and the CPU runs check the numbers.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from grader.remote import type_name
from grader.testing import assert_close

META = torch.device("meta")
IMAGE = torch.tensor([[3.0, 4.0, 6.0, 5.0, 7.0],
                      [2.0, 4.0, 6.0, 8.0, 2.0],
                      [1.0, 6.0, 7.0, 8.0, 4.0],
                      [9.0, 7.0, 4.0, 6.0, 2.0],
                      [3.0, 7.0, 5.0, 4.0, 1.0]])
KERNEL = torch.arange(1.0, 10.0).view(3, 3)


# --------------------------------------------------------------------------- ch10.shapes

def conv2d_size(size, kernel_size, padding, stride):
    """What nn.Conv2d itself gives (the reference)."""
    x = torch.zeros(1, 1, size, 1)
    w = torch.zeros(1, 1, kernel_size, 1)
    return F.conv2d(x, w, padding=(padding, 0), stride=(stride, 1)).shape[2]


WRONG_SIZES = [
    (lambda n, k, p, s: -(-(n + 2 * p - k) // s) + 1,
     "it rounds up; nn.Conv2d rounds down (floor division //): an incomplete last window is dropped"),
    (lambda n, k, p, s: (n + p - k) // s + 1,
     "the padding is counted once; it is added on both sides: size + 2 * padding"),
    (lambda n, k, p, s: (n + 2 * p - k) // s,
     "it is off by one: the first window position counts too (+ 1 after the division)"),
    (lambda n, k, p, s: (n + 2 * p - k + 1) // s,
     "the + 1 is inside the division; divide (size + 2 * padding - kernel_size) by stride, then add 1"),
]


def check_conv_output_sizes(probes, cases):
    """conv_output_size on every (size, kernel_size, padding, stride) against nn.Conv2d; a
    wrong formula is named when every wrong answer follows it."""
    answers = probes.conv_output_sizes(cases)  # one call of conv_output_size per case, in order
    wrong = []
    for (size, k, p, s), got in zip(cases, answers, strict=True):
        assert isinstance(got, int), \
            f"conv_output_size({size}, {k}, padding={p}, stride={s}) returned " \
            f"{type_name(got)} {got!r}: return an int, with floor division //"
        want = conv2d_size(size, k, p, s)
        if got != want:
            wrong.append(((size, k, p, s), got, want))
    if wrong:
        for formula, mistake in WRONG_SIZES:
            if all(formula(*args) == got for args, got, _ in wrong):
                raise AssertionError(f"conv_output_size disagrees with nn.Conv2d: {mistake}")
        (n, k, p, s), got, want = wrong[0]
        raise AssertionError(f"conv_output_size({n}, {k}, padding={p}, stride={s}) returned {got}, "
                             f"nn.Conv2d gives {want} ({len(wrong)} of {len(cases)} cases wrong)")


@pytest.mark.task("ch10.shapes")
@pytest.mark.points(2)
def test_conv_output_size_lecture_examples(impl, probes):
    for args in [(5, 3), (5, 3, 1), (5, 3, 0, 2), (28, 5), (12, 5)]:
        got = impl.conv_output_size(*args)
        assert isinstance(got, int), \
            f"conv_output_size{args} returned {type_name(got)} {got!r}, expected an int: use // (floor division)"
    # the lecture's examples (5, 3) -> 3, (5, 3, padding 1) -> 5, (5, 3, stride 2) -> 2, (28, 5) -> 24 and
    # (12, 5) -> 8 are in this grid of sizes, kernels, paddings and strides, checked against nn.Conv2d
    check_conv_output_sizes(probes, [(n, k, p, s) for n in (5, 7, 12, 28) for k in (3, 5)
                                     for p in (0, 1, 2) for s in (1, 2)])


def check_convolve(impl, image, kernel, padding=0, stride=1, what="convolve"):
    """convolve(image, kernel, padding, stride) against F.conv2d, naming the usual mistakes."""
    image4, kernel4 = image.view(1, 1, *image.shape), kernel.view(1, 1, *kernel.shape)
    want = F.conv2d(image4, kernel4, padding=padding, stride=stride)[0, 0]
    out = impl.convolve(image.clone(), kernel.clone(), padding=padding, stride=stride)
    assert isinstance(out, torch.Tensor), f"convolve returned {type_name(out)}, expected a Tensor"
    out = out.detach()
    if out.shape != want.shape:
        for p in {0, 1} - {padding}:
            if out.shape == F.conv2d(image4, kernel4, padding=p, stride=stride)[0, 0].shape:
                raise AssertionError(f"{what} returned shape {list(out.shape)}, expected {list(want.shape)}: "
                                     f"pass padding=padding ({padding} here) to nn.Conv2d, not a fixed {p}")
        if out.dim() == 4:
            raise AssertionError(f"{what} returned shape {list(out.shape)}, expected {list(want.shape)}: drop the "
                                 "batch and channel dimensions of the [1, 1, H_out, W_out] result (out[0, 0])")
        raise AssertionError(f"{what} returned shape {list(out.shape)}, expected {list(want.shape)}: use the "
                             "kernel's own height and width (kernel_size=kernel.shape), padding=padding and "
                             "stride=stride")
    if not torch.allclose(out, want, atol=1e-4):
        if torch.allclose(out, F.conv2d(image4, kernel4.flip(2, 3), padding=padding, stride=stride)[0, 0], atol=1e-4):
            raise AssertionError(f"{what}: the kernel is flipped; nn.Conv2d slides it as it is (a cross-correlation), "
                                 "do not flip it")
        if kernel.shape[0] == kernel.shape[1] and torch.allclose(
                out, F.conv2d(image4, kernel4.transpose(2, 3), padding=padding, stride=stride)[0, 0], atol=1e-4):
            raise AssertionError(f"{what}: the kernel is transposed; view it as [1, 1, kH, kW] without .t()")
        if out.numel() > 1 and (out - want).std() < 1e-4:
            raise AssertionError(f"{what}: every value is off by the same {float((out - want).mean()):.4g}, a bias was "
                                 "added: build the Conv2d with bias=False")
    assert_close(out, want, what)


@pytest.mark.task("ch10.shapes")
@pytest.mark.points(1)
def test_convolve_shape(impl):
    out = impl.convolve(IMAGE.clone(), KERNEL.clone(), padding=1)
    assert isinstance(out, torch.Tensor), f"convolve returned {type_name(out)}, expected a Tensor"
    assert out.shape == (5, 5), \
        f"convolve(5x5 image, 3x3 kernel, padding=1) returned shape {list(out.shape)}, expected [5, 5] " \
        "(drop the batch and channel dimensions: out[0, 0])"


@pytest.mark.task("ch10.shapes")
@pytest.mark.points(3)
def test_convolve_reproduces_the_lecture(impl):
    check_convolve(impl, IMAGE, KERNEL, padding=1,
                   what="convolve(lecture image, kernel 1..9, padding=1) (first row 91 168 224 215 127)")
    check_convolve(impl, IMAGE, KERNEL, stride=2,
                   what="convolve(lecture image, kernel 1..9, stride=2) (expected [[211, 262], [251, 169]])")


# --------------------------------------------------------------------------- ch10.model

CNN_WEIGHTS = {"conv1": (10, 1, 5, 5), "conv2": (20, 10, 5, 5), "fc": (10, 320)}


def cnn_layers(state):
    """The lecture's three layers in a CnnNet's state_dict, found by the shapes of their
    weights (any names, any order of registration, nn.Sequential too): {role: (weight, bias)}."""
    layers = {}
    for role, shape in CNN_WEIGHTS.items():
        keys = [k for k, v in state.items() if k.endswith("weight") and tuple(v.shape) == shape]
        if len(keys) != 1:
            raise AssertionError(f"CnnNet should have one layer whose weight has the shape {list(shape)} (the "
                                 f"lecture's {role}), found {len(keys)}: keep the layers of __init__ as given")
        layers[role] = (state[keys[0]], state.get(keys[0][:-len("weight")] + "bias"))
    return layers


def cnn_reference(state, x, relu=True):
    """The lecture's forward, computed here from the student's weights (its state_dict)."""
    layers = cnn_layers(state)
    act = F.relu if relu else (lambda t: t)
    h = act(F.max_pool2d(F.conv2d(x, *layers["conv1"]), 2))
    h = act(F.max_pool2d(F.conv2d(h, *layers["conv2"]), 2))
    return F.linear(h.reshape(x.size(0), -1), *layers["fc"])


SOFTMAX = "CnnNet returns softmax probabilities: return fc's raw logits (nn.CrossEntropyLoss applies " \
          "log-softmax itself, and a softmax before it flattens the gradients)"


def run_cnn(net, x):
    """net(x), with the lecture's words for a forward that does not reach fc with 320 features."""
    try:
        out = net(x)
    except RuntimeError as exc:
        if "shapes cannot be multiplied" in str(exc):
            raise AssertionError("fc did not get 320 features per sample: apply conv1, pool, ReLU, then conv2, "
                                 "pool, ReLU before flattening each sample ([B, 20, 4, 4] -> [B, 320])") from None
        raise
    assert isinstance(out, torch.Tensor), f"CnnNet returned {type_name(out)}, expected a Tensor"
    assert out.shape == (x.size(0), 10), \
        f"CnnNet maps {list(x.shape)} to {list(out.shape)}, expected [{x.size(0)}, 10]"
    return out.detach()


def check_cnn_logits(net, x):
    out = run_cnn(net, x)
    state = net.state_dict()
    want = cnn_reference(state, x)
    if torch.allclose(out, F.softmax(want, dim=1), atol=1e-5):
        raise AssertionError(SOFTMAX)
    if torch.allclose(out, F.log_softmax(want, dim=1), atol=1e-4):
        raise AssertionError("CnnNet returns log-softmax values: return fc's raw logits (nn.CrossEntropyLoss "
                             "applies log-softmax itself)")
    if torch.allclose(out, cnn_reference(state, x, relu=False), atol=1e-5):
        raise AssertionError("CnnNet: the ReLUs are missing: apply a ReLU after each convolution + max-pooling "
                             "stage")
    assert_close(out, want, "CnnNet's logits", hint="conv1, max-pool, ReLU, conv2, max-pool, ReLU, flatten, fc")


@pytest.mark.task("ch10.model")
@pytest.mark.points(1)
def test_cnn_output_shape(impl):
    run_cnn(impl.CnnNet(), torch.randn(3, 1, 28, 28))


@pytest.mark.task("ch10.model")
@pytest.mark.points(2)
def test_cnn_matches_the_lecture(impl):
    check_cnn_logits(impl.CnnNet(), torch.randn(4, 1, 28, 28))


@pytest.mark.task("ch10.model")
@pytest.mark.points(1)
def test_cnn_gradients_reach_every_layer(impl, probes):
    net = impl.CnnNet()
    x = torch.randn(2, 1, 28, 28)
    out = run_cnn(net, x)
    if bool((out >= 0).all()) and torch.allclose(out.sum(dim=1), torch.ones(2), atol=1e-5):
        raise AssertionError(SOFTMAX)
    probes.backward(net, x, power=2)  # net(x).pow(2).sum().backward() beside your code
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, \
            f"no gradient reached {name}: forward must use every layer (and not detach)"


def mnist(datasets_dir, split):
    with np.load(datasets_dir / "mnist_subset.npz") as data:
        x = torch.from_numpy(data[f"{split}_images"]).float().div(255)
        y = torch.from_numpy(data[f"{split}_labels"]).long()
    return ((x - 0.1307) / 0.3081).unsqueeze(1), y


def fresh_cnn_weights(state, seed):
    """New weights for a CnnNet's state_dict, drawn here as PyTorch's default initialisation
    does (uniform in +-1/sqrt(fan_in)), one generator per layer: the same starting point
    whatever the order in which the layers were created."""
    new = dict(state)
    for index, (role, shape) in enumerate(CNN_WEIGHTS.items()):
        key = next(k for k, v in state.items() if k.endswith("weight") and tuple(v.shape) == shape)
        generator = torch.Generator().manual_seed(1000 * seed + index)
        bound = 1.0 / float(np.prod(shape[1:])) ** 0.5
        new[key] = (torch.rand(shape, generator=generator) * 2 - 1) * bound
        bias = key[:-len("weight")] + "bias"
        if bias in state:
            new[bias] = (torch.rand(state[bias].shape, generator=generator) * 2 - 1) * bound
    return new


def cnn_accuracy(impl, probes, datasets_dir, n_train, n_test, epochs, batch_size, seed):
    """A CnnNet started from weights drawn here and trained (SGD(lr=0.05, momentum=0.9)) on the
    first n_train training digits; its accuracy on the first n_test test digits."""
    x_train, y_train = mnist(datasets_dir, "train")
    x_test, y_test = mnist(datasets_dir, "test")
    net = impl.CnnNet()
    state = net.state_dict()
    cnn_layers(state)  # the lecture's layers are there
    net.load_state_dict(fresh_cnn_weights(state, seed))
    logits = probes.train_and_predict(net, x_train[:n_train], y_train[:n_train], x_test[:n_test], epochs=epochs,
                                      batch_size=batch_size, lr=0.05, momentum=0.9, order_seed=seed)
    return (logits.argmax(dim=1) == y_test[:n_test]).float().mean().item()


@pytest.mark.task("ch10.model")
@pytest.mark.points(1)
def test_cnn_learns_a_thousand_digits(impl, probes, datasets_dir):
    accuracy = cnn_accuracy(impl, probes, datasets_dir, n_train=1000, n_test=500, epochs=1,
                            batch_size=32, seed=0)
    assert accuracy >= 0.70, \
        f"CnnNet reached {accuracy:.3f} test accuracy after one epoch on 1,000 digits, expected at least " \
        "0.70: check forward (conv, pool, ReLU twice, then fc on the raw logits)"


# --------------------------------------------------------------------------- ch10.device

def _cuda_error(error):
    text = (error or "").lower()
    return any(word in text for word in ("cuda", "nvidia", "gpu"))


@pytest.mark.task("ch10.device")
@pytest.mark.points(1)
def test_get_device_returns_a_device(impl):
    device = impl.get_device()
    assert isinstance(device, torch.device), \
        f"get_device returned {type_name(device)}, expected a torch.device"
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert device.type == want, f"get_device returned {device}, but this machine's device is {want}"


@pytest.mark.task("ch10.device")
@pytest.mark.points(1)
def test_get_device_follows_cuda_availability(probes):
    seen = probes.get_device_when_cuda(False)  # torch.cuda.is_available() answers False
    assert seen["error"] is None, f"without CUDA get_device() raised {seen['error']}"
    device = seen["device"]
    assert isinstance(device, torch.device) and device.type == "cpu", \
        f"without CUDA get_device() returned {device}, expected torch.device('cpu')"
    seen = probes.get_device_when_cuda(True)  # torch.cuda answers as a machine with one GPU
    if seen["error"] is not None:
        # another CUDA call (a real GPU would answer it): get_device went for the GPU, as it should
        assert seen["in_torch_cuda"] or _cuda_error(seen["error"]), \
            f"with CUDA available get_device() raised {seen['error']}"
        return
    device = seen["device"]
    assert isinstance(device, torch.device) and device.type == "cuda", \
        f"with CUDA available get_device() returned {device}, expected torch.device('cuda'): " \
        "ask torch.cuda.is_available() each call"


@pytest.mark.task("ch10.device")
@pytest.mark.points(1)
def test_train_epoch_and_evaluate_on_cpu(probes):
    x, y = torch.randn(40, 4), torch.randint(0, 3, (40,))
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    model = nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    # train_epoch, then evaluate on the trained model, both in the process running your code
    run = probes.train_epoch_result(model, loader, optimizer, nn.CrossEntropyLoss(), torch.device("cpu"),
                                    evaluate=True)
    loss = run["loss"]
    assert isinstance(loss, float), \
        f"train_epoch returned {type_name(loss)}, expected a Python float (use loss.item())"
    accuracy = run["accuracy"]
    assert isinstance(accuracy, float) and 0.0 <= accuracy <= 1.0, \
        f"evaluate returned {accuracy!r}, expected a float between 0 and 1"


MISPLACED = {
    "labels": "the targets are still on {found} while the model's outputs are on {want}: move the labels "
              "with .to(device) too",
    "targets": "the targets are still on {found}: move the labels with .to(device) too (to {want})",
    "model": "the model is still on {found}: call model.to(device) to move it to {want}",
    "inputs": "the inputs are still on {found}: move them with .to(device) (to {want}) before the forward pass",
}


def _explain_meta_error(exc: Exception, what: str) -> AssertionError:
    text = str(exc)
    if "meta" in text and ("copy out" in text or "item()" in text or "no data" in text):
        return AssertionError(f"{what} tried to read values back to the CPU in a way that cannot run on "
                              "another device: keep the labels on device with the predictions and read the "
                              f"count with .item() ({type(exc).__name__}: {text.splitlines()[0]})")
    return AssertionError(f"{what} failed on the meta device: {type(exc).__name__}: {text.splitlines()[0]}")


def check_placement(probes, function, n_batches, batch_size):
    """train_epoch or evaluate on the meta device with a model built on the CPU and CPU
    batches: whatever was left on the CPU is named."""
    placement = probes.train_epoch_placement if function == "train_epoch" else probes.evaluate_placement
    try:
        seen = placement(META, n_batches=n_batches, batch_size=batch_size)
    except (RuntimeError, NotImplementedError) as exc:
        if isinstance(exc, NotImplementedError) and "ch10." in str(exc):
            raise
        raise _explain_meta_error(exc, function) from None
    wrong = seen["misplaced"]
    if wrong is not None:
        raise AssertionError(f"{function}: " + MISPLACED[wrong["what"]].format(found=wrong["found"],
                                                                               want=wrong["want"]))
    assert seen["forward_calls"] == n_batches, \
        f"{function} ran the model {seen['forward_calls']} times for {n_batches} batches"
    if function == "train_epoch":
        assert seen["steps"] == n_batches, \
            f"train_epoch called optimizer.step() {seen['steps']} times for {n_batches} batches"
        assert all(d == META.type for d in seen["parameter_devices"]), \
            "after train_epoch the model is not on the device: call model.to(device)"
    else:
        assert isinstance(seen["result"], float), f"evaluate returned {type_name(seen['result'])}, expected a float"


@pytest.mark.task("ch10.device")
@pytest.mark.points(2)
def test_train_epoch_moves_model_inputs_and_targets(probes):
    check_placement(probes, "train_epoch", n_batches=3, batch_size=5)


@pytest.mark.task("ch10.device")
@pytest.mark.points(2)
def test_evaluate_moves_model_inputs_and_targets(probes):
    check_placement(probes, "evaluate", n_batches=3, batch_size=5)


def _reference_epoch(state, loader, lr, momentum, *, zero_grad=True):
    model = nn.Linear(4, 3)
    model.load_state_dict(state)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    losses = []
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        if zero_grad:
            optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, model


def check_train_epoch(probes, seed, n, batch_size, lr=0.1, momentum=0.5):
    """One train_epoch on a tiny classification problem against the lecture's loop: the
    weights afterwards and the returned mean loss."""
    torch.manual_seed(seed)
    x, y = torch.randn(n, 4), torch.randint(0, 3, (n,))
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size)
    model = nn.Linear(4, 3)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    run = probes.train_epoch_result(model, loader, optimizer, nn.CrossEntropyLoss(), torch.device("cpu"))
    got, weight = run["loss"], run["state"]["weight"]
    losses, ref = _reference_epoch(state, loader, lr, momentum)
    want = sum(losses) / len(losses)
    if not torch.allclose(weight, ref.weight, atol=1e-5):
        _, piled = _reference_epoch(state, loader, lr, momentum, zero_grad=False)
        if torch.allclose(weight, piled.weight, atol=1e-5):
            raise AssertionError("the gradients pile up across batches: call optimizer.zero_grad() "
                                 "for every batch, before loss.backward()")
        assert_close(weight.detach(), ref.weight.detach(), "the weights after one epoch",
                     hint="one step per batch: forward, loss, zero_grad, backward, step")
    assert isinstance(got, float), f"train_epoch returned {type_name(got)}, expected a Python float"
    sizes = [len(t) for _, t in loader]
    weighted = sum(v * k for v, k in zip(losses, sizes)) / sum(sizes)
    for value, mistake in [(sum(losses), "the sum of the batch losses; return their mean"),
                           (weighted, "a mean weighted by batch size; return the plain mean of the batch losses "
                                      "(total of loss.item() / number of batches)"),
                           (losses[-1], "the last batch's loss; return the mean over all batches"),
                           (losses[0], "the first batch's loss; return the mean over all batches")]:
        if abs(got - value) < 1e-5 and abs(got - want) > 1e-5:
            raise AssertionError(f"train_epoch returned {mistake}")
    assert abs(got - want) < 1e-5, f"train_epoch returned {got:.6f}, expected the mean batch loss {want:.6f}"


@pytest.mark.task("ch10.device")
@pytest.mark.points(2)
def test_train_epoch_matches_the_lecture_loop(probes):
    check_train_epoch(probes, seed=0, n=44, batch_size=8)  # 6 batches, the last of 4


@pytest.mark.task("ch10.device")
@pytest.mark.points(1)
def test_train_epoch_sets_training_mode(probes):
    x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
    # the probe model starts in evaluation mode, as evaluate leaves it
    calls = probes.forward_modes("train_epoch", x, y, batch_size=5, training=False, lr=0.1)
    assert calls and all(training for training, _ in calls), \
        "train_epoch ran the model in evaluation mode: call model.train() first (evaluate switches it off)"


def check_evaluate_counts(impl, seed, n, right, batch_size):
    """evaluate on a linear model whose first `right` answers are known to be right."""
    torch.manual_seed(seed)
    model = nn.Linear(4, 3)
    x, y = torch.randn(n, 4), torch.randint(0, 3, (n,))
    y[:right] = model(x[:right]).argmax(dim=1).detach()  # a known share of right answers
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size)
    with torch.no_grad():
        want = (model(x).argmax(dim=1) == y).float().mean().item()
        per_batch = np.mean([(model(bx).argmax(dim=1) == by).float().mean().item() for bx, by in loader])
    got = impl.evaluate(model, loader, torch.device("cpu"))
    assert isinstance(got, float), f"evaluate returned {type_name(got)}, expected a Python float"
    if abs(got - per_batch) < 1e-6 and abs(got - want) > 1e-6:
        raise AssertionError("evaluate averaged the batches' accuracies, which overweights the short last "
                             "batch: add up correct and total over all batches, then divide")
    assert abs(got - want) < 1e-5, f"evaluate returned {got:.4f}, expected accuracy {want:.4f}"


@pytest.mark.task("ch10.device")
@pytest.mark.points(1)
def test_evaluate_counts_correct_predictions(impl):
    check_evaluate_counts(impl, seed=0, n=23, right=12, batch_size=10)  # batches of 10, 10, 3


@pytest.mark.task("ch10.device")
@pytest.mark.points(2)
def test_evaluate_uses_eval_mode_and_no_grad(probes):
    x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
    calls = probes.forward_modes("evaluate", x, y, batch_size=5, training=True)
    assert calls, "evaluate never ran the model"
    assert not any(grad for _, grad in calls), \
        "evaluate ran the model with gradient tracking on: wrap the loop in torch.no_grad()"
    assert not any(training for training, _ in calls), \
        "evaluate left the model in training mode: call model.eval() first (dropout and batch norm " \
        "behave differently when testing)"
