"""Chapter 11, hidden tests: the public tests' properties on held-out sizes, batches and seeds,
and the accuracy of a longer training run.

The checks themselves (and their messages) are the public tests' (test_public.py), so a
student sees every kind of failure before grading; these tests add inputs the student has
not seen. The network tests build the student's network with the lecture's own InceptionA /
ResidualBlock (probes.py), so their points depend on the network's forward alone.
"""
import pytest
import torch

from .test_public import (check_inception_gradients, check_inception_layers, check_inception_shape,
                          check_inception_values, check_network_logits, check_residual_gradients,
                          check_residual_values, check_residual_zero_convolutions, resnet_accuracy)

EPOCHS = 2  # of the accuracy test: Adam(lr=2e-3), the last epoch at lr=2e-4


# --------------------------------------------------------------------------- ch11.inception

@pytest.mark.task("ch11.inception")
@pytest.mark.points(2)
def test_inception_on_other_sizes(impl, probes):
    torch.manual_seed(20)
    check_inception_layers(impl, 13)
    check_inception_shape(impl, probes, 13, (3, 7, 9))
    check_inception_shape(impl, probes, 1, (1, 1, 1))


@pytest.mark.task("ch11.inception")
@pytest.mark.points(3)
def test_inception_values_on_other_sizes(impl, probes):
    torch.manual_seed(21)
    check_inception_values(impl, 11, (3, 6, 5))
    check_inception_gradients(impl, probes, 2, (1, 5, 4))


# --------------------------------------------------------------------------- ch11.residual

@pytest.mark.task("ch11.residual")
@pytest.mark.points(3)
def test_residual_block_on_other_sizes(impl, probes):
    torch.manual_seed(22)
    check_residual_values(impl, 6, (3, 7, 4))
    check_residual_zero_convolutions(impl, 3, (1, 5, 2))
    check_residual_gradients(impl, probes, 3, (2, 2, 4))


# --------------------------------------------------------------------------- the networks

@pytest.mark.task("ch11.googlenet")
@pytest.mark.points(1)
def test_googlenet_on_other_batches(probes):
    torch.manual_seed(23)
    check_network_logits(probes, "GoogLeNet", 2.0 * torch.randn(5, 1, 28, 28))
    check_network_logits(probes, "GoogLeNet", torch.randn(1, 1, 28, 28))


@pytest.mark.task("ch11.resnet")
@pytest.mark.points(1)
def test_resnet_on_other_batches(probes):
    torch.manual_seed(24)
    check_network_logits(probes, "ResNet", 2.0 * torch.randn(5, 1, 28, 28))
    check_network_logits(probes, "ResNet", torch.randn(1, 1, 28, 28))


@pytest.mark.task("ch11.resnet")
@pytest.mark.points(2)
def test_resnet_learns_the_mnist_subset(probes, datasets_dir):
    # 1,500 digits, 2 epochs: the reference reaches 0.924-0.928 from three starting points
    accuracy = resnet_accuracy(probes, datasets_dir, n_train=1500, n_test=1000, epochs=EPOCHS, batch_size=32,
                               last_epoch_lr_factor=0.1, seed=0)
    assert accuracy >= 0.90, \
        f"ResNet reached {accuracy:.3f} test accuracy after {EPOCHS} epochs on 1,500 digits of the MNIST subset, " \
        "expected at least 0.90: check forward (the ReLUs, the order of the layers)"
