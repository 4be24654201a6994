"""Chapter 13, public tests: shapes and basic behaviour."""
import pytest
import torch

from grader.remote import type_name


@pytest.mark.task("ch13.encode")
@pytest.mark.points(2)
def test_codes_of_a_name(impl):
    codes = impl.name_to_codes("Adsit")
    assert isinstance(codes, list), f"name_to_codes returned {type_name(codes)}, expected a list of ints"
    assert codes == [65, 100, 115, 105, 116], \
        f"name_to_codes('Adsit') returned {codes}, expected the ASCII codes [65, 100, 115, 105, 116]"


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
    assert lengths.tolist() == [7, 5, 2], \
        f"lengths are {lengths.tolist()}, expected [7, 5, 2]: sorted by length, longest first"


@pytest.mark.task("ch13.model")
@pytest.mark.points(2)
def test_classifier_output_shape(impl):
    model = impl.RNNClassifier(128, 8, 5, n_layers=2)
    seq = torch.tensor([[83, 99, 104, 109], [76, 105, 0, 0], [79, 0, 0, 0]])
    out = model(seq, torch.tensor([4, 2, 1]))
    assert isinstance(out, torch.Tensor), f"forward returned {type_name(out)}, expected a Tensor"
    assert out.shape == (3, 5), \
        f"forward returned shape {list(out.shape)}, expected [3, 5]: one score per class"


@pytest.mark.task("ch13.train")
@pytest.mark.points(1)
def test_train_and_evaluate_return_floats(probes):
    # a small stand-in called like RNNClassifier, model(seq, lengths) -> [B, 3] logits (probes.py)
    names, labels = ["Abe", "Li", "Rossi", "Nowak"], torch.tensor([0, 1, 2, 1])
    run = probes.train_epoch("tiny", names, labels, torch.optim.Adam, {"lr": 0.01}, batch_size=2, evaluate=True)
    loss = run["loss"]
    assert isinstance(loss, float), f"train_epoch returned {type_name(loss)}, expected a Python float"
    acc = run["accuracy"]
    assert isinstance(acc, float) and 0.0 <= acc <= 1.0, \
        f"evaluate returned {acc!r}, expected the accuracy as a float in [0, 1]"
