"""Chapter 10, hidden tests: convolution arithmetic, the CNN, and device placement.

Device placement is checked on machines without a GPU too, on PyTorch's `meta` device:
tensors there have a shape and a device but no data, so a model, input or target left
on the CPU fails exactly as it would next to a GPU. The probes (probes.py: a tiny model, a
criterion, an optimizer and labels that refuse to meet a tensor of another device) report
whatever was left behind. Reading a value from a meta tensor (`loss.item()`, the count of
correct predictions) is impossible, so the probe labels answer such reads with 0: the
meta runs check placement only, and the CPU runs check the numbers.
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

def _conv2d_size(size, kernel_size, padding, stride):
    x = torch.zeros(1, 1, size, 1)
    w = torch.zeros(1, 1, kernel_size, 1)
    return F.conv2d(x, w, padding=(padding, 0), stride=(stride, 1)).shape[2]


_WRONG_SIZES = [
    (lambda n, k, p, s: -(-(n + 2 * p - k) // s) + 1,
     "it rounds up; nn.Conv2d rounds down (floor division //): an incomplete last window is dropped"),
    (lambda n, k, p, s: (n + p - k) // s + 1,
     "the padding is counted once; it is added on both sides: size + 2 * padding"),
    (lambda n, k, p, s: (n + 2 * p - k) // s,
     "it is off by one: the first window position counts too (+ 1 after the division)"),
    (lambda n, k, p, s: (n + 2 * p - k + 1) // s,
     "the + 1 is inside the division; divide (size + 2 * padding - kernel_size) by stride, then add 1"),
]


@pytest.mark.task("ch10.shapes")
@pytest.mark.points(3)
def test_conv_output_size_matches_conv2d(probes):
    cases = [(size, k, p, s) for size in range(1, 33) for k in (1, 2, 3, 5, 7) for p in range(0, 4)
             if not (size + 2 * p < k or p > k // 2 + 1) for s in (1, 2, 3)]
    answers = probes.conv_output_sizes(cases)  # one call of conv_output_size per case, in order
    wrong = []
    for (size, k, p, s), got in zip(cases, answers, strict=True):
        assert isinstance(got, int), \
            f"conv_output_size({size}, {k}, padding={p}, stride={s}) returned " \
            f"{type_name(got)} {got!r}: return an int, with floor division //"
        want = _conv2d_size(size, k, p, s)
        if got != want:
            wrong.append(((size, k, p, s), got, want))
    if wrong:
        for formula, mistake in _WRONG_SIZES:
            if all(formula(*args) == got for args, got, _ in wrong):
                raise AssertionError(f"conv_output_size disagrees with nn.Conv2d: {mistake}")
        (n, k, p, s), got, want = wrong[0]
        raise AssertionError(f"conv_output_size({n}, {k}, padding={p}, stride={s}) returned {got}, "
                             f"nn.Conv2d gives {want} ({len(wrong)} cases wrong)")


@pytest.mark.task("ch10.shapes")
@pytest.mark.points(3)
def test_convolve_reproduces_the_lecture(impl):
    out = impl.convolve(IMAGE.clone(), KERNEL.clone(), padding=1)
    want = F.conv2d(IMAGE.view(1, 1, 5, 5), KERNEL.view(1, 1, 3, 3), padding=1)[0, 0]
    assert out.shape == (5, 5), f"convolve with padding=1 returned shape {list(out.shape)}, expected [5, 5]"
    out = out.detach()
    hint = None
    if torch.allclose(out, F.conv2d(IMAGE.view(1, 1, 5, 5), KERNEL.flip(0, 1).view(1, 1, 3, 3), padding=1)[0, 0]):
        hint = "the kernel is flipped: nn.Conv2d slides it as it is (a cross-correlation), do not flip it"
    elif torch.allclose(out, F.conv2d(IMAGE.view(1, 1, 5, 5), KERNEL.t().reshape(1, 1, 3, 3), padding=1)[0, 0]):
        hint = "the kernel is transposed: view it as [1, 1, kH, kW] without .t()"
    elif (out - want).abs().max() > 1e-3 and (out - want).std() < 1e-4:
        hint = "a bias was added: build the Conv2d with bias=False"
    assert_close(out, want, "convolve(lecture image, kernel 1..9, padding=1) (first row 91 168 224 215 127)",
                 atol=1e-3, hint=hint)

    out = impl.convolve(IMAGE.clone(), KERNEL.clone(), stride=2).detach()
    if out.shape == (3, 3):
        raise AssertionError("convolve(..., stride=2) returned a 3x3 map, expected 2x2 [[211, 262], "
                             "[251, 169]]: pass padding=padding (0 here) to nn.Conv2d, not a fixed 1")
    assert out.shape == (2, 2), \
        f"convolve(5x5 image, 3x3 kernel, stride=2) returned shape {list(out.shape)}, expected [2, 2]: " \
        "pass stride=stride to nn.Conv2d"
    assert_close(out, torch.tensor([[211.0, 262.0], [251.0, 169.0]]),
                 "convolve(lecture image, kernel 1..9, stride=2)", atol=1e-3)


@pytest.mark.task("ch10.shapes")
@pytest.mark.points(2)
def test_convolve_matches_conv2d_on_other_shapes(impl):
    image, kernel = torch.randn(7, 9), torch.randn(2, 3)
    out = impl.convolve(image.clone(), kernel.clone(), padding=1, stride=2)
    want = F.conv2d(image.view(1, 1, 7, 9), kernel.view(1, 1, 2, 3), padding=1, stride=2)[0, 0]
    assert out.shape == want.shape, \
        f"convolve(7x9 image, 2x3 kernel, padding=1, stride=2) returned shape {list(out.shape)}, expected " \
        f"{list(want.shape)}: use the kernel's own height and width (kernel_size=kernel.shape)"
    assert_close(out.detach(), want, "convolve on a 7x9 image with a 2x3 kernel", atol=1e-5)


# --------------------------------------------------------------------------- ch10.model

def _cnn_reference(w, x, relu=True):
    """The lecture's forward, computed here from the student's weights (its state_dict)."""
    act = F.relu if relu else (lambda t: t)
    h = act(F.max_pool2d(F.conv2d(x, w["conv1.weight"], w["conv1.bias"]), 2))
    h = act(F.max_pool2d(F.conv2d(h, w["conv2.weight"], w["conv2.bias"]), 2))
    return F.linear(h.reshape(x.size(0), -1), w["fc.weight"], w["fc.bias"])


@pytest.mark.task("ch10.model")
@pytest.mark.points(3)
def test_cnn_matches_the_lecture(impl):
    net = impl.CnnNet()
    x = torch.randn(4, 1, 28, 28)
    try:
        out = net(x)
    except RuntimeError as exc:
        if "shapes cannot be multiplied" in str(exc):
            raise AssertionError("fc did not get 320 features per sample: apply conv1, pool, conv2, pool "
                                 "before flattening with x.view(batch_size, -1)") from None
        raise
    assert out.shape == (4, 10), f"CnnNet maps [4, 1, 28, 28] to {list(out.shape)}, expected [4, 10]"
    w = net.state_dict()
    hint = None
    if torch.allclose(out, _cnn_reference(w, x, relu=False), atol=1e-5):
        hint = "the ReLUs are missing: apply F.relu after each pooling"
    assert_close(out.detach(), _cnn_reference(w, x), "CnnNet's logits", atol=1e-5, hint=hint)


@pytest.mark.task("ch10.model")
@pytest.mark.points(1)
def test_cnn_gradients_reach_every_layer(impl, probes):
    net = impl.CnnNet()
    probes.backward(net, torch.randn(2, 1, 28, 28))
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, \
            f"no gradient reached {name}: forward must use every layer (and not detach)"


def _mnist(datasets_dir, split):
    with np.load(datasets_dir / "mnist_subset.npz") as data:
        x = torch.from_numpy(data[f"{split}_images"]).float().div(255)
        y = torch.from_numpy(data[f"{split}_labels"]).long()
    return ((x - 0.1307) / 0.3081).unsqueeze(1), y


@pytest.mark.task("ch10.model")
@pytest.mark.points(3)
def test_cnn_learns_the_mnist_subset(probes, student, datasets_dir):
    x_train, y_train = _mnist(datasets_dir, "train")
    x_test, y_test = _mnist(datasets_dir, "test")
    student.seed(0)  # the new CnnNet's initial weights
    logits = probes.train_and_predict(x_train, y_train, x_test, epochs=2, batch_size=64, lr=0.05,
                                      momentum=0.9, order_seed=0)
    accuracy = (logits.argmax(dim=1) == y_test).float().mean().item()
    assert accuracy >= 0.90, \
        f"CnnNet reached {accuracy:.3f} test accuracy after 2 epochs on the MNIST subset, expected at " \
        "least 0.90: check forward (conv, pool, ReLU twice, then fc)"


# --------------------------------------------------------------------------- ch10.device

_MISPLACED = {
    "labels": "the targets are still on {found} while the model's outputs are on {want}: move the labels "
              "with .to(device) too",
    "targets": "the targets are still on {found}: move the labels with .to(device) too (to {want})",
    "model": "the model is still on {found}: call model.to(device) to move it to {want}",
    "inputs": "the inputs are still on {found}: move them with .to(device) (to {want}) before the forward pass",
}


def _check_placement(seen):
    wrong = seen["misplaced"]
    if wrong is not None:
        raise AssertionError(_MISPLACED[wrong["what"]].format(found=wrong["found"], want=wrong["want"]))


def _explain_meta_error(exc: Exception, what: str) -> AssertionError:
    text = str(exc)
    if "meta" in text and ("copy out" in text or "item()" in text or "no data" in text):
        return AssertionError(f"{what} tried to read values back to the CPU in a way that cannot run on "
                              "another device: keep the labels on device with the predictions and read the "
                              f"count with .item() ({type(exc).__name__}: {text.splitlines()[0]})")
    return AssertionError(f"{what} failed on the meta device: {type(exc).__name__}: {text.splitlines()[0]}")


@pytest.mark.task("ch10.device")
@pytest.mark.points(2)
def test_get_device_follows_cuda_availability(probes):
    device = probes.get_device_when_cuda(False)
    assert isinstance(device, torch.device) and device.type == "cpu", \
        f"without CUDA get_device() returned {device!r}, expected torch.device('cpu')"
    device = probes.get_device_when_cuda(True)
    assert isinstance(device, torch.device) and device.type == "cuda", \
        f"with CUDA available get_device() returned {device!r}, expected torch.device('cuda'): " \
        "ask torch.cuda.is_available() each call"


@pytest.mark.task("ch10.device")
@pytest.mark.points(3)
def test_train_epoch_moves_model_inputs_and_targets(probes):
    try:  # the probe model is built on the CPU: train_epoch must move it
        seen = probes.train_epoch_placement(META, n_batches=3, batch_size=5)
    except AssertionError:
        raise
    except (RuntimeError, NotImplementedError) as exc:
        if isinstance(exc, NotImplementedError) and "ch10." in str(exc):
            raise
        raise _explain_meta_error(exc, "train_epoch") from None
    _check_placement(seen)
    assert seen["forward_calls"] == 3, f"train_epoch ran the model {seen['forward_calls']} times for 3 batches"
    assert seen["steps"] == 3, f"train_epoch called optimizer.step() {seen['steps']} times for 3 batches"
    assert all(d == META.type for d in seen["parameter_devices"]), \
        "after train_epoch the model is not on the device: call model.to(device)"


@pytest.mark.task("ch10.device")
@pytest.mark.points(3)
def test_evaluate_moves_model_inputs_and_targets(probes):
    try:
        seen = probes.evaluate_placement(META, n_batches=3, batch_size=5)
    except AssertionError:
        raise
    except (RuntimeError, NotImplementedError) as exc:
        if isinstance(exc, NotImplementedError) and "ch10." in str(exc):
            raise
        raise _explain_meta_error(exc, "evaluate") from None
    _check_placement(seen)
    assert seen["forward_calls"] == 3, f"evaluate ran the model {seen['forward_calls']} times for 3 batches"
    accuracy = seen["result"]
    assert isinstance(accuracy, float), f"evaluate returned {type_name(accuracy)}, expected a float"


def _tiny_problem():
    torch.manual_seed(0)
    x, y = torch.randn(44, 4), torch.randint(0, 3, (44,))
    return x, y, DataLoader(TensorDataset(x, y), batch_size=8)  # 6 batches, the last of 4


def _reference_epoch(state, loader, *, zero_grad=True):
    model = nn.Linear(4, 3)
    model.load_state_dict(state)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    losses = []
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        if zero_grad:
            optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, model


@pytest.mark.task("ch10.device")
@pytest.mark.points(3)
def test_train_epoch_matches_the_lecture_loop(probes):
    x, y, loader = _tiny_problem()
    model = nn.Linear(4, 3)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    run = probes.train_epoch_result(model, loader, optimizer, nn.CrossEntropyLoss(), torch.device("cpu"))
    got, weight = run["loss"], run["state"]["weight"]
    losses, ref = _reference_epoch(state, loader)
    want = sum(losses) / len(losses)
    if not torch.allclose(weight, ref.weight, atol=1e-5):
        _, piled = _reference_epoch(state, loader, zero_grad=False)
        if torch.allclose(weight, piled.weight, atol=1e-5):
            raise AssertionError("the gradients pile up across batches: call optimizer.zero_grad() "
                                 "for every batch, before loss.backward()")
        assert_close(weight.detach(), ref.weight.detach(), "the weights after one epoch", atol=1e-5,
                     hint="one step per batch: forward, loss, zero_grad, backward, step")
    assert isinstance(got, float), f"train_epoch returned {type_name(got)}, expected a Python float"
    sizes = [len(y) for _, y in loader]
    weighted = sum(l * n for l, n in zip(losses, sizes)) / sum(sizes)
    for value, mistake in [(sum(losses), "the sum of the batch losses; return their mean"),
                           (weighted, "a mean weighted by batch size; return the plain mean of the batch losses "
                                      "(total of loss.item() / number of batches)"),
                           (losses[-1], "the last batch's loss; return the mean over all batches"),
                           (losses[0], "the first batch's loss; return the mean over all batches")]:
        if abs(got - value) < 1e-5 and abs(got - want) > 1e-5:
            raise AssertionError(f"train_epoch returned {mistake}")
    assert abs(got - want) < 1e-5, f"train_epoch returned {got:.6f}, expected the mean batch loss {want:.6f}"


@pytest.mark.task("ch10.device")
@pytest.mark.points(1)
def test_train_epoch_sets_training_mode(probes):
    x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
    # the probe model starts in evaluation mode, as evaluate leaves it
    calls = probes.forward_modes("train_epoch", x, y, batch_size=5, training=False, lr=0.1)
    assert calls and all(training for training, _ in calls), \
        "train_epoch ran the model in evaluation mode: call model.train() first (evaluate switches it off)"


@pytest.mark.task("ch10.device")
@pytest.mark.points(2)
def test_evaluate_counts_correct_predictions(impl):
    model = nn.Linear(4, 3)
    x, y = torch.randn(23, 4), torch.randint(0, 3, (23,))
    y[:12] = model(x[:12]).argmax(dim=1).detach()  # a known share of right answers
    loader = DataLoader(TensorDataset(x, y), batch_size=10)  # batches of 10, 10, 3
    with torch.no_grad():
        want = (model(x).argmax(dim=1) == y).float().mean().item()
        per_batch = np.mean([(model(bx).argmax(dim=1) == by).float().mean().item() for bx, by in loader])
    got = impl.evaluate(model, loader, torch.device("cpu"))
    if abs(got - per_batch) < 1e-6 and abs(got - want) > 1e-6:
        raise AssertionError("evaluate averaged the batches' accuracies, which overweights the short last "
                             "batch: add up correct and total over all batches, then divide")
    assert abs(got - want) < 1e-6, f"evaluate returned {got:.4f}, expected accuracy {want:.4f}"


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


@pytest.mark.gpu
@pytest.mark.task("ch10.device")
@pytest.mark.points(2)
def test_train_and_evaluate_on_cuda(probes, device):
    x, y, loader = _tiny_problem()
    model = nn.Linear(4, 3)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    run = probes.train_epoch_result(model, loader, optimizer, nn.CrossEntropyLoss(), device, evaluate=True)
    got, weight = run["loss"], run["state"]["weight"]
    assert weight.device.type == device.type, f"train_epoch left the model on {weight.device}"
    losses, ref = _reference_epoch(state, loader)
    assert abs(got - sum(losses) / len(losses)) < 1e-4, "train_epoch's mean loss on the GPU differs from the CPU's"
    assert_close(weight.detach().cpu(), ref.weight.detach(), "the weights after one epoch on the GPU",
                 atol=1e-4)
    accuracy = run["accuracy"]
    with torch.no_grad():
        want = (ref(x).argmax(dim=1) == y).float().mean().item()
    assert abs(accuracy - want) < 1e-6, f"evaluate on the GPU returned {accuracy:.4f}, expected {want:.4f}"
