"""Running chapter tests from the project's own suite."""
from __future__ import annotations

import os
from pathlib import Path

from grader.mistakes import load_catalogue, load_variants
from grader.paths import ROOT
from grader.check import RunOutcome, run_pytest
from grader.htmlreport import preload
from grader.process import chapter_test_args, warm_up

preload()   # the plotting library, for the report of every `grader grade` the tests fork
warm_up()   # ... and torch, pytest and the plugin, then a frozen heap

TESTS = ROOT / "tests"
CHAPTERS_WITH_TESTS = sorted(p.name[2:] for p in TESTS.glob("ch[0-9][0-9]") if p.is_dir())
CATALOGUE = load_catalogue(TESTS / "mistakes")
VARIANTS = load_variants(TESTS / "mistakes")


def run_chapter(chapter: str, impl: str | Path, tasks=(), timeout: float = 300,
                split: bool | None = None, public_only: bool = False, hidden_tasks=()) -> RunOutcome:
    """`split`: the student's code in a process of its own, as `grader grade` runs it
    (default: PRACTICE_SPLIT=1 in the environment)."""
    if split is None:
        split = os.environ.get("PRACTICE_SPLIT", "") == "1"
    folder = ROOT / impl if impl in ("exercises", "solutions") else Path(impl)
    outcome = run_pytest(chapter_test_args(chapter, impl, tasks=tasks, public_only=public_only,
                                           hidden_tasks=hidden_tasks), timeout=timeout,
                         split=(folder, TESTS) if split else None)
    assert not outcome.error, f"ch{chapter} against {impl}: {outcome.error}\n{outcome.log[-3000:]}"
    assert not outcome.results.collection_errors, \
        f"ch{chapter}: test files failed to import: {outcome.results.collection_errors}"
    assert outcome.results.tests, f"ch{chapter} against {impl}: no tests ran\n{outcome.log[-3000:]}"
    return outcome
