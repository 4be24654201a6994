"""Chapter 13 probes: run beside the student's code, return plain data to the tests.

A probe is a function `name(impl, *args)`; `impl` is the student's chapter module. It may
build spies and callbacks (anything that has to run inside the student's process) and
returns numbers, strings, tensors, lists or dicts. It never holds an expected value: the
test compares. This file ships with the public tests.

The train_epoch and evaluate probes can hand the student's train_epoch and evaluate the
test's own batches (`batches`, computed by the test) in place of the student's make_batch,
so that those two functions are graded on their own: a bug in make_batch counts in
ch13.batch only.

`meta_forward` runs the student's RNNClassifier on the `meta` device, a device without
values, as a stand-in for the GPU: it shows on the CPU where forward mixes devices.
"""
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence
from torch.overrides import TorchFunctionMode


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


class _TestBatches:
    """impl.make_batch replaced, for the duration of a probe, by a lookup of the batches the
    test computed: `batches` is a list of {"names": [...], "seq": [B, T], "lengths": [B],
    "order": [B]} (row j of seq is names[order[j]]). A call with other names falls back to the
    student's make_batch."""

    def __init__(self, impl, batches):
        self.impl, self.original = impl, getattr(impl, "make_batch", None)
        self.table = {tuple(b["names"]): b for b in batches or ()}

    def make_batch(self, names, labels):
        b = self.table.get(tuple(names))
        if b is None:
            return self.original(names, labels)
        labels = torch.as_tensor(labels, dtype=torch.long)
        return b["seq"].clone(), b["lengths"].clone(), labels[torch.as_tensor(b["order"], dtype=torch.long)]

    def __enter__(self):
        if self.table:
            self.impl.make_batch = self.make_batch
        return self

    def __exit__(self, *exc):
        if self.table:
            self.impl.make_batch = self.original


# --------------------------------------------------------------------------- probes

def train_epoch(impl, stand_in, names, labels, optimizer_cls, optimizer_kwargs, *, state=None,
                eval_mode_before=False, evaluate=False, batches=None, **kwargs):
    """impl.train_epoch(model, names, labels, optimizer, nn.CrossEntropyLoss(), **kwargs) on a
    stand-in model (started from `state`, put in eval mode first if asked), with
    optimizer_cls(model.parameters(), **optimizer_kwargs), make_batch answering with the
    test's `batches` (see _TestBatches). With evaluate=True, then impl.evaluate(model, names,
    labels) on the trained model. Returns the return value(s), the model's state_dict
    afterwards and what it saw."""
    model = _stand_in(stand_in, state)
    if eval_mode_before:
        model.eval()
    optimizer = optimizer_cls(model.parameters(), **optimizer_kwargs)
    with _TestBatches(impl, batches):
        loss = impl.train_epoch(model, names, labels, optimizer, nn.CrossEntropyLoss(), **kwargs)
        out = {"loss": loss, "state": model.state_dict(), **_record(model)}
        if evaluate:
            out["accuracy"] = impl.evaluate(model, names, labels)
    return out


def evaluate(impl, stand_in, names, labels, *, state=None, batches=None, **kwargs):
    """impl.evaluate(model, names, labels, **kwargs) on a stand-in model, make_batch answering
    with the test's `batches`: its return value and what the model saw (batch sizes, grad
    mode and training mode at every call)."""
    model = _stand_in(stand_in, state)
    with _TestBatches(impl, batches):
        accuracy = impl.evaluate(model, names, labels, **kwargs)
    return {"accuracy": accuracy, **_record(model)}


def layers(impl, model):
    """The qualified names of the model's nn.Embedding, nn.GRU and nn.Linear modules (found by
    type, whatever they are called and however they are nested), every GRU's settings, and
    the types of any other recurrent layer."""
    found = {"embedding": [], "gru": [], "linear": [], "gru_config": {}, "other_rnn": []}
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding):
            found["embedding"].append(name)
        elif isinstance(module, nn.GRU):
            found["gru"].append(name)
            found["gru_config"][name] = {k: getattr(module, k) for k in (
                "input_size", "hidden_size", "num_layers", "bias", "batch_first", "bidirectional")}
        elif isinstance(module, nn.RNNBase):
            found["other_rnn"].append(type(module).__name__)
        elif isinstance(module, nn.Linear):
            found["linear"].append(name)
    return found


