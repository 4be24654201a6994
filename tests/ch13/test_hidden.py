"""Chapter 13, hidden tests: encoding, batching, packing, both directions, training and accuracy."""
import csv
import gzip

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grader.remote import is_instance, type_name
from grader.testing import assert_close

NAMES = ["Kowalczyk", "Li", "Rossi", "Schmidt", "Abe", "Rossa", "O'Neil", "van Dijk"]


def _codes(name):
    return [ord(c) for c in name]


def _pad_sorted(names):
    """The test's own batch: sorted longest first, zero-padded, with the permutation used."""
    order = sorted(range(len(names)), key=lambda i: -len(names[i]))
    longest = len(names[order[0]])
    seq = torch.tensor([_codes(names[i]) + [0] * (longest - len(names[i])) for i in order])
    lengths = torch.tensor([len(names[i]) for i in order])
    return seq, lengths, order


# --------------------------------------------------------------------------- ch13.encode

@pytest.mark.task("ch13.encode")
@pytest.mark.points(2)
def test_codes_are_ascii(impl):
    for name in ["Nakamura", "O'Neil", "van der Heyden", "Smith-Jones", "Zz"]:
        got = impl.name_to_codes(name)
        want = _codes(name)
        if got == [ord(c) - ord("a") for c in name] or got == [ord(c.lower()) - ord("a") for c in name]:
            raise AssertionError("name_to_codes gives positions in the alphabet: use the ASCII code ord(c), "
                                 "the embedding has one row for each of the 128 ASCII codes")
        if got == _codes(name.lower()) and name != name.lower():
            raise AssertionError("name_to_codes lower-cases the name: keep the case, use ord(c) of every "
                                 "character as it is (capitals tell languages apart too)")
        assert list(got) == want, f"name_to_codes({name!r}) returned {got}, expected the ASCII codes {want}"
        assert all(type(c) is int for c in got), "name_to_codes should return Python ints (ord(c))"


# --------------------------------------------------------------------------- ch13.batch

@pytest.mark.task("ch13.batch")
@pytest.mark.points(2)
def test_batch_is_sorted_longest_first(impl):
    names = ["Li", "Schmidt", "Abe", "Rossi", "Kowalczyk"]
    seq, lengths, _ = impl.make_batch(names, list(range(5)))
    got = lengths.tolist()
    if got == [2, 7, 3, 5, 9]:
        raise AssertionError("make_batch kept the names in their original order: sort them by length, "
                             "longest first (pack_padded_sequence expects that order)")
    if got == [2, 3, 5, 7, 9]:
        raise AssertionError("make_batch sorted the names shortest first: sort longest first, "
                             "lengths.sort(descending=True)")
    assert got == [9, 7, 5, 3, 2], f"lengths are {got}, expected [9, 7, 5, 3, 2]: sorted longest first"
    rows = ["".join(chr(c) for c in row[:n]) for row, n in zip(seq.tolist(), got)]
    assert rows == ["Kowalczyk", "Schmidt", "Rossi", "Abe", "Li"], \
        f"the rows of seq spell {rows}: row j should hold the j-th name in the sorted order"


@pytest.mark.task("ch13.batch")
@pytest.mark.points(2)
def test_batch_is_padded_with_zeros(impl):
    names = ["Li", "Schmidt", "Abe"]
    seq, lengths, _ = impl.make_batch(names, [0, 1, 2])
    want = torch.tensor([_codes("Schmidt"), _codes("Abe") + [0] * 4, _codes("Li") + [0] * 5])
    if seq.shape == want.shape and torch.equal(seq[:, :2], want[:, :2]) and not torch.equal(seq, want):
        pad = seq[2, -1].item()
        if pad != 0:
            raise AssertionError(f"make_batch pads with {pad} ({chr(pad) if 0 < pad < 128 else pad!r}): "
                                 "pad with 0 after each name's codes (a zero tensor to start from)")
    assert seq.shape == want.shape and torch.equal(seq, want), \
        f"seq is {seq.tolist()}, expected {want.tolist()}: codes first, then zeros up to the longest name"


