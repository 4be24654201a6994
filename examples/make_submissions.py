"""Build the demonstration cohort in examples/submissions/ from the chapter 05 solution.

    python examples/make_submissions.py          # (re)write the demo submissions
    python examples/make_submissions.py --check  # exit 1 if they are out of date

Four students, one per kind of outcome `grader grade` reports:

    alice/          a folder with exercises/ch05_linear_regression.py: the reference solution
    bob.zip         a zip (bob/exercises/...) with a catalogued mistake: no zero_grad()
    carol/          a folder with the file at the top and a syntax error
    dave.tar.gz     a tarball with a catalogued mistake: the ReLU left out of TwoLayerNet
"""
from __future__ import annotations

import argparse
import gzip
import io
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grader.mistakes import load_catalogue  # noqa: E402

FILENAME = "ch05_linear_regression.py"
OUT = ROOT / "examples" / "submissions"
STAMP = (2024, 1, 1, 0, 0, 0)  # fixed, so rebuilding gives identical archives


def sources() -> dict[str, str]:
    """student -> the text of their ch05 file."""
    solution = (ROOT / "solutions" / FILENAME).read_text(encoding="utf-8")
    mistakes = {m.name: m for m in load_catalogue(ROOT / "tests" / "mistakes")["05"]}
    broken = solution.replace("return self.linear(x)", "return self.linear(x", 1)
    return {
        "alice": solution,
        "bob": mistakes["no zero_grad in the training loop"].apply(solution),
        "carol": broken,
        "dave": mistakes["ReLU left out of TwoLayerNet"].apply(solution),
    }


def build() -> dict[Path, bytes]:
    """Every file of the demo cohort, path -> bytes."""
    src = {k: v.encode("utf-8") for k, v in sources().items()}
    files = {
        OUT / "alice" / "exercises" / FILENAME: src["alice"],
        OUT / "carol" / FILENAME: src["carol"],
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo(f"bob/exercises/{FILENAME}", date_time=STAMP)
        info.external_attr = 0o100644 << 16
        zf.writestr(info, src["bob"])
    files[OUT / "bob.zip"] = buf.getvalue()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo(f"exercises/{FILENAME}")
        info.size, info.mtime, info.mode = len(src["dave"]), 0, 0o644
        tf.addfile(info, io.BytesIO(src["dave"]))
    files[OUT / "dave.tar.gz"] = gzip.compress(buf.getvalue(), mtime=0)
    return files


def stale() -> list[str]:
    """Demo files whose chapter source differs from what build() would write."""
    from grader import submissions as collect

    bad = []
    want = sources()
    subs, _ = collect.discover(OUT) if OUT.is_dir() else ([], [])
    found = {s.student: collect.read(s).files.get(FILENAME, b"").decode("utf-8", "replace") for s in subs}
    for student, text in want.items():
        if found.get(student) != text:
            bad.append(student)
    return bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether the demo is stale")
    args = parser.parse_args()
    if args.check:
        bad = stale()
        print("examples/submissions is up to date" if not bad else
              "examples/submissions is stale (run python examples/make_submissions.py): " + ", ".join(bad))
        return 1 if bad else 0
    for path, data in build().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
