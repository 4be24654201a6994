"""Chapter 13, public tests: shapes and basic behaviour."""
import pytest
import torch
from torch import nn


@pytest.mark.task("ch13.encode")
@pytest.mark.points(2)
def test_codes_of_a_name(impl):
    codes = impl.name_to_codes("Adsit")
    assert isinstance(codes, list), f"name_to_codes returned {type(codes).__name__}, expected a list of ints"
    assert codes == [65, 100, 115, 105, 116], \
        f"name_to_codes('Adsit') returned {codes}, expected the ASCII codes [65, 100, 115, 105, 116]"


@pytest.mark.task("ch13.batch")
@pytest.mark.points(2)
def test_batch_shapes_and_dtypes(impl):
    seq, lengths, labels = impl.make_batch(["Li", "Schmidt", "Rossi"], [4, 1, 2])
    for what, t, shape in [("seq", seq, (3, 7)), ("lengths", lengths, (3,)), ("labels", labels, (3,))]:
        assert isinstance(t, torch.Tensor), f"make_batch's {what} is a {type(t).__name__}, expected a tensor"
        assert t.dtype == torch.int64, \
            f"make_batch's {what} is {t.dtype}, expected torch.int64 (a LongTensor)"
        assert tuple(t.shape) == shape, \
            (f"make_batch's {what} has shape {list(t.shape)}, expected {list(shape)} "
             "(3 names, the longest has 7 letters)")
    assert lengths.tolist() == [7, 5, 2], \
        f"lengths are {lengths.tolist()}, expected [7, 5, 2]: sorted by length, longest first"


@pytest.mark.task("ch13.model")
@pytest.mark.points(2)
def test_classifier_output_shape(impl):
    model = impl.RNNClassifier(128, 8, 5, n_layers=2)
    seq = torch.tensor([[83, 99, 104, 109], [76, 105, 0, 0], [79, 0, 0, 0]])
    out = model(seq, torch.tensor([4, 2, 1]))
    assert isinstance(out, torch.Tensor), f"forward returned {type(out).__name__}, expected a Tensor"
    assert out.shape == (3, 5), \
        f"forward returned shape {list(out.shape)}, expected [3, 5]: one score per class"


class _TinyClassifier(nn.Module):
    """Called like RNNClassifier: model(seq, lengths) -> [B, 3] logits."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(128, 4)
        self.fc = nn.Linear(4, 3)

    def forward(self, seq, lengths):
        return self.fc(self.embedding(seq).sum(1) / lengths[:, None].float())


@pytest.mark.task("ch13.train")
@pytest.mark.points(1)
def test_train_and_evaluate_return_floats(impl):
    torch.manual_seed(0)
    model = _TinyClassifier()
    names, labels = ["Abe", "Li", "Rossi", "Nowak"], torch.tensor([0, 1, 2, 1])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    loss = impl.train_epoch(model, names, labels, optimizer, torch.nn.CrossEntropyLoss(), batch_size=2)
    assert isinstance(loss, float), f"train_epoch returned {type(loss).__name__}, expected a Python float"
    acc = impl.evaluate(model, names, labels)
    assert isinstance(acc, float) and 0.0 <= acc <= 1.0, \
        f"evaluate returned {acc!r}, expected the accuracy as a float in [0, 1]"
