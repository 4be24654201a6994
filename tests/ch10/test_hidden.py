"""Chapter 10, hidden tests: the public tests' properties on held-out inputs, sizes and seeds,
the accuracy of a longer training run, and the GPU run where there is one.

The checks themselves (and their messages) are the public tests' (test_public.py), so a
student sees every kind of failure before grading; what these tests add is inputs the
student has not seen, so answers fitted to the public examples fail here.
"""
import pytest
import torch
from torch import nn

from grader.testing import assert_close

from .test_public import (IMAGE, KERNEL, _reference_epoch, check_cnn_logits, check_conv_output_sizes,
                          check_convolve, check_evaluate_counts, check_placement, check_train_epoch,
                          cnn_accuracy, run_cnn)


# --------------------------------------------------------------------------- ch10.shapes

@pytest.mark.task("ch10.shapes")
@pytest.mark.points(2)
def test_conv_output_size_matches_conv2d(probes):
    check_conv_output_sizes(probes, [(size, k, p, s) for size in range(1, 33) for k in (1, 2, 3, 5, 7)
                                     for p in range(0, 4) if not (size + 2 * p < k or p > k // 2 + 1)
                                     for s in (1, 2, 3)])


@pytest.mark.task("ch10.shapes")
@pytest.mark.points(3)
def test_convolve_matches_conv2d_on_other_images(impl):
    torch.manual_seed(10)
    # the lecture's shapes with other values: an answer copied from the lecture does not fit them
    image, kernel = torch.randint(0, 10, (5, 5)).float(), torch.randint(-4, 5, (3, 3)).float()
    lecture = torch.nn.functional.conv2d(IMAGE.view(1, 1, 5, 5), KERNEL.view(1, 1, 3, 3), padding=1)[0, 0]
    out = impl.convolve(image.clone(), kernel.clone(), padding=1)
    if out.shape == lecture.shape and torch.allclose(out.detach(), lecture):
        raise AssertionError("convolve returned the lecture example's answer for another 5x5 image: compute the "
                             "convolution of the image and kernel it is given")
    check_convolve(impl, image, kernel, padding=1, what="convolve on another 5x5 image (padding=1)")
    check_convolve(impl, image, kernel, stride=2, what="convolve on another 5x5 image (stride=2)")
    check_convolve(impl, torch.randn(7, 9), torch.randn(2, 3), padding=1, stride=2,
                   what="convolve on a 7x9 image with a 2x3 kernel (padding=1, stride=2)")
    check_convolve(impl, torch.randn(11, 6), torch.randn(4, 4), padding=2, stride=3,
                   what="convolve on an 11x6 image with a 4x4 kernel (padding=2, stride=3)")


# --------------------------------------------------------------------------- ch10.model

@pytest.mark.task("ch10.model")
@pytest.mark.points(1)
def test_cnn_matches_the_lecture_on_other_batches(impl):
    torch.manual_seed(11)
    net = impl.CnnNet()
    check_cnn_logits(net, 3.0 * torch.randn(5, 1, 28, 28))
    run_cnn(net, torch.randn(1, 1, 28, 28))


@pytest.mark.task("ch10.model")
@pytest.mark.points(3)
def test_cnn_learns_the_mnist_subset(impl, probes, datasets_dir):
    # 2,000 digits, 2 epochs: the reference reaches 0.898-0.911 from three starting points
    accuracy = cnn_accuracy(impl, probes, datasets_dir, n_train=2000, n_test=1000, epochs=2,
                            batch_size=64, seed=0)
    assert accuracy >= 0.85, \
        f"CnnNet reached {accuracy:.3f} test accuracy after 2 epochs on 2,000 digits of the MNIST subset, " \
        "expected at least 0.85: check forward (conv, pool, ReLU twice, then fc)"


# --------------------------------------------------------------------------- ch10.device

@pytest.mark.task("ch10.device")
@pytest.mark.points(2)
def test_placement_on_other_batches(probes):
    check_placement(probes, "train_epoch", n_batches=4, batch_size=3)
    check_placement(probes, "evaluate", n_batches=2, batch_size=7)


@pytest.mark.task("ch10.device")
@pytest.mark.points(2)
def test_train_epoch_on_another_problem(probes):
    check_train_epoch(probes, seed=12, n=37, batch_size=6, lr=0.05, momentum=0.9)  # 7 batches, the last of 1


@pytest.mark.task("ch10.device")
@pytest.mark.points(2)
def test_evaluate_on_other_batches(impl):
    check_evaluate_counts(impl, seed=13, n=31, right=9, batch_size=7)  # batches of 7 x 4 and 3


@pytest.mark.gpu
@pytest.mark.task("ch10.device")
@pytest.mark.points(2)
def test_train_and_evaluate_on_cuda(probes, device):
    torch.manual_seed(0)
    x, y = torch.randn(44, 4), torch.randint(0, 3, (44,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    model = nn.Linear(4, 3)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    run = probes.train_epoch_result(model, loader, optimizer, nn.CrossEntropyLoss(), device, evaluate=True)
    got, weight = run["loss"], run["state"]["weight"]
    assert weight.device.type == device.type, f"train_epoch left the model on {weight.device}"
    losses, ref = _reference_epoch(state, loader, 0.1, 0.5)
    assert abs(got - sum(losses) / len(losses)) < 1e-4, "train_epoch's mean loss on the GPU differs from the CPU's"
    assert_close(weight.detach().cpu(), ref.weight.detach(), "the weights after one epoch on the GPU",
                 atol=1e-4)
    accuracy = run["accuracy"]
    with torch.no_grad():
        want = (ref(x).argmax(dim=1) == y).float().mean().item()
    assert abs(accuracy - want) < 1e-5, f"evaluate on the GPU returned {accuracy:.4f}, expected {want:.4f}"
