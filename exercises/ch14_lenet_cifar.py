"""Chapter 14: a full workflow with LeNet on CIFAR-10.

Everything around the training loop that a real project needs: a model whose layer
sizes follow from the image size, a training epoch, checkpoints that can be resumed
(model *and* optimizer state, loaded safely with `weights_only=True`), forward hooks to
look inside the network, and a `predict` that switches off dropout and batch-norm
updates for the call only.

LeNet here is the 3-colour variant of LeNet-5 used in the CIFAR-10 tutorial:

    [B, 3, 32, 32] -conv 5x5-> [B, 6, 28, 28] -pool-> [B, 6, 14, 14]
                   -conv 5x5-> [B, 16, 10, 10] -pool-> [B, 16, 5, 5]
                   -flatten-> [B, 400] -> 120 -> 84 -> 10 logits

Run `python ch14_lenet_cifar.py` for the demonstration: the workflow on one random
batch, then training on CIFAR-10 when `datasets/full/` holds it (`make data`). By
default it trains for two epochs on the first 10,000 training images (about 40 s on a
2-core CPU); `python ch14_lenet_cifar.py --full` runs the tutorial's two epochs over
all 50,000 (about two and a half minutes there).
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

DATA_DIR = Path(os.environ.get("PRACTICE_DATASETS", Path(__file__).resolve().parent.parent / "datasets"))
CIFAR_ROOT = DATA_DIR / "full"
CLASSES = ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# The tutorial's settings.
BATCH_SIZE = 4
LR = 0.001
MOMENTUM = 0.9
EPOCHS = 2
# The default demonstration's share of the training set: the tutorial's full run
# (2 x 50,000 images, batch 4) takes minutes on a CPU; `--full` restores it.
QUICK_TRAIN_IMAGES = 10_000


class LeNet(nn.Module):
    """LeNet-5 for 3x32x32 colour images: two conv/pool stages, then 400 -> 120 -> 84 -> 10."""

    def __init__(self) -> None:
        super().__init__()
        # TODO(ch14.model): create the layers, with these names:
        #   conv1 = Conv2d(3, 6, 5), pool = MaxPool2d(2, 2) (used after both convs),
        #   conv2 = Conv2d(6, 16, 5), fc1 = Linear(?, 120), fc2 = Linear(120, 84), fc3 = Linear(84, 10).
        #   Work out fc1's input size from the shapes in the module docstring.
        #   (The tests find the layers by their shapes; main() looks at conv1, conv2, fc1, fc3 by name.)
        raise NotImplementedError("ch14.model: LeNet.__init__")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores for a batch of images.

        Args:
            x: float32 [B, 3, 32, 32].
        Returns:
            float32 [B, 10] logits (no softmax: nn.CrossEntropyLoss applies log-softmax itself).
        """
        # TODO(ch14.model): pool(relu(conv1)), pool(relu(conv2)), flatten each image to 400
        #   values (keep the batch dimension), relu(fc1), relu(fc2), then fc3 with no activation.
        raise NotImplementedError("ch14.model: LeNet.forward")


def train_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer, criterion: nn.Module,
                device: torch.device | str | None = None) -> float:
    """One pass over `loader`, one optimizer step per batch.

    Args:
        model: maps float32 [B, 3, 32, 32] to float32 [B, 10] logits.
        loader: an iterable of (images float32 [B, 3, 32, 32], labels int64 [B]) batches,
            e.g. a DataLoader or a list of tuples.
        optimizer: built on model.parameters().
        criterion: e.g. nn.CrossEntropyLoss(), returning the batch's mean loss.
        device: where to move every batch; None leaves batches where they are.
    Returns:
        The mean of the batches' losses (each taken before that batch's step), a Python float.
    """
    # TODO(ch14.model): put the model in training mode; for every batch: move it to `device`
    #   (when given), zero the gradients, forward, loss, backward, step; keep loss.item().
    raise NotImplementedError("ch14.model: train_epoch")


def save_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer,
                    epoch: int) -> None:
    """Save what is needed to resume training: a dict of state dicts, not pickled objects.

    Args:
        path: the file to write.
        model, optimizer: their state_dict()s are saved under "model" and "optimizer".
        epoch: the number of the last finished epoch, saved under "epoch" as an int.
    """
    # TODO(ch14.checkpoint): torch.save a dict {"model": model.state_dict(),
    #   "optimizer": optimizer.state_dict(), "epoch": int(epoch)} to path. Never save the module
    #   itself: a pickled module cannot be loaded with weights_only=True.
    raise NotImplementedError("ch14.checkpoint: save_checkpoint")


def load_checkpoint(path: str | os.PathLike, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None, map_location=None) -> int:
    """Restore a checkpoint written by save_checkpoint, in place.

    Args:
        path: the file to read.
        model: receives the saved parameters and buffers.
        optimizer: when given, receives the saved optimizer state (e.g. Adam's moments).
        map_location: passed to torch.load (e.g. "cpu" to load a GPU checkpoint on a CPU machine).
    Returns:
        The saved epoch, an int.
    """
    # TODO(ch14.checkpoint): torch.load the file, passing map_location on, with weights_only=True
    #   (it refuses pickled objects); load "model" into the model, "optimizer" into the
    #   optimizer when one is given; return the saved epoch.
    raise NotImplementedError("ch14.checkpoint: load_checkpoint")


