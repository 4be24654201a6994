"""Chapter 09, public tests: shapes and basic behaviour."""
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from grader.remote import type_name


@pytest.mark.task("ch09.softmax")
@pytest.mark.points(2)
def test_softmax_rows_are_distributions(impl):
    z = torch.randn(4, 10)
    p = impl.softmax(z)
    assert isinstance(p, torch.Tensor) and p.shape == (4, 10), \
        f"softmax of a [4, 10] tensor should have shape [4, 10], got " \
        f"{list(p.shape) if isinstance(p, torch.Tensor) else type_name(p)}"
    assert bool((p > 0).all()), "every softmax output should be positive"
    assert torch.allclose(p.sum(dim=1), torch.ones(4), atol=1e-5), \
        "each row of softmax(z) should sum to 1: divide by the sum over dim=1"


@pytest.mark.task("ch09.cross_entropy")
@pytest.mark.points(2)
def test_cross_entropy_is_a_positive_scalar(impl):
    logits = torch.randn(6, 10)
    targets = torch.tensor([0, 3, 9, 1, 1, 5])
    loss = impl.cross_entropy(logits, targets)
    assert isinstance(loss, torch.Tensor) and loss.dim() == 0, \
        f"cross_entropy should return a 0-d tensor (the mean over the batch), got " \
        f"{list(loss.shape) if isinstance(loss, torch.Tensor) else type_name(loss)}"
    assert float(loss) > 0, f"cross_entropy returned {float(loss):.4f}: -log p is positive for p < 1"


@pytest.mark.task("ch09.transform")
@pytest.mark.points(2)
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


@pytest.mark.task("ch09.model")
@pytest.mark.points(2)
def test_model_maps_images_to_ten_logits(impl):
    model = impl.MnistMLP()
    out = model(torch.randn(3, 1, 28, 28))
    assert isinstance(out, torch.Tensor) and out.shape == (3, 10), \
        f"MnistMLP maps [3, 1, 28, 28] to {list(out.shape)}, expected [3, 10]"


@pytest.mark.task("ch09.train")
@pytest.mark.points(2)
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