@pytest.mark.task("ch13.batch")
@pytest.mark.points(3)
def test_labels_follow_their_names(impl):
    names = ["Li", "Schmidt", "Abe", "Rossi", "Kowalczyk"]
    labels = torch.tensor([10, 11, 12, 13, 14])
    seq, lengths, got = impl.make_batch(names, labels)
    assert torch.is_tensor(got) and got.dtype == torch.int64, "make_batch's labels should be an int64 tensor"
    if got.tolist() == labels.tolist() and lengths.tolist() != [2, 7, 3, 5, 9]:
        raise AssertionError("the labels were not reordered with the names: after sorting, labels[j] must "
                             "belong to row j; index the labels with the same permutation as the rows")
    rows = ["".join(chr(c) for c in row[:n]) for row, n in zip(seq.tolist(), lengths.tolist())]
    want = [int(labels[names.index(r)]) for r in rows]
    assert got.tolist() == want, f"for rows {rows} the labels are {got.tolist()}, expected {want}"

    # many names of equal length: each row must keep its own label, whatever the order of ties
    many = NAMES * 3
    tags = list(range(len(many)))
    seq, lengths, got = impl.make_batch(many, tags)
    rows = ["".join(chr(c) for c in row[:n]) for row, n in zip(seq.tolist(), lengths.tolist())]
    assert sorted(zip(rows, got.tolist())) == sorted(zip(many, tags)), \
        "some rows carry another name's label: permute the labels exactly like the rows"


@pytest.mark.task("ch13.batch")
@pytest.mark.points(1)
def test_batch_accepts_a_list_of_labels(impl):
    seq, lengths, labels = impl.make_batch(["Abe", "Nowak"], [3, 1])
    assert labels.tolist() == [1, 3], f"labels are {labels.tolist()}, expected [1, 3] (Nowak first)"
    assert lengths.device.type == "cpu", "lengths must stay on the CPU (pack_padded_sequence needs that)"


# --------------------------------------------------------------------------- ch13.model

def _judge_layers(model):
    """Copies of the student's layers in the test, built from its state_dict and the GRU's settings."""
    w = model.state_dict()
    g = model.gru
    gru = nn.GRU(g.input_size, g.hidden_size, g.num_layers, bias=g.bias, batch_first=g.batch_first,
                 bidirectional=g.bidirectional)
    gru.load_state_dict({k[len("gru."):]: v for k, v in w.items() if k.startswith("gru.")})
    return w, gru


def _reference_logits(layers, name, *, last_layer=True):
    """The student's layers applied to one unpadded name (no packing needed), both concat orders."""
    w, gru = layers
    codes = torch.tensor([_codes(name)])
    emb = F.embedding(codes, w["embedding.weight"])
    if not gru.batch_first:
        emb = emb.transpose(0, 1)
    with torch.no_grad():
        _, hidden = gru(emb)

    def fc(h):
        return F.linear(h, w["fc.weight"], w.get("fc.bias"))

    if not gru.bidirectional:
        return [fc(hidden[-1])]
    a, b = (hidden[-1], hidden[-2]) if last_layer else (hidden[0], hidden[1])
    return [fc(torch.cat([a, b], dim=1)), fc(torch.cat([b, a], dim=1))]


