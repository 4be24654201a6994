"""Manifests: what a chapter's tests are, collected once without student code, and what a
grade depends on (content hashes), so a re-run can tell what is already graded.

The manifest is the grader's trusted list of tests, tasks and points. It comes from a
collect-only pytest run in a child forked before any submission is read; everything a
grading child later reports is checked against it (`grader.protocol`), and points come
only from it.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from grader.paths import ROOT
from grader.process import run_pytest_main
from grader.results import TestSpec
from grader.syllabus import CHAPTERS

# Files outside a chapter's folder that its tests import: they are part of what a grade
# depends on.
SHARED_TEST_HELPERS = (ROOT / "grader" / "testing.py",)


@dataclass
class Manifest:
    chapter: str
    tests: list[TestSpec]
    sha256: str               # tests_hash of the chapter's folder
    hidden_lines: list[str]   # source_lines: text that must never reach feedback
    device: str = "cpu"       # the grading machine's device: which GPU tests count

    @property
    def max_score(self) -> float:
        return sum(t.points for t in self.tests)


def tests_hash(folder: Path) -> str:
    """Content hash of a chapter's tests and the helpers they import."""
    h = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in files + list(SHARED_TEST_HELPERS):
        h.update(str(path.relative_to(folder.parent if path.is_relative_to(folder) else ROOT)).encode())
        h.update(b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def source_lines(folder: Path, min_length: int = 20) -> list[str]:
    """Distinctive lines of the hidden test files: text that must never reach feedback.

    Left out, because they are no secret: a line that also occurs inside one of the file's
    own string constants (a failure message quoting `optimizer.zero_grad()`, say), and a
    line that also occurs in the folder's public files (the public tests and probes, which
    students have), such as code a hidden test shares with a public one."""
    public = "\n".join(path.read_text(encoding="utf-8", errors="replace")
                       for path in sorted(folder.glob("*.py")) if not path.name.startswith("test_hidden"))
    lines = set()
    for path in sorted(folder.glob("test_hidden*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        said = "\n".join(_string_constants(text))
        for line in text.splitlines():
            s = line.strip()
            if len(s) >= min_length and s not in said and s not in public:
                lines.add(s)
    return sorted(lines, key=len, reverse=True)


def _string_constants(source: str) -> list[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def collect_in_child(args: list[str], write_fd: int) -> int:
    """The collect-only child's body: pytest with the guard, which streams what it collected."""
    from grader.guard import Guard
    run_pytest_main(args, [Guard(write_fd)])  # collection errors travel in the stream
    return 0


def collect_manifests(chapters: list[str], tests_root: Path, hashes: dict[str, str],
                      fork: Callable[[list[str], int], None]) -> tuple[dict[str, Manifest], dict[str, str]]:
    """Collect the chapters' tests in a child that never sees student code.

    `hashes`: chapter -> tests_hash, computed once by the caller. `fork(args, write_fd)`
    starts the child (`collect_in_child`), from the zygote. Returns the manifests and,
    per chapter that could not be collected, the reason."""
    folders = [str(tests_root / f"ch{c}") for c in chapters]
    read_fd, write_fd = os.pipe()
    args = folders + ["--collect-only", "-q", "-p", "no:cacheprovider", "--noconftest",
                      f"--confcutdir={tests_root.parent}",
                      "--import-mode=importlib", "-c", os.devnull, "--rootdir", str(tests_root.parent)]
    try:
        fork(args, write_fd)
    finally:
        os.close(write_fd)
    data = bytearray()
    while chunk := os.read(read_fd, 1 << 16):
        data += chunk
    os.close(read_fd)
    collected = None
    for line in data.decode("utf-8", "replace").splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if isinstance(msg, dict) and msg.get("type") == "collected":
            collected = msg
    if collected is None:
        return {}, {c: "collecting the tests failed" for c in chapters}
    errors: dict[str, str] = {}
    for err in collected.get("collection_errors", []):
        for c in chapters:
            if f"ch{c}/" in err:
                errors.setdefault(c, err)
    manifests = {}
    for c in chapters:
        tests = [TestSpec.from_dict(t) for t in collected["tests"] if t["nodeid"].startswith(f"tests/ch{c}/")]
        if c not in errors and not tests:
            errors[c] = f"tests/ch{c} has no tests"
        if c not in errors:
            manifests[c] = Manifest(c, tests, hashes[c], source_lines(tests_root / f"ch{c}"),
                                    "cuda" if collected.get("device") == "cuda" else "cpu")
    return manifests, errors


# --------------------------------------------------------------------------- fingerprints

def fingerprint(file_hashes: dict[str, str], test_hashes: dict[str, str]) -> dict:
    """What a grade depends on: per chapter, the student's file and the tests, by content
    hash (file_hashes: filename -> sha256; test_hashes: chapter -> tests_hash). The same
    function decides "already graded?" and writes the value that question reads."""
    return {c: [file_hashes.get(CHAPTERS[c].filename), h] for c, h in sorted(test_hashes.items())}


def is_current(out: Path, student: str, want: dict) -> bool:
    """Whether OUT/<student>/results.json was graded from exactly `want`."""
    try:
        data = json.loads((out / student / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    extra = data.get("extra_data", {}) if isinstance(data, dict) else {}
    return extra.get("fingerprint") == want and not extra.get("unreadable") and not extra.get("regrade")
