"""The course's chapters and graded tasks, as SYLLABUS.md lists them.

This is the one place that names chapters and tasks: the pytest plugin registers a
marker for every task from it (so a misspelt task fails collection), `grader check`
lists chapters from it, and the stub generator checks `TODO(task)` names against it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Chapter:
    number: str          # "05"
    module: str          # "ch05_linear_regression"
    title: str
    tasks: tuple[str, ...]  # short names: "forward" -> task id "ch05.forward"

    @property
    def marker(self) -> str:
        return f"ch{self.number}"

    @property
    def filename(self) -> str:
        return f"{self.module}.py"

    def task_ids(self) -> list[str]:
        return [f"{self.marker}.{t}" for t in self.tasks]


CHAPTERS: dict[str, Chapter] = {
    c.number: c
    for c in [
        Chapter("01", "ch01_tensors", "Tensors, views, broadcasting",
                ("view", "broadcast", "gather", "accuracy", "numpy", "inplace")),
        Chapter("02", "ch02_linear_model", "Linear model and exhaustive search",
                ("forward", "loss", "grid", "surface")),
        Chapter("03", "ch03_gradient_descent", "Gradient descent",
                ("cost", "gradient", "gd", "sgd")),
        Chapter("04", "ch04_backpropagation", "Backpropagation and autograd",
                ("autograd", "quadratic", "manual", "function")),
        Chapter("05", "ch05_linear_regression", "Linear regression with nn.Module",
                ("forward", "train", "two_layer", "dynamic")),
        Chapter("06", "ch06_logistic_regression", "Logistic regression",
                ("model", "bce", "train")),
        Chapter("07", "ch07_multiple_dimension_input", "Multiple-dimension input: diabetes",
                ("load", "model", "train", "accuracy")),
        Chapter("08", "ch08_dataset_dataloader", "Dataset, DataLoader and the Windows guard",
                ("dataset", "loader", "train", "guard")),
        Chapter("09", "ch09_softmax_classifier", "Softmax classifier on MNIST",
                ("softmax", "cross_entropy", "transform", "model", "train")),
        Chapter("10", "ch10_cnn_basics", "CNN basics and GPU migration",
                ("shapes", "model", "device")),
        Chapter("11", "ch11_cnn_advanced", "Inception and residual blocks",
                ("inception", "residual", "googlenet", "resnet")),
        Chapter("12", "ch12_rnn_basics", "RNN basics",
                ("cell", "one_hot", "unroll", "hello", "embedding")),
        Chapter("13", "ch13_rnn_classifier", "RNN classifier: names by language",
                ("encode", "batch", "model", "train")),
        Chapter("14", "ch14_lenet_cifar", "LeNet on CIFAR-10: a full workflow",
                ("model", "checkpoint", "hooks", "predict")),
    ]
}

ALL_TASKS: frozenset[str] = frozenset(t for c in CHAPTERS.values() for t in c.task_ids())


def normalise_chapter(text: str) -> str:
    """'5', '05', 'ch05', 'ch05_linear_regression' -> '05'; KeyError if unknown."""
    s = str(text).strip().lower()
    if s.startswith("ch"):
        s = s[2:]
    s = s.split("_", 1)[0]
    if s.isdigit():
        s = f"{int(s):02d}"
    if s not in CHAPTERS:
        raise KeyError(text)
    return s


def chapter_of_module(filename: str) -> Chapter | None:
    """The chapter whose module file is `filename` (e.g. 'ch05_linear_regression.py')."""
    for c in CHAPTERS.values():
        if filename == c.filename:
            return c
    return None