@pytest.mark.task("ch13.model")
@pytest.mark.points(2)
def test_classifier_layers(impl):
    model = impl.RNNClassifier(128, 12, 7, n_layers=2)
    missing = [n for n in ("embedding", "gru", "fc") if not hasattr(model, n)]
    assert not missing, \
        f"RNNClassifier has no layer named {', '.join(missing)}: use the names given in the TODO"
    assert is_instance(model.embedding, nn.Embedding) and tuple(model.embedding.weight.shape) == (128, 12), \
        "embedding should be nn.Embedding(input_size, hidden_size) = nn.Embedding(128, 12)"
    gru = model.gru
    assert is_instance(gru, nn.GRU), f"gru should be an nn.GRU, got {type_name(gru)}"
    assert (gru.input_size, gru.hidden_size, gru.num_layers, gru.bidirectional) == (12, 12, 2, True), \
        (f"gru is GRU({gru.input_size}, {gru.hidden_size}, num_layers={gru.num_layers}, "
         f"bidirectional={gru.bidirectional}), expected GRU(12, 12, num_layers=2, bidirectional=True)")
    assert model.fc.in_features == 24, \
        (f"fc takes {model.fc.in_features} features, expected 24 = hidden_size x 2: a bidirectional GRU ends "
         "with one final hidden state per direction (hidden[-1] and hidden[-2]); use both directions, "
         "concatenated")
    one_way = impl.RNNClassifier(128, 12, 7, bidirectional=False)
    assert not one_way.gru.bidirectional and one_way.fc.in_features == 12, \
        "with bidirectional=False the GRU reads one way and fc takes hidden_size features"


@pytest.mark.task("ch13.model")
@pytest.mark.points(3)
def test_padded_batch_equals_names_one_at_a_time(impl):
    model = impl.RNNClassifier(128, 16, 5, n_layers=2)
    seq, lengths, order = _pad_sorted(NAMES)
    batch = model(seq, lengths)
    single = torch.cat([model(torch.tensor([_codes(NAMES[i])]), torch.tensor([len(NAMES[i])]))
                        for i in order])
    assert_close(batch, single, "the logits of a padded batch compared with the same names one at a time",
                 hint="the GRU read the padding zeros after the shorter names: pack the embedded batch with "
                      "pack_padded_sequence(embedded, lengths.cpu(), batch_first=True) before the GRU")


@pytest.mark.task("ch13.model")
@pytest.mark.points(3)
def test_uses_both_directions_of_the_last_layer(impl):
    model = impl.RNNClassifier(128, 10, 4, n_layers=2)
    layers = _judge_layers(model)
    for name in ["Schmidt", "Abe"]:
        got = model(torch.tensor([_codes(name)]), torch.tensor([len(name)]))
        wants = _reference_logits(layers, name)
        if any(torch.allclose(got, w, atol=1e-5) for w in wants):
            continue
        first_layer = _reference_logits(layers, name, last_layer=False)
        if any(torch.allclose(got, w, atol=1e-5) for w in first_layer):
            raise AssertionError("forward uses hidden[0] and hidden[1], the FIRST layer's final states: "
                                 "with n_layers=2 the last layer's two directions are hidden[-1] and "
                                 "hidden[-2]")
        assert_close(got, wants[0], f"the logits for {name!r}",
                     hint="fc(torch.cat([hidden[-1], hidden[-2]], dim=1)) with hidden the GRU's final "
                          "hidden states (its second return value)")


@pytest.mark.task("ch13.model")
@pytest.mark.points(1)
def test_one_direction(impl):
    model = impl.RNNClassifier(128, 10, 4, n_layers=1, bidirectional=False)
    got = model(torch.tensor([_codes("Nowak")]), torch.tensor([5]))
    want = _reference_logits(_judge_layers(model), "Nowak")[0]
    assert_close(got, want, "the logits of a one-directional classifier",
                 hint="with bidirectional=False use hidden[-1] alone")


@pytest.mark.task("ch13.model")
@pytest.mark.points(1)
def test_gradients_reach_every_layer(impl, probes):
    model = impl.RNNClassifier(128, 8, 3, n_layers=2)
    seq, lengths, _ = _pad_sorted(NAMES)
    grads = probes.gradients(model, seq, lengths)  # model(seq, lengths).sum().backward(), then every .grad
    dead = [n for n, g in grads.items() if g is None or not bool(g.abs().sum() > 0)]
    assert not dead, (f"no gradient reaches {dead[:3]}: every layer (embedding, both GRU directions of every "
                      "layer, fc) should take part in the output")