def gradients(impl, model, *inputs):
    """model(*inputs).sum().backward() on the student's model: every parameter's .grad (or None)."""
    model(*inputs).sum().backward()
    return {name: p.grad for name, p in model.named_parameters()}


class _MetaLengths(TorchFunctionMode):
    """A meta tensor has a device and a shape but no values. While this mode is on, copying a
    meta integer vector of the batch's size to the CPU (lengths.cpu(), lengths.to("cpu"),
    lengths.tolist(), lengths.numpy()) gives the true lengths, as it would from a GPU; and the
    device of the lengths that reach pack_padded_sequence is recorded."""

    def __init__(self, lengths):
        super().__init__()
        self.lengths = lengths
        self.pack_lengths = []

    def _is_lengths(self, t):
        return (isinstance(t, torch.Tensor) and t.device.type == "meta" and t.dim() == 1
                and not t.is_floating_point() and not t.is_complex() and t.numel() == self.lengths.numel())

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name == "_pack_padded_sequence" and len(args) >= 2:
            given = args[1]
            self.pack_lengths.append(given.device.type if isinstance(given, torch.Tensor) else type(given).__name__)
            if self._is_lengths(given):  # carry on without values, to see the rest of forward
                args = (args[0], self.lengths, *args[2:])
        elif args and self._is_lengths(args[0]) and name in ("cpu", "to", "tolist", "numpy"):
            if name != "to" or _to_cpu(args[1:], kwargs):
                args = (self.lengths.to(args[0].dtype), *args[1:])
        return func(*args, **kwargs)


def _to_cpu(args, kwargs):
    try:
        device = torch._C._nn._parse_to(*args, **kwargs)[0]
    except Exception:  # noqa: BLE001 - e.g. .to(other_tensor)
        other = args[0] if args else kwargs.get("other")
        device = other.device if isinstance(other, torch.Tensor) else None
    return device is not None and torch.device(device).type == "cpu"


def meta_forward(impl, args, kwargs, seq, lengths):
    """impl.RNNClassifier(*args, **kwargs) moved to the meta device with model.to("meta"), then
    model(seq.to("meta"), lengths.to("meta")) -- as a model and its batch on a GPU would be.
    Returns the output's device and shape, or the error forward raised; every recurrent
    layer's call (the devices of its input and of the initial hidden state it was given);
    the devices of the lengths given to pack_padded_sequence."""
    model = impl.RNNClassifier(*args, **kwargs).to("meta")
    calls = []

    def spy(module, call_args, call_kwargs):
        given = call_args[0] if call_args else call_kwargs.get("input")
        hx = call_args[1] if len(call_args) > 1 else call_kwargs.get("hx")
        if isinstance(hx, (tuple, list)):
            hx = hx[0] if hx else None
        data = given.data if isinstance(given, PackedSequence) else given
        calls.append({"layer": type(module).__name__,
                      "input": data.device.type if isinstance(data, torch.Tensor) else None,
                      "hx": hx.device.type if isinstance(hx, torch.Tensor) else None})

    handles = [m.register_forward_pre_hook(spy, with_kwargs=True)
               for m in model.modules() if isinstance(m, nn.RNNBase)]
    mode = _MetaLengths(lengths.to(torch.int64).cpu())
    out = {"error": "", "error_type": "", "device": None, "shape": None}
    try:
        with mode:
            result = model(seq.to("meta"), lengths.to("meta"))
        out["device"] = result.device.type if isinstance(result, torch.Tensor) else None
        out["shape"] = list(result.shape) if isinstance(result, torch.Tensor) else None
    except Exception as exc:  # noqa: BLE001 - reported to the test
        out["error"], out["error_type"] = str(exc)[:300], type(exc).__name__
    finally:
        for h in handles:
            h.remove()
    return {**out, "rnn_calls": calls, "pack_lengths": list(mode.pack_lengths)}


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