def capture_activations(model: nn.Module, layer_names: list[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run the model once and return the outputs of the named layers.

    Args:
        model: any nn.Module.
        layer_names: names as in model.named_modules(), e.g. ["conv1", "fc2"] or
            ["features.0"] for layers inside an nn.Sequential.
        x: the model's input, e.g. float32 [B, 3, 32, 32] for LeNet.
    Returns:
        {name: that layer's output, detached from the graph} for every name in layer_names.
        A layer called twice (like LeNet's shared `pool`) keeps its last output.
        The hooks are removed before returning, also when the forward pass raises.
    """
    modules = dict(model.named_modules())
    missing = [name for name in layer_names if name not in modules]
    if missing:
        raise KeyError(f"no layer named {missing[0]!r}; the model has: {', '.join(n for n in modules if n)}")
    activations: dict[str, torch.Tensor] = {}
    # TODO(ch14.hooks): register a forward hook on modules[name] for every name; the hook
    #   (module, inputs, output) stores output.detach() in activations[name]. Run model(x),
    #   then remove every hook with its handle's remove() -- in a `finally:` so that a
    #   forward pass that raises leaves no hook behind.
    #   Careful: a hook defined in the loop must not look up `name` when it runs (late binding).
    raise NotImplementedError("ch14.hooks: capture_activations")
    return activations


def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Predicted classes, with dropout off and batch-norm statistics frozen for this call only.

    Args:
        model: maps x to float32 [B, C] scores.
        x: a batch of inputs, e.g. float32 [B, 3, 32, 32].
    Returns:
        int64 [B], the arg-max class of every sample. The model is left in the mode
        (train or eval) it was in before the call, and no autograd graph is built.
    """
    # TODO(ch14.predict): remember model.training, switch to model.eval(), compute the
    #   scores under torch.no_grad() and take the arg-max over the classes (dim=1);
    #   restore the previous mode with model.train(was_training), even if forward raises.
    raise NotImplementedError("ch14.predict: predict")


def accuracy(model: nn.Module, loader, device: torch.device | str | None = None) -> float:
    """Fraction of correct predictions over a loader of (images, labels) batches."""
    correct = total = 0
    for images, labels in loader:
        if device is not None:
            images, labels = images.to(device), labels.to(device)
        correct += int((predict(model, images) == labels).sum())
        total += labels.numel()
    return correct / max(total, 1)


def _workflow_on_one_batch() -> None:
    """The whole workflow on 16 random images: overfit, checkpoint, resume, look inside."""
    torch.manual_seed(0)
    images, labels = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    model = LeNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    criterion = nn.CrossEntropyLoss()
    for epoch in range(1, 101):
        loss = train_epoch(model, [(images, labels)], optimizer, criterion)
        if epoch in (1, 25, 50, 100):
            print(f"epoch {epoch:3d}  loss {loss:.4f}")
    print(f"training accuracy on the batch: {(predict(model, images) == labels).float().mean():.2f}")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lenet.pth"
        save_checkpoint(path, model, optimizer, epoch=100)
        restored = LeNet()
        restored_optimizer = torch.optim.Adam(restored.parameters(), lr=LR)
        epoch = load_checkpoint(path, restored, restored_optimizer, map_location="cpu")
    same = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), restored.state_dict().values()))
    print(f"checkpoint restored epoch {epoch}, identical weights: {same}")

    shapes = capture_activations(restored, ["conv1", "conv2", "fc1", "fc3"], images[:2])
    for name, act in shapes.items():
        print(f"  {name:6s} output {list(act.shape)}")


def _train_on_cifar10(device: torch.device, full: bool) -> None:
    import torchvision
    from torchvision import transforms

    transform = transforms.Compose([transforms.ToTensor(),
                                    transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    train_set = torchvision.datasets.CIFAR10(CIFAR_ROOT, train=True, download=False, transform=transform)
    if not full:
        train_set = torch.utils.data.Subset(train_set, range(QUICK_TRAIN_IMAGES))
    print(f"training on {len(train_set)} images for {EPOCHS} epochs"
          + ("" if full else " (`--full` for all 50,000)"))
    test_set = torchvision.datasets.CIFAR10(CIFAR_ROOT, train=False, download=False, transform=transform)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=BATCH_SIZE, shuffle=True, num_workers=2)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=256, shuffle=False, num_workers=2)

    torch.manual_seed(0)
    model = LeNet().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    criterion = nn.CrossEntropyLoss()
    checkpoint = Path(tempfile.gettempdir()) / "ch14_lenet_cifar10.pth"
    for epoch in range(1, EPOCHS + 1):
        loss = train_epoch(model, train_loader, optimizer, criterion, device)
        save_checkpoint(checkpoint, model, optimizer, epoch)
        print(f"epoch {epoch}  mean loss {loss:.3f}  test accuracy {accuracy(model, test_loader, device):.1%}"
              f"  (checkpoint: {checkpoint})")


def main() -> None:
    print("== the workflow on one random batch ==")
    _workflow_on_one_batch()
    print("\n== LeNet on CIFAR-10 ==")
    if not (CIFAR_ROOT / "cifar-10-batches-py").is_dir():
        print(f"CIFAR-10 is not in {CIFAR_ROOT}. Download it once with `make data` "
              "(needs the network), then run this file again.")
        return
    _train_on_cifar10(torch.device("cuda" if torch.cuda.is_available() else "cpu"), "--full" in sys.argv[1:])


if __name__ == "__main__":
    main()