@pytest.mark.gpu
@pytest.mark.task("ch13.model")
@pytest.mark.points(1)
def test_cuda_batch_with_lengths_on_the_gpu(impl):
    model = impl.RNNClassifier(128, 8, 3).cuda()
    seq, lengths, _ = _pad_sorted(NAMES)
    out = model(seq.cuda(), lengths.cuda())
    assert out.device.type == "cuda" and out.shape == (len(NAMES), 3), \
        "forward on the GPU should return [B, 3] logits on the GPU"
    assert_close(out.cpu(), model.cpu()(seq, lengths), "the logits on the GPU compared with the CPU",
                 rtol=1e-3, atol=1e-4, hint="pack_padded_sequence needs the lengths on the CPU: lengths.cpu()")


# --------------------------------------------------------------------------- ch13.train

class _MeanOfEmbeddings(nn.Module):
    """A small deterministic stand-in for RNNClassifier: mean of the embedded codes, then Linear.
    The test's reference; the student's train_epoch gets the same model from probes.py
    ("mean_of_embeddings"), started from this one's weights."""

    def __init__(self, n_classes=3):
        super().__init__()
        torch.manual_seed(3)
        self.embedding = nn.Embedding(128, 4)
        self.fc = nn.Linear(4, n_classes)

    def forward(self, seq, lengths):
        mask = (torch.arange(seq.shape[1])[None, :] < lengths[:, None]).float()
        mean = (self.embedding(seq) * mask[..., None]).sum(1) / lengths[:, None].float()
        return self.fc(mean)


def _reference_epoch(names, labels, batch_size, *, zero_grad=True):
    model = _MeanOfEmbeddings()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    losses = []
    for start in range(0, len(names), batch_size):
        chunk = names[start:start + batch_size]
        seq, lengths, order = _pad_sorted(chunk)
        target = labels[start:start + batch_size][order]
        loss = nn.functional.cross_entropy(model(seq, lengths), target)
        if zero_grad:
            optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return model, losses


def _same_weights(state, model):
    want = model.state_dict()
    return set(state) == set(want) and all(torch.allclose(state[k], want[k], atol=1e-5) for k in want)


@pytest.mark.task("ch13.train")
@pytest.mark.points(3)
def test_train_epoch_matches_the_loop(probes):
    names = NAMES + ["Nowak", "Dubois"]
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    run = probes.train_epoch("mean_of_embeddings", names, labels, torch.optim.SGD, {"lr": 0.5, "momentum": 0.9},
                             state=_MeanOfEmbeddings().state_dict(), batch_size=4)
    got = run["loss"]
    reference, losses = _reference_epoch(names, labels, 4)
    same = _same_weights(run["state"], reference)
    if not same:
        wrong, _ = _reference_epoch(names, labels, 4, zero_grad=False)
        if _same_weights(run["state"], wrong):
            raise AssertionError("the gradients pile up across batches: call optimizer.zero_grad() "
                                 "for every batch, before loss.backward()")
    assert same, ("after one epoch the weights differ from the loop over names[0:4], names[4:8], "
                  "names[8:10]: make_batch, forward, loss against the labels make_batch returned, "
                  "zero_grad, backward, step")
    assert isinstance(got, float), f"train_epoch returned {type_name(got)}, expected a Python float"
    assert_close(got, sum(losses) / len(losses), "train_epoch's return value (the mean of the batch losses)",
                 rtol=1e-4)


