"""Chapter 11 probes: run beside the student's code, return plain data to the tests.

A probe is a function `name(impl, *args)`; `impl` is the student's chapter module. It may
build spies and callbacks (anything that has to run inside the student's process) and
returns numbers, strings, tensors, lists or dicts. It never holds an expected value: the
test compares. This file ships with the public tests.

The network probes can build the student's GoogLeNet or ResNet around the lecture's own
InceptionA and ResidualBlock (below), so that the network tests observe the network's
forward alone, not the student's blocks (which have their own tests).
"""
import torch
import torch.nn.functional as F
from torch import nn


# --------------------------------------------------------------------------- the lecture's blocks

class LectureInceptionA(nn.Module):
    """The lecture's Inception block: four branches, 88 output channels."""

    def __init__(self, in_channels):
        super().__init__()
        self.branch1x1 = nn.Conv2d(in_channels, 16, kernel_size=1)
        self.branch5x5_1 = nn.Conv2d(in_channels, 16, kernel_size=1)
        self.branch5x5_2 = nn.Conv2d(16, 24, kernel_size=5, padding=2)
        self.branch3x3_1 = nn.Conv2d(in_channels, 16, kernel_size=1)
        self.branch3x3_2 = nn.Conv2d(16, 24, kernel_size=3, padding=1)
        self.branch3x3_3 = nn.Conv2d(24, 24, kernel_size=3, padding=1)
        self.branch_pool = nn.Conv2d(in_channels, 24, kernel_size=1)

    def forward(self, x):
        pool = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)
        return torch.cat([self.branch1x1(x),
                          self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3_3(self.branch3x3_2(self.branch3x3_1(x))),
                          self.branch_pool(pool)], dim=1)


class LectureResidualBlock(nn.Module):
    """The lecture's residual block: relu(x + conv2(relu(conv1(x))))."""

    def __init__(self, channels):
        super().__init__()
        self.channels = channels
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x):
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


def _build(impl, class_name, lecture_blocks):
    """impl.<class_name>(), built with the lecture's InceptionA and ResidualBlock in place of
    the student's when `lecture_blocks`."""
    if not lecture_blocks:
        return getattr(impl, class_name)()
    saved = {name: impl.__dict__[name] for name in ("InceptionA", "ResidualBlock") if name in impl.__dict__}
    impl.InceptionA, impl.ResidualBlock = LectureInceptionA, LectureResidualBlock
    try:
        return getattr(impl, class_name)()
    finally:
        for name in ("InceptionA", "ResidualBlock"):
            if name in saved:
                setattr(impl, name, saved[name])
            else:
                delattr(impl, name)


# --------------------------------------------------------------------------- probes

def forward_shapes(impl, module, x, names):
    """Run the student's module (a handle from the test) on x with a forward hook on each
    submodule in `names`; {name: (input shape, output shape)} of those that ran, whether or
    not the forward got to the end (an exception is swallowed: the test has seen it)."""
    seen, hooks = {}, []
    for name in names:
        layer = getattr(module, name, None)
        if isinstance(layer, nn.Module):
            def hook(m, inputs, output, name=name):
                first = inputs[0] if inputs else None
                seen[name] = (tuple(first.shape) if isinstance(first, torch.Tensor) else None,
                              tuple(output.shape) if isinstance(output, torch.Tensor) else None)
            hooks.append(layer.register_forward_hook(hook))
    try:
        module(x)
    except Exception:  # noqa: BLE001 - the test called the module itself first
        pass
    finally:
        for handle in hooks:
            handle.remove()
    return seen


def backward(impl, module, x, power=1):
    """module(x).pow(power).sum().backward() on the student's module (a handle from the
    test); the test then reads the parameters' .grad through the handle."""
    module(x).pow(power).sum().backward()


def input_gradient(impl, module, x, power=2):
    """The gradient of module(x).pow(power).sum() with respect to x, by autograd in the
    student's process; None when the result does not depend on x through autograd."""
    x = x.detach().clone().requires_grad_(True)
    out = module(x)
    if not isinstance(out, torch.Tensor):
        return None
    out = out.pow(power).sum()
    if not out.requires_grad:
        return None
    (grad,) = torch.autograd.grad(out, [x], allow_unused=True)
    return torch.zeros_like(x) if grad is None else grad


def network(impl, class_name, lecture_blocks=True):
    """A new impl.<class_name>() (GoogLeNet or ResNet), built with the lecture's InceptionA and
    ResidualBlock in place of the student's when `lecture_blocks`; the test gets a handle."""
    return _build(impl, class_name, lecture_blocks)


def network_forward(impl, net, x, block_names):
    """The network `net` (a handle from the test) run on x. Returns its output, the order in
    which the submodules in `block_names` ran, and its weights (state_dict)."""
    calls, hooks = [], []
    for name in block_names:
        hooks.append(getattr(net, name).register_forward_hook(lambda m, i, o, name=name: calls.append(name)))
    try:
        out = net(x)
    finally:
        for handle in hooks:
            handle.remove()
    return {"out": out, "calls": calls,
            "state": {k: v.detach().clone() for k, v in net.state_dict().items()}}


def network_gradients(impl, net, x, power=1):
    """net(x).pow(power).sum().backward() on the network `net` (a handle from the test);
    [(name, grad or None)] of its named parameters."""
    net(x).pow(power).sum().backward()
    return [(name, None if p.grad is None else p.grad.detach().clone()) for name, p in net.named_parameters()]


def train_and_predict(impl, net, x_train, y_train, x_test, epochs, batch_size, lr,
                      last_epoch_lr_factor, order_seed):
    """The network `net` (a handle from the test) trained with Adam(lr) and cross-entropy for
    `epochs` passes over (x_train, y_train) in batches of `batch_size`, shuffled by a
    generator seeded with `order_seed`, the learning rate multiplied by
    `last_epoch_lr_factor` for the last epoch; its logits for x_test."""
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    order = torch.Generator().manual_seed(order_seed)
    net.train()
    for epoch in range(epochs):
        if epoch == epochs - 1:
            for group in optimizer.param_groups:
                group["lr"] *= last_epoch_lr_factor
        perm = torch.randperm(len(x_train), generator=order)
        for i in range(0, len(x_train), batch_size):
            idx = perm[i:i + batch_size]
            loss = F.cross_entropy(net(x_train[idx]), y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    net.eval()
    with torch.no_grad():
        return net(x_test).detach()
