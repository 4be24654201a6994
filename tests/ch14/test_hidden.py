"""Chapter 14, hidden tests: the public tests' checks on other seeds, sizes, models and optimizers,
so code fitted to the public inputs fails; a longer overfitting run; a GPU checkpoint."""
from collections import OrderedDict

import pytest
import torch
from torch import nn

from grader.testing import assert_close

from .test_public import (_check_activations, _check_lenet_values, _check_overfits, _check_predict_eval,
                          _check_round_trip, _check_saved_state_dicts, _check_train_epoch, _lenet_forward,
                          _load, _load_into, _save, _sent, _train_run)


# --------------------------------------------------------------------------- ch14.model

@pytest.mark.task("ch14.model")
@pytest.mark.points(2)
def test_lenet_forward_values_held_out(impl, student):
    _check_lenet_values(impl, student, seed=7, batch=5)


@pytest.mark.task("ch14.model")
@pytest.mark.points(1)
def test_lenet_samples_are_independent(impl):
    torch.manual_seed(0)  # for x
    model = impl.LeNet()
    x = torch.randn(5, 3, 32, 32)
    batch = _lenet_forward(model, x)
    single = torch.cat([model(x[i:i + 1]) for i in range(5)])
    assert_close(batch, single, "the logits of a batch compared with the same images one at a time",
                 hint="flatten each image on its own: x.flatten(1) or x.view(x.size(0), -1)")


@pytest.mark.task("ch14.model")
@pytest.mark.points(2)
def test_train_epoch_held_out(probes):
    _check_train_epoch(probes, seed=4, n_batches=4, batch=5, size=6, lr=0.05, momentum=0.5)


@pytest.mark.task("ch14.model")
@pytest.mark.points(2)
def test_lenet_overfits_one_batch_held_out(impl, probes, student):
    _check_overfits(impl, probes, student, seed=3, n=16, steps=100)


# --------------------------------------------------------------------------- ch14.checkpoint

@pytest.mark.task("ch14.checkpoint")
@pytest.mark.points(1)
def test_checkpoint_holds_state_dicts_held_out(probes):
    _check_saved_state_dicts(probes, _train_run(4, seed=8, sizes=(5, 7, 4), optimizer=("RMSprop", {"lr": 0.02})),
                             epoch=13)


@pytest.mark.task("ch14.checkpoint")
@pytest.mark.points(2)
def test_round_trip_held_out(probes):
    sgd = ("SGD", {"lr": 0.05, "momentum": 0.9})
    _check_round_trip(probes, _train_run(5, seed=9, sizes=(3, 5, 2), optimizer=sgd),
                      _train_run(0, seed=2, sizes=(3, 5, 2), optimizer=sgd), epoch=11, moments=("momentum_buffer",))


@pytest.mark.gpu
@pytest.mark.task("ch14.checkpoint")
@pytest.mark.points(1)
def test_cuda_checkpoint_loads_on_cpu(probes):
    model = nn.Linear(3, 2).cuda()
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 3, device="cuda")).sum().backward()
    optimizer.step()
    data = _save(probes, model, optimizer, 1)
    cpu_model = nn.Linear(3, 2)
    cpu_optimizer = torch.optim.Adam(cpu_model.parameters())
    # load_checkpoint(path, cpu_model, cpu_optimizer, map_location="cpu") on copies
    run = _load(probes, data, cpu_model, _sent(cpu_optimizer), map_location="cpu")
    assert_close(run["model"]["weight"], model.weight.cpu(), "the weight loaded with map_location='cpu'")
    state = run["optimizer"]["state"].get(0, {})
    assert "exp_avg" in state and state["exp_avg"].device.type == "cpu", \
        "Adam's state loaded with map_location='cpu' is still on the GPU: pass map_location to torch.load"
    assert _load_into(run, cpu_model, cpu_optimizer) == 1


# --------------------------------------------------------------------------- ch14.hooks

def _named_net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict([
        ("features", nn.Sequential(OrderedDict([("conv", nn.Conv2d(2, 3, 3, padding=1)), ("act", nn.Tanh()),
                                                ("pool", nn.AvgPool2d(2))]))),
        ("flat", nn.Flatten()),
        ("head", nn.Linear(3 * 3 * 3, 5)),
    ]))


@pytest.mark.task("ch14.hooks")
@pytest.mark.points(2)
def test_activations_held_out(impl):
    torch.manual_seed(12)
    x = torch.randn(3, 2, 6, 6)
    _check_activations(impl, _named_net(11), ["features.pool", "features.conv", "head", "features"], x)
    _check_activations(impl, _named_net(13), ["flat"], x)


@pytest.mark.task("ch14.hooks")
@pytest.mark.points(1)
def test_hooks_are_removed_held_out(probes):
    # capture_activations(model, ...), then the forward hooks still registered on the model
    left = probes.hooks_left(_named_net(14), ["features.conv", "features", "head"], torch.randn(1, 2, 6, 6))
    assert not left, (f"forward hooks are still registered on {sorted(left)} after capture_activations: "
                      "keep the handles that register_forward_hook returns and call handle.remove()")


# --------------------------------------------------------------------------- ch14.predict

@pytest.mark.task("ch14.predict")
@pytest.mark.points(2)
def test_predict_uses_eval_mode_held_out(probes):
    _check_predict_eval(probes, seed=3, n=24, width=12, p=0.3)