@pytest.mark.task("ch13.train")
@pytest.mark.points(1)
def test_train_epoch_batches_and_mode(probes):
    # the stand-in in eval mode, recording the batch size and training mode of every call
    run = probes.train_epoch("mean_of_embeddings", NAMES + ["Nowak", "Dubois"], [0] * 10, torch.optim.SGD,
                             {"lr": 0.1}, eval_mode_before=True, batch_size=4)
    assert run["sizes"] == [4, 4, 2], \
        f"with 10 names and batch_size=4 the model saw batches of {run['sizes']}, expected [4, 4, 2]"
    assert all(run["training"]), "train_epoch should put the model in training mode: model.train()"


@pytest.mark.task("ch13.train")
@pytest.mark.points(3)
def test_evaluate_compares_with_the_sorted_labels(probes):
    # "first_letter" (probes.py) predicts class (first code % 3), so the right accuracy is known in advance
    names = ["Ab", "Bcdef", "Cde", "Dcdefgh", "Efgh"]  # first letters' codes % 3: 2, 0, 1, 2, 0
    labels = torch.tensor([2, 0, 1, 2, 0])
    for kwargs in ({}, {"batch_size": 2}):
        acc = probes.evaluate("first_letter", names, labels, **kwargs)["accuracy"]
        if abs(acc - 1.0) > 1e-9 and abs(acc - (0.4 if not kwargs else 0.2)) < 1e-9:
            raise AssertionError("evaluate compared the predictions with the labels in the original "
                                 "order, but make_batch sorted the names: compare with the labels "
                                 "make_batch returned")
        assert abs(acc - 1.0) < 1e-9, \
            (f"evaluate{'(batch_size=2)' if kwargs else ''} returned {acc!r} for a model that is "
             "always right, expected 1.0")
    half = torch.tensor([2, 1, 1, 0, 0])  # rows 1 and 3 wrong
    acc = probes.evaluate("first_letter", names, half)["accuracy"]
    assert abs(acc - 0.6) < 1e-9, f"evaluate returned {acc!r} with 3 of 5 names right, expected 0.6"


@pytest.mark.task("ch13.train")
@pytest.mark.points(1)
def test_evaluate_uses_eval_mode_and_no_grad(probes):
    seen = probes.evaluate("first_letter", ["Ab", "Bcdef"], [2, 0])
    assert seen["grad_enabled"] and not any(seen["grad_enabled"]), \
        "evaluate ran the model with gradient tracking on: wrap the loop in `with torch.no_grad():`"
    assert not any(seen["training"]), "evaluate should put the model in eval mode: model.eval()"


def _read(path, languages=None):
    with gzip.open(path, "rt", newline="") as f:
        rows = list(csv.reader(f))
    languages = languages or sorted({lang for _, lang in rows})
    return [n for n, _ in rows], torch.tensor([languages.index(lang) for _, lang in rows]), languages


@pytest.mark.task("ch13.train")
@pytest.mark.points(4)
def test_classifier_learns_the_languages(impl, probes, datasets_dir):
    train_names, train_labels, languages = _read(datasets_dir / "names_train.csv.gz")
    test_names, test_labels, _ = _read(datasets_dir / "names_test.csv.gz", languages)
    majority = test_labels.bincount().max().item() / len(test_labels)
    model = impl.RNNClassifier(128, 48, len(languages), n_layers=1)
    shuffle = torch.Generator().manual_seed(0)
    epochs = []
    for _ in range(3):
        order = torch.randperm(len(train_names), generator=shuffle)
        epochs.append(([train_names[i] for i in order], train_labels[order]))
    # one Adam(model.parameters(), lr=0.005), then train_epoch(..., nn.CrossEntropyLoss(), batch_size=128)
    # over each epoch's shuffled names
    probes.train_epochs(model, epochs, torch.optim.Adam, {"lr": 0.005}, batch_size=128)
    acc = impl.evaluate(model, test_names, test_labels)
    assert acc >= 0.60, (f"after 3 epochs the classifier gets {acc:.1%} of the test names right (always "
                         f"guessing the commonest language: {majority:.1%}); a correct one reaches 60%")
