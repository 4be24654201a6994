"""Chapter 10, public tests: shapes and basic behaviour."""
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from grader.remote import type_name


@pytest.mark.task("ch10.shapes")
@pytest.mark.points(2)
def test_conv_output_size_lecture_examples(impl):
    for args, want in [((5, 3), 3), ((5, 3, 1), 5), ((5, 3, 0, 2), 2), ((28, 5), 24), ((12, 5), 8)]:
        got = impl.conv_output_size(*args)
        assert isinstance(got, int), \
            f"conv_output_size{args} returned {type_name(got)} {got!r}, expected an int: use // (floor division)"
        assert got == want, f"conv_output_size{args} returned {got}, expected {want}"


@pytest.mark.task("ch10.shapes")
@pytest.mark.points(1)
def test_convolve_shape(impl):
    out = impl.convolve(impl.LECTURE_IMAGE, impl.LECTURE_KERNEL, padding=1)
    assert isinstance(out, torch.Tensor), f"convolve returned {type_name(out)}, expected a Tensor"
    assert out.shape == (5, 5), \
        f"convolve(5x5 image, 3x3 kernel, padding=1) returned shape {list(out.shape)}, expected [5, 5] " \
        "(drop the batch and channel dimensions: out[0, 0])"


@pytest.mark.task("ch10.model")
@pytest.mark.points(2)
def test_cnn_output_shape(impl):
    out = impl.CnnNet()(torch.randn(3, 1, 28, 28))
    assert out.shape == (3, 10), f"CnnNet maps [3, 1, 28, 28] to {list(out.shape)}, expected [3, 10]"


@pytest.mark.task("ch10.device")
@pytest.mark.points(1)
def test_get_device_returns_a_device(impl):
    device = impl.get_device()
    assert isinstance(device, torch.device), \
        f"get_device returned {type_name(device)}, expected a torch.device"
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert device.type == want, f"get_device returned {device}, but this machine's device is {want}"


@pytest.mark.task("ch10.device")
@pytest.mark.points(2)
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
