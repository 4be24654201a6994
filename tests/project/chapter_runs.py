"""Running chapter tests from the project's own suite."""
from __future__ import annotations

from pathlib import Path

from grader.mistakes import load_catalogue
from grader.paths import ROOT
from grader.check import RunOutcome, run_pytest
from grader.process import chapter_test_args, warm_up

warm_up()

TESTS = ROOT / "tests"
CHAPTERS_WITH_TESTS = sorted(p.name[2:] for p in TESTS.glob("ch[0-9][0-9]") if p.is_dir())
CATALOGUE = load_catalogue(TESTS / "mistakes")


def run_chapter(chapter: str, impl: str | Path, tasks=(), timeout: float = 300) -> RunOutcome:
    outcome = run_pytest(chapter_test_args(chapter, impl, tasks=tasks), timeout=timeout)
    assert not outcome.error, f"ch{chapter} against {impl}: {outcome.error}\n{outcome.log[-3000:]}"
    assert not outcome.results.collection_errors, \
        f"ch{chapter}: test files failed to import: {outcome.results.collection_errors}"
    assert outcome.results.tests, f"ch{chapter} against {impl}: no tests ran\n{outcome.log[-3000:]}"
    return outcome
