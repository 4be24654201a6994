"""Chapter 13 probes: run beside the student's code, return plain data to the tests.

A probe is a function `name(impl, *args)`; `impl` is the student's chapter module. It may
build spies and callbacks (anything that has to run inside the student's process) and
returns numbers, strings, tensors, lists or dicts. It never holds an expected value: the
test compares. This file ships with the public tests.
"""
import torch
from torch import nn


# --------------------------------------------------------------------------- stand-in models
# Called like RNNClassifier, model(seq, lengths) -> [B, C] logits; every call is recorded.

class _Recorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.sizes, self.grad_enabled, self.training_seen = [], [], []

    def record(self, seq):
        self.sizes.append(seq.shape[0])
        self.grad_enabled.append(torch.is_grad_enabled())
        self.training_seen.append(self.training)


class _Tiny(_Recorder):
    """Sum of the embedded codes over the length, then Linear: 3 classes."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(128, 4)
        self.fc = nn.Linear(4, 3)

    def forward(self, seq, lengths):
        self.record(seq)
        return self.fc(self.embedding(seq).sum(1) / lengths[:, None].float())


class _MeanOfEmbeddings(_Recorder):
    """Mean of the embedded codes (padding masked out), then Linear: 3 classes."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(128, 4)
        self.fc = nn.Linear(4, 3)

    def forward(self, seq, lengths):
        self.record(seq)
        mask = (torch.arange(seq.shape[1])[None, :] < lengths[:, None]).float()
        mean = (self.embedding(seq) * mask[..., None]).sum(1) / lengths[:, None].float()
        return self.fc(mean)


class _FirstLetter(_Recorder):
    """Predicts class (first code % 3)."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, seq, lengths):
        self.record(seq)
        return nn.functional.one_hot(seq[:, 0] % 3, 3).float() + self.dummy


_STAND_INS = {"tiny": _Tiny, "mean_of_embeddings": _MeanOfEmbeddings, "first_letter": _FirstLetter}


def _stand_in(kind, state):
    model = _STAND_INS[kind]()
    if state is not None:
        model.load_state_dict(state)
    return model


def _record(model):
    return {"sizes": list(model.sizes), "grad_enabled": list(model.grad_enabled),
            "training": list(model.training_seen)}


# --------------------------------------------------------------------------- probes

def train_epoch(impl, stand_in, names, labels, optimizer_cls, optimizer_kwargs, *, state=None,
                eval_mode_before=False, evaluate=False, **kwargs):
    """impl.train_epoch(model, names, labels, optimizer, nn.CrossEntropyLoss(), **kwargs) on a
    stand-in model (started from `state`, put in eval mode first if asked), with
    optimizer_cls(model.parameters(), **optimizer_kwargs). With evaluate=True, then
    impl.evaluate(model, names, labels) on the trained model.
    Returns the return value(s), the model's state_dict afterwards and what it saw."""
    model = _stand_in(stand_in, state)
    if eval_mode_before:
        model.eval()
    optimizer = optimizer_cls(model.parameters(), **optimizer_kwargs)
    loss = impl.train_epoch(model, names, labels, optimizer, nn.CrossEntropyLoss(), **kwargs)
    out = {"loss": loss, "state": model.state_dict(), **_record(model)}
    if evaluate:
        out["accuracy"] = impl.evaluate(model, names, labels)
    return out


def evaluate(impl, stand_in, names, labels, *, state=None, **kwargs):
    """impl.evaluate(model, names, labels, **kwargs) on a stand-in model: its return value and
    what the model saw (grad mode and training mode at every call)."""
    model = _stand_in(stand_in, state)
    accuracy = impl.evaluate(model, names, labels, **kwargs)
    return {"accuracy": accuracy, **_record(model)}


def gradients(impl, model, *inputs):
    """model(*inputs).sum().backward() on the student's model: every parameter's .grad (or None)."""
    model(*inputs).sum().backward()
    return {name: p.grad for name, p in model.named_parameters()}


def train_epochs(impl, model, epochs, optimizer_cls, optimizer_kwargs, **kwargs):
    """One optimizer_cls(model.parameters(), **optimizer_kwargs) for the student's model, then
    impl.train_epoch(model, names, labels, optimizer, nn.CrossEntropyLoss(), **kwargs) for every
    (names, labels) in `epochs`. Returns the list of train_epoch's return values."""
    optimizer = optimizer_cls(model.parameters(), **optimizer_kwargs)
    criterion = nn.CrossEntropyLoss()
    # One intra-op thread, as every test process has: a GRU over short names runs many tiny
    # steps, and extra threads only add synchronisation (several times slower on a busy machine).
    # `grader grade` starts the student's process with one thread already; `grader check --split`
    # does not (yet).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return [impl.train_epoch(model, names, labels, optimizer, criterion, **kwargs)
                for names, labels in epochs]
    finally:
        torch.set_num_threads(threads)
