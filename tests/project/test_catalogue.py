"""Correct code in any style earns full marks: every variant of the catalogue
(`VARIANTS` in `tests/mistakes/chNN.py`: another layer order, `nn.Sequential`, functional
calls, another accuracy idiom) is graded like a solution. The mistakes are checked in
test_chapters.py."""
from __future__ import annotations

from chapter_runs import run_chapter
from grader.paths import ROOT
from grader.syllabus import CHAPTERS


def _write(chapter: str, edit, folder):
    module = CHAPTERS[chapter]
    source = (ROOT / "solutions" / module.filename).read_text(encoding="utf-8")
    (folder / module.filename).write_text(edit.apply(source), encoding="utf-8")


def test_variant_earns_full_marks(variant, tmp_path):
    chapter, entry = variant
    _write(chapter, entry, tmp_path)
    results = run_chapter(chapter, tmp_path).results
    lost = [f"{t.name} [{t.task}]: {t.message}" for t in results.tests if t.outcome in ("failed", "error")]
    assert not lost, f"correct variant {entry.name!r} lost points:\n  " + "\n  ".join(lost)
    assert results.score == results.max_score > 0
