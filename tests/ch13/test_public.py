"""Chapter 13, public tests: encoding, batching, packing, both directions, devices, training.

The hidden tests check the same properties on other names, sizes and seeds, and train the
classifier on the whole data set.
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from grader.remote import type_name
from grader.testing import assert_close

TOL = {"rtol": 1e-5, "atol": 1e-6}     # float32 results compared with a value computed here


def _codes(name):
    return [ord(c) for c in name]


def _pad_sorted(names):
    """The test's own batch: sorted longest first (ties keep their order), zero-padded, and the
    permutation used: row j is names[order[j]]."""
    order = sorted(range(len(names)), key=lambda i: -len(names[i]))
    longest = len(names[order[0]])
    seq = torch.tensor([_codes(names[i]) + [0] * (longest - len(names[i])) for i in order])
    lengths = torch.tensor([len(names[i]) for i in order])
    return seq, lengths, order


def _close(a, b):
    return abs(float(a) - float(b)) <= 1e-6 + 1e-5 * abs(float(b))


# --------------------------------------------------------------------------- ch13.encode

def check_codes(impl, name):
    got = impl.name_to_codes(name)
    assert isinstance(got, list), f"name_to_codes returned {type_name(got)}, expected a list of ints"
    if got in ([ord(c) - ord("a") for c in name], [ord(c.lower()) - ord("a") for c in name]):
        raise AssertionError("name_to_codes gives positions in the alphabet: use the ASCII code ord(c), "
                             "the embedding has one row for each of the 128 ASCII codes")
    if name != name.lower() and got == _codes(name.lower()):
        raise AssertionError("name_to_codes lower-cases the name: keep the case, use ord(c) of every "
                             "character as it is (capitals tell languages apart too)")
    assert got == _codes(name), f"name_to_codes({name!r}) returned {got}, expected the ASCII codes {_codes(name)}"
    assert all(type(c) is int for c in got), "name_to_codes should return Python ints (ord(c))"


@pytest.mark.task("ch13.encode")
@pytest.mark.points(2)
def test_codes_of_a_name(impl):
    check_codes(impl, "Adsit")


@pytest.mark.task("ch13.encode")
@pytest.mark.points(1)
def test_codes_keep_case_spaces_and_punctuation(impl):
    for name in ["McKay", "D'Angelo", "de la Cruz"]:
        check_codes(impl, name)


# --------------------------------------------------------------------------- ch13.batch
# make_batch is checked against the student's own name_to_codes (the rows' codes, the names'
# lengths), so that a mistake in the encoding counts in ch13.encode only.

def _rows(impl, names, seq, lengths):
    """The names that the rows of seq hold (None for a row that is no name's codes)."""
    by_codes = {tuple(impl.name_to_codes(n)): n for n in dict.fromkeys(names)}
    return [by_codes.get(tuple(row[:n])) for row, n in zip(seq.tolist(), lengths.tolist())]


def check_sorted(impl, names):
    seq, lengths, _ = impl.make_batch(names, list(range(len(names))))
    for what, t in [("seq", seq), ("lengths", lengths)]:
        assert isinstance(t, torch.Tensor), f"make_batch's {what} is a {type_name(t)}, expected a tensor"
    got, given = lengths.tolist(), [len(impl.name_to_codes(n)) for n in names]
    want = sorted(given, reverse=True)
    if got == given and given != want:
        raise AssertionError("make_batch kept the names in their original order: sort them by length, "
                             "longest first (pack_padded_sequence expects that order)")
    if got == sorted(given) and got != want:
        raise AssertionError("make_batch sorted the names shortest first: sort longest first "
                             "(descending=True)")
    assert got == want, f"lengths are {got} for names of lengths {given}, expected {want}: sorted longest first"
    rows = _rows(impl, names, seq, lengths)
    assert sorted(map(str, rows)) == sorted(names), \
        (f"the rows of seq hold {rows}: row j should hold the codes of the j-th name in the sorted order "
         "(the same permutation as the lengths)")


def check_padding(impl, names):
    seq, lengths, _ = impl.make_batch(names, [0] * len(names))
    longest = max(len(impl.name_to_codes(n)) for n in names)
    assert tuple(seq.shape) == (len(names), longest), \
        f"seq has shape {list(seq.shape)}, expected [{len(names)}, {longest}]: one row per name, as long as the longest"
    pads = [v for row, n in zip(seq.tolist(), lengths.tolist()) for v in row[n:]]
    bad = [v for v in pads if v != 0]
    if bad:
        pad = bad[0]
        raise AssertionError(f"make_batch pads with {pad} ({repr(chr(pad)) if 32 <= pad < 127 else 'not 0'}): "
                             "pad with 0 after each name's codes (start from a tensor of zeros)")
    assert None not in _rows(impl, names, seq, lengths), \
        "some rows of seq do not start with a name's codes: write each name's codes at the start of its row"


def check_labels(impl, names, labels):
    seq, lengths, got = impl.make_batch(names, labels)
    assert torch.is_tensor(got) and got.dtype == torch.int64, \
        f"make_batch's labels should be an int64 tensor, got {type_name(got)} {getattr(got, 'dtype', '')}"
    given = torch.as_tensor(labels).tolist()
    if got.tolist() == given and lengths.tolist() != [len(impl.name_to_codes(n)) for n in names]:
        raise AssertionError("the labels were not reordered with the names: after sorting, labels[j] must "
                             "belong to row j; index the labels with the same permutation as the rows")
    rows = _rows(impl, names, seq, lengths)
    assert sorted(zip(map(str, rows), got.tolist())) == sorted(zip(names, given)), \
        (f"for rows {rows} the labels are {got.tolist()}: labels[j] must be the label of the name in row j "
         "(permute the labels exactly like the rows)")


@pytest.mark.task("ch13.batch")
@pytest.mark.points(2)
def test_batch_shapes_and_dtypes(impl):
    seq, lengths, labels = impl.make_batch(["Li", "Schmidt", "Rossi"], [4, 1, 2])
    for what, t, shape in [("seq", seq, (3, 7)), ("lengths", lengths, (3,)), ("labels", labels, (3,))]:
        assert isinstance(t, torch.Tensor), f"make_batch's {what} is a {type_name(t)}, expected a tensor"
        assert t.dtype == torch.int64, \
            f"make_batch's {what} is {t.dtype}, expected torch.int64 (a LongTensor)"
        assert tuple(t.shape) == shape, \
            (f"make_batch's {what} has shape {list(t.shape)}, expected {list(shape)} "
             "(3 names, the longest has 7 letters)")
    assert lengths.device.type == "cpu", "lengths must stay on the CPU (pack_padded_sequence needs that)"
    check_sorted(impl, ["Li", "Schmidt", "Rossi"])
    check_sorted(impl, ["Abe", "Li", "Kowalski", "Nowak"])


@pytest.mark.task("ch13.batch")
@pytest.mark.points(1)
def test_batch_is_padded_with_zeros(impl):
    check_padding(impl, ["Ito", "Schneider", "Li"])


@pytest.mark.task("ch13.batch")
@pytest.mark.points(2)
def test_labels_follow_their_names(impl):
    check_labels(impl, ["Li", "Schmidt", "Rossi"], [4, 1, 2])
    check_labels(impl, ["Abe", "Li", "Kowalski", "Nowak", "Ito"], torch.tensor([7, 8, 9, 10, 11]))


# --------------------------------------------------------------------------- ch13.model

def judge_layers(probes, model):
    """The student's layers, found by type (any names, any nesting), copied into the test from
    the student's state_dict: the embedding table, a GRU with the same settings, the linear layer's weights."""
    found = probes.layers(model)
    assert not found["other_rnn"], f"RNNClassifier uses {found['other_rnn'][0]}: the lecture's model is an nn.GRU"
    counts = {kind: len(found[key]) for kind, key in
              [("nn.Embedding", "embedding"), ("nn.GRU", "gru"), ("nn.Linear", "linear")]}
    assert all(n == 1 for n in counts.values()), \
        ("RNNClassifier should hold one nn.Embedding, one nn.GRU and one nn.Linear; found "
         + ", ".join(f"{n} {kind}" for kind, n in counts.items()))
    w = model.state_dict()
    emb, gru_name, lin = found["embedding"][0], found["gru"][0], found["linear"][0]
    cfg = found["gru_config"][gru_name]
    gru = nn.GRU(cfg["input_size"], cfg["hidden_size"], cfg["num_layers"], bias=cfg["bias"],
                 batch_first=cfg["batch_first"], bidirectional=cfg["bidirectional"])
    prefix = gru_name + "."
    gru.load_state_dict({k[len(prefix):]: v for k, v in w.items() if k.startswith(prefix)})
    return {"embedding": w[emb + ".weight"], "gru": gru, "fc_weight": w[lin + ".weight"],
            "fc_bias": w.get(lin + ".bias"), "config": cfg}


def check_fc_features(layers):
    cfg = layers["config"]
    want = cfg["hidden_size"] * (2 if cfg["bidirectional"] else 1)
    got = layers["fc_weight"].shape[1]
    if cfg["bidirectional"]:
        assert got == want, \
            (f"the linear layer takes {got} features, expected {want} = hidden_size x 2: a bidirectional GRU "
             "ends with one final hidden state per direction; use both directions, side by side")
    else:
        assert got == want, \
            f"the linear layer takes {got} features, expected hidden_size = {want} with bidirectional=False"


def reference_logits(layers, seq, lengths):
    """What forward should return for a padded, sorted batch, computed here from the student's
    weights -- and what some known mistakes return: {kind: [candidate logits]}."""
    gru = layers["gru"]
    x = F.embedding(seq, layers["embedding"])
    if not gru.batch_first:
        x = x.transpose(0, 1)
    with torch.no_grad():
        _, packed = gru(pack_padded_sequence(x, lengths, batch_first=gru.batch_first))
        _, padded = gru(x)

    def fc(h):
        return F.linear(h, layers["fc_weight"], layers["fc_bias"])

    def both(h, i, j):
        return [fc(torch.cat([h[i], h[j]], dim=1)), fc(torch.cat([h[j], h[i]], dim=1))]

    batch = seq.shape[0]
    if not gru.bidirectional:
        out = {"right": [fc(packed[-1])], "padding": [fc(padded[-1])]}
        if gru.num_layers > 1:
            out["first layer"] = [fc(packed[0])]
        return out
    out = {"right": both(packed, -1, -2), "padding": both(padded, -1, -2),
           "reshape": [fc(packed[-2:].reshape(batch, -1))]}
    if gru.num_layers > 1:
        out["first layer"] = both(packed, 0, 1)
    return out


PACKING = ("the GRU read the padding zeros after the shorter names: pack the embedded batch with "
           "pack_padded_sequence before the GRU, so that every name's final state is taken at its own end")
KNOWN_MISTAKES = [
    ("padding", PACKING),
    ("reshape", "forward's final states mix the names of the batch: reshaping the [2, B, H] final states "
                "straight to [B, 2H] puts other names' states in row j (right for one name, wrong in a batch); "
                "join the two directions' [B, H] states side by side along dim 1, or move the batch "
                "dimension first before the reshape"),
    ("first layer", "forward uses hidden[0] and hidden[1], the FIRST layer's final states: the last layer's "
                    "two directions are the last two entries of the GRU's final hidden states"),
]


def _matches(got, candidates):
    return any(got.shape == c.shape and torch.allclose(got, c, rtol=1e-4, atol=1e-5) for c in candidates)


def check_batch_logits(model, probes, names):
    """forward on a padded batch against the test's reference, naming a known mistake."""
    seq, lengths, _ = _pad_sorted(names)
    layers = judge_layers(probes, model)
    check_fc_features(layers)
    got = model(seq, lengths)
    assert isinstance(got, torch.Tensor), f"forward returned {type_name(got)}, expected a Tensor"
    want = reference_logits(layers, seq, lengths)
    if _matches(got, want["right"]):
        return
    for kind, message in KNOWN_MISTAKES:
        if _matches(got, want.get(kind, [])):
            raise AssertionError(message)
    assert_close(got, want["right"][0], f"the logits of the padded batch {names}",
                 hint="embedding, then pack_padded_sequence, the GRU, and the linear layer on the last layer's "
                      "final states of both directions, side by side")


def _device_error(message):
    text = message.lower()
    return "device" in text and ("same device" in text or "expected device" in text or "to be on" in text)


def check_devices(probes, args, kwargs, names):
    """forward with the model and its batch on the meta device: a stand-in for the GPU."""
    seq, lengths, _ = _pad_sorted(names)
    seen = probes.meta_forward(args, kwargs, seq, lengths)
    where = ("(checked on the CPU with the model, seq and lengths on PyTorch's 'meta' device, which stands "
             "in for a GPU)")
    for call in seen["rnn_calls"]:
        if call["hx"] not in (None, call["input"]):
            raise AssertionError(
                f"forward gives the GRU an initial hidden state on the {call['hx']} while the batch is on the "
                f"model's device {where}: on a GPU this fails. Create the initial hidden state on the "
                "input's device (device=seq.device), or leave it out: the GRU starts from zeros by default")
    if any(d != "cpu" for d in seen["pack_lengths"]):
        raise AssertionError(
            "forward gives pack_padded_sequence the lengths on the model's device: it wants the lengths on "
            f"the CPU whatever the data's device (lengths.cpu()) {where}; on a GPU this fails")
    if seen["error"] and _device_error(seen["error"]):
        raise AssertionError(f"forward mixes devices {where}: {seen['error']} -- create every tensor forward "
                             "needs on the input's device")
    if not seen["error"]:
        assert seen["device"] == "meta" and seen["shape"] == [len(names), args[2]], \
            (f"on the meta device forward returned {seen['shape']} on {seen['device']}, expected "
             f"[{len(names)}, {args[2]}] logits on the model's device")


@pytest.mark.task("ch13.model")
@pytest.mark.points(1)
def test_classifier_output_shape(impl):
    model = impl.RNNClassifier(128, 8, 5, n_layers=2)
    seq = torch.tensor([[83, 99, 104, 109], [76, 105, 0, 0], [79, 0, 0, 0]])
    out = model(seq, torch.tensor([4, 2, 1]))
    assert isinstance(out, torch.Tensor), f"forward returned {type_name(out)}, expected a Tensor"
    assert out.shape == (3, 5), \
        f"forward returned shape {list(out.shape)}, expected [3, 5]: one score per class"


def check_layers(impl, probes, vocab, hidden, classes, n_layers):
    model = impl.RNNClassifier(vocab, hidden, classes, n_layers=n_layers)
    layers = judge_layers(probes, model)
    assert tuple(layers["embedding"].shape) == (vocab, hidden), \
        (f"the embedding's table is {list(layers['embedding'].shape)}, expected [{vocab}, {hidden}]: "
         "nn.Embedding(input_size, hidden_size)")
    cfg = layers["config"]
    assert (cfg["input_size"], cfg["hidden_size"], cfg["num_layers"], cfg["bidirectional"]) == \
        (hidden, hidden, n_layers, True), \
        (f"the GRU is GRU({cfg['input_size']}, {cfg['hidden_size']}, num_layers={cfg['num_layers']}, "
         f"bidirectional={cfg['bidirectional']}), expected GRU({hidden}, {hidden}, num_layers={n_layers}, "
         "bidirectional=True)")
    check_fc_features(layers)
    assert layers["fc_weight"].shape[0] == classes, \
        f"the linear layer gives {layers['fc_weight'].shape[0]} scores, expected {classes} (output_size)"
    one_way = judge_layers(probes, impl.RNNClassifier(vocab, hidden, classes, bidirectional=False))
    assert not one_way["config"]["bidirectional"], "with bidirectional=False the GRU should read one way"
    check_fc_features(one_way)


@pytest.mark.task("ch13.model")
@pytest.mark.points(1)
def test_classifier_layers(impl, probes):
    check_layers(impl, probes, 128, 12, 7, 2)


@pytest.mark.task("ch13.model")
@pytest.mark.points(3)
def test_padded_batch_matches_the_reference(impl, probes):
    # the expected logits are computed here from the model's own weights (judge_layers)
    check_batch_logits(impl.RNNClassifier(128, 8, 5, n_layers=2), probes, ["Li", "Schmidt", "Abe", "Rossi"])
    check_batch_logits(impl.RNNClassifier(128, 6, 3, n_layers=1, bidirectional=False), probes,
                       ["Ito", "Nowak", "Li"])


@pytest.mark.task("ch13.model")
@pytest.mark.points(2)
def test_forward_stays_on_the_models_device(probes):
    check_devices(probes, (128, 8, 5), {"n_layers": 2}, ["Li", "Schmidt", "Abe"])


# --------------------------------------------------------------------------- ch13.train
# train_epoch and evaluate run on small stand-in models (probes.py), with make_batch answering
# with the test's own batches (`batches`), so that they are graded on their own.

def batches_of(names, *batch_sizes):
    """The batches of names[0:b], names[b:2b], ... for every b, as the test computes them."""
    out = []
    for b in batch_sizes:
        for start in range(0, len(names), b):
            chunk = list(names[start:start + b])
            seq, lengths, order = _pad_sorted(chunk)
            out.append({"names": chunk, "seq": seq, "lengths": lengths, "order": order})
    return out


class MeanOfEmbeddings(nn.Module):
    """The test's copy of the "mean_of_embeddings" stand-in (probes.py): mean of the embedded
    codes, then Linear. The student's train_epoch gets the same model, started from these weights."""

    def __init__(self, seed=3):
        super().__init__()
        torch.manual_seed(seed)
        self.embedding = nn.Embedding(128, 4)
        self.fc = nn.Linear(4, 3)

    def forward(self, seq, lengths):
        mask = (torch.arange(seq.shape[1])[None, :] < lengths[:, None]).float()
        mean = (self.embedding(seq) * mask[..., None]).sum(1) / lengths[:, None].float()
        return self.fc(mean)


def reference_epoch(names, labels, batch_size, seed, *, zero_grad=True, sorted_labels=True):
    model = MeanOfEmbeddings(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    losses = []
    for start in range(0, len(names), batch_size):
        seq, lengths, order = _pad_sorted(names[start:start + batch_size])
        target = labels[start:start + batch_size]
        loss = F.cross_entropy(model(seq, lengths), target[order] if sorted_labels else target)
        if zero_grad:
            optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return model, losses


def _same_weights(state, model):
    want = model.state_dict()
    return set(state) == set(want) and all(torch.allclose(state[k], want[k], rtol=1e-4, atol=1e-5) for k in want)


def check_train_epoch(probes, names, labels, batch_size, seed):
    run = probes.train_epoch("mean_of_embeddings", names, labels, torch.optim.SGD, {"lr": 0.5, "momentum": 0.9},
                             state=MeanOfEmbeddings(seed).state_dict(), batch_size=batch_size,
                             batches=batches_of(names, batch_size))
    reference, losses = reference_epoch(names, labels, batch_size, seed)
    if not _same_weights(run["state"], reference):
        if _same_weights(run["state"], reference_epoch(names, labels, batch_size, seed, zero_grad=False)[0]):
            raise AssertionError("the gradients pile up across batches: call optimizer.zero_grad() "
                                 "for every batch, before loss.backward()")
        if _same_weights(run["state"], reference_epoch(names, labels, batch_size, seed, sorted_labels=False)[0]):
            raise AssertionError("train_epoch computed the loss against the labels in their original order, but "
                                 "make_batch sorted the names: use the labels make_batch returns")
        chunks = ", ".join(f"names[{s}:{min(s + batch_size, len(names))}]" for s in range(0, len(names), batch_size))
        raise AssertionError(f"after one epoch the weights differ from the loop over {chunks}: make_batch, "
                             "forward, loss against the labels make_batch returned, zero_grad, backward, step")
    got = run["loss"]
    assert isinstance(got, float), f"train_epoch returned {type_name(got)}, expected a Python float"
    assert_close(got, sum(losses) / len(losses), "train_epoch's return value (the mean of the batch losses)",
                 rtol=1e-4)


def first_letter(names):
    """The "first_letter" stand-in's predictions (probes.py): class (first code % 3)."""
    return [ord(n[0]) % 3 for n in names]


def check_evaluate(probes, names, labels, batch_size=None):
    """evaluate on the "first_letter" stand-in, whose predictions are known in advance."""
    kwargs = {} if batch_size is None else {"batch_size": batch_size}
    size = batch_size or len(names)
    seen = probes.evaluate("first_letter", names, labels, batches=batches_of(names, size), **kwargs)
    acc = seen["accuracy"]
    pred, labels = first_letter(names), list(labels)
    right = sum(p == y for p, y in zip(pred, labels)) / len(names)
    unsorted, accuracies = 0, []
    for start in range(0, len(names), size):
        chunk, target = names[start:start + size], labels[start:start + size]
        order = _pad_sorted(chunk)[2]
        unsorted += sum(first_letter([chunk[i]])[0] == y for i, y in zip(order, target))
        accuracies.append(sum(p == y for p, y in zip(first_letter(chunk), target)) / len(chunk))
    call = f"evaluate(batch_size={batch_size})" if batch_size else "evaluate"
    assert isinstance(acc, (float, int)), f"{call} returned {type_name(acc)}, expected a float"
    if _close(acc, right):
        return
    if _close(acc, unsorted / len(names)):
        raise AssertionError(f"{call} compared the predictions with the labels in the original order, but "
                             "make_batch sorted the names: compare with the labels make_batch returned")
    if _close(acc, sum(accuracies) / len(accuracies)):
        raise AssertionError(f"{call} averaged the batches' accuracies, but the last batch is smaller "
                             f"(batches of {[len(names[s:s + size]) for s in range(0, len(names), size)]}): "
                             "count the correct names over all batches and divide by the number of names")
    raise AssertionError(f"{call} returned {acc!r} with {round(right * len(names))} of {len(names)} names "
                         f"right, expected {right:.6g}")


@pytest.mark.task("ch13.train")
@pytest.mark.points(1)
def test_train_and_evaluate_return_floats(probes):
    # a small stand-in called like RNNClassifier, model(seq, lengths) -> [B, 3] logits (probes.py)
    names, labels = ["Abe", "Li", "Rossi", "Nowak"], torch.tensor([0, 1, 2, 1])
    run = probes.train_epoch("tiny", names, labels, torch.optim.Adam, {"lr": 0.01}, batch_size=2, evaluate=True,
                             batches=batches_of(names, 2, len(names)))
    loss = run["loss"]
    assert isinstance(loss, float), f"train_epoch returned {type_name(loss)}, expected a Python float"
    acc = run["accuracy"]
    assert isinstance(acc, float) and 0.0 <= acc <= 1.0, \
        f"evaluate returned {acc!r}, expected the accuracy as a float in [0, 1]"


@pytest.mark.task("ch13.train")
@pytest.mark.points(2)
def test_train_epoch_matches_the_loop(probes):
    names = ["Li", "Schmidt", "Abe", "Rossi", "Nowak", "Kim", "Dubois"]
    check_train_epoch(probes, names, torch.tensor([0, 1, 2, 0, 1, 2, 0]), 3, seed=3)


@pytest.mark.task("ch13.train")
@pytest.mark.points(1)
def test_train_epoch_batches_and_mode(probes):
    # the stand-in in eval mode, recording the batch size and training mode of every call
    names = ["Li", "Schmidt", "Abe", "Rossi", "Nowak", "Kim", "Dubois"]
    run = probes.train_epoch("mean_of_embeddings", names, [0] * 7, torch.optim.SGD, {"lr": 0.1},
                             eval_mode_before=True, batch_size=3, batches=batches_of(names, 3))
    assert run["sizes"] == [3, 3, 1], \
        f"with 7 names and batch_size=3 the model saw batches of {run['sizes']}, expected [3, 3, 1]"
    assert all(run["training"]), "train_epoch should put the model in training mode: model.train()"


@pytest.mark.task("ch13.train")
@pytest.mark.points(2)
def test_evaluate_counts_every_name(probes):
    # "first_letter" (probes.py) predicts class (first code % 3), so the right accuracy is known in advance
    names = ["Ab", "Bcdef", "Cde", "Dcdefgh", "Efgh"]
    check_evaluate(probes, names, first_letter(names))             # always right: 1.0
    check_evaluate(probes, names, first_letter(names), batch_size=2)
    check_evaluate(probes, names, [0, 0, 0, 2, 2])                  # 2 of 5 right
    check_evaluate(probes, names, [0, 0, 0, 2, 2], batch_size=2)


@pytest.mark.task("ch13.train")
@pytest.mark.points(1)
def test_evaluate_uses_eval_mode_and_no_grad(probes):
    names = ["Ab", "Bcdef", "Cd"]
    seen = probes.evaluate("first_letter", names, [2, 0, 1], batches=batches_of(names, 3))
    assert seen["grad_enabled"] and not any(seen["grad_enabled"]), \
        "evaluate ran the model with gradient tracking on: wrap the loop in `with torch.no_grad():`"
    assert not any(seen["training"]), "evaluate should put the model in eval mode: model.eval()"
