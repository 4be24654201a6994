"""Chapter 14, public tests: shapes and basic behaviour."""
import io

import pytest
import torch
from torch import nn

from grader.remote import type_name


@pytest.mark.task("ch14.model")
@pytest.mark.points(2)
def test_lenet_output_shape(impl):
    model = impl.LeNet()
    out = model(torch.randn(4, 3, 32, 32))
    assert isinstance(out, torch.Tensor), f"LeNet returned {type_name(out)}, expected a Tensor"
    assert out.shape == (4, 10), \
        f"LeNet maps [4, 3, 32, 32] to {list(out.shape)}, expected [4, 10]: one score per class per image"
    assert out.dtype == torch.float32, f"LeNet's output is {out.dtype}, expected torch.float32"


@pytest.mark.task("ch14.model")
@pytest.mark.points(1)
def test_lenet_parameter_count(impl):
    model = impl.LeNet()
    n = sum(p.numel() for p in model.parameters())
    # conv1 456 + conv2 2416 + fc1 48120 + fc2 10164 + fc3 850
    assert n == 62006, (f"LeNet has {n} parameters, expected 62006: conv(3,6,5), conv(6,16,5), "
                        "Linear(400,120), Linear(120,84), Linear(84,10); one MaxPool2d(2, 2) has none")


@pytest.mark.task("ch14.model")
@pytest.mark.points(1)
def test_train_epoch_returns_a_float(probes):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    batches = [(torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))) for _ in range(2)]
    # train_epoch(model, batches, SGD(model.parameters(), lr=0.01), nn.CrossEntropyLoss())
    loss = probes.train_epoch(model, batches, torch.optim.SGD, {"lr": 0.01}, nn.CrossEntropyLoss())["losses"][0]
    assert isinstance(loss, float), \
        f"train_epoch returned {type_name(loss)}, expected a Python float (the mean of loss.item())"


@pytest.mark.task("ch14.checkpoint")
@pytest.mark.points(2)
def test_checkpoint_file_holds_a_dict(probes):
    model = nn.Linear(3, 2)
    # save_checkpoint(path, model, SGD(model.parameters(), lr=0.1), 3): the bytes of the file at path
    data = probes.save_checkpoint(model, (torch.optim.SGD, {"lr": 0.1}, None), 3)
    assert data is not None, "save_checkpoint(path, ...) did not write the file at path"
    saved = torch.load(io.BytesIO(data), weights_only=True)
    assert isinstance(saved, dict) and set(saved) == {"model", "optimizer", "epoch"}, \
        (f"the checkpoint should be a dict with keys 'model', 'optimizer', 'epoch', "
         f"got {sorted(saved) if isinstance(saved, dict) else type(saved).__name__}")
    epoch = probes.load_checkpoint(data, nn.Linear(3, 2))["epoch"]  # load_checkpoint(path, nn.Linear(3, 2))
    assert epoch == 3, f"load_checkpoint returned {epoch!r}, expected the saved epoch 3"


@pytest.mark.task("ch14.hooks")
@pytest.mark.points(2)
def test_capture_activations_shapes(impl):
    model = nn.Sequential()
    model.add_module("conv", nn.Conv2d(3, 4, 3))
    model.add_module("flat", nn.Flatten())
    model.add_module("fc", nn.Linear(4 * 6 * 6, 5))
    acts = impl.capture_activations(model, ["conv", "fc"], torch.randn(2, 3, 8, 8))
    assert isinstance(acts, dict) and set(acts) == {"conv", "fc"}, \
        f"capture_activations should return a dict keyed by the layer names ['conv', 'fc'], got {acts!r:.80}"
    assert acts["conv"].shape == (2, 4, 6, 6), \
        f"activation of 'conv' has shape {list(acts['conv'].shape)}, expected [2, 4, 6, 6]"
    assert acts["fc"].shape == (2, 5), \
        f"activation of 'fc' has shape {list(acts['fc'].shape)}, expected [2, 5]"


@pytest.mark.task("ch14.predict")
@pytest.mark.points(1)
def test_predict_shape_and_dtype(impl):
    model = nn.Linear(6, 4)
    out = impl.predict(model, torch.randn(5, 6))
    assert isinstance(out, torch.Tensor), f"predict returned {type_name(out)}, expected a Tensor"
    assert out.shape == (5,), f"predict returned shape {list(out.shape)} for 5 samples, expected [5]: " \
                              "one class index per sample (arg-max over dim=1)"
    assert out.dtype == torch.int64, f"predict returned {out.dtype}, expected class indices (torch.int64)"
