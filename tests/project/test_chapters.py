"""Every chapter: the solution earns full marks, the stub earns nothing, mistakes lose points."""
from __future__ import annotations


from chapter_runs import CATALOGUE, CHAPTERS_WITH_TESTS, TESTS, run_chapter
from grader.paths import ROOT
from grader.syllabus import CHAPTERS


def _failures(results):
    return [f"{t.name} [{t.task}]: {t.outcome}: {t.message}" for t in results.tests
            if t.outcome in ("failed", "error")]


def test_solution_earns_full_marks(chapter):
    results = run_chapter(chapter, "solutions").results
    assert not _failures(results), "\n".join(_failures(results))
    # only a GPU test on a machine without one is "skipped"; any other skip counts as failed
    assert results.score == results.max_score > 0


def test_stub_earns_nothing(chapter):
    results = run_chapter(chapter, "exercises").results
    passed = [t.name for t in results.tests if t.outcome == "passed"]
    assert not passed, f"tests that pass on the untouched stub cannot fail: {passed}"
    assert results.score == 0
    assert all(t.message for t in results.tests if t.outcome != "skipped")


def test_mistake_loses_points_with_its_message(mistake, tmp_path):
    chapter, entry = mistake
    module = CHAPTERS[chapter]
    source = (ROOT / "solutions" / module.filename).read_text(encoding="utf-8")
    (tmp_path / module.filename).write_text(entry.apply(source), encoding="utf-8")
    results = run_chapter(chapter, tmp_path, tasks=[entry.task]).results
    failed = [t for t in results.tests if t.outcome in ("failed", "error")]
    assert failed, f"mistake {entry.name!r} was not caught: every {entry.task} test passed"
    assert results.score < results.max_score
    messages = [t.message for t in failed]
    assert any(entry.message.lower() in m.lower() for m in messages), \
        f"mistake {entry.name!r} lost points, but no message names it ({entry.message!r}); got:\n  " + \
        "\n  ".join(messages)


def test_every_chapter_is_complete(chapter):
    module = CHAPTERS[chapter]
    assert (ROOT / "solutions" / module.filename).is_file()
    files = {p.name for p in (TESTS / f"ch{chapter}").glob("test_*.py")}
    assert any(f.startswith("test_public") for f in files), "a chapter needs public tests"
    assert any(f.startswith("test_hidden") for f in files), "a chapter needs hidden tests"
    entries = CATALOGUE.get(chapter, [])
    assert len(entries) >= 3, f"ch{chapter} has {len(entries)} catalogued mistakes; at least 3 are needed"


def test_every_task_is_tested(chapter):
    text = "".join(p.read_text(encoding="utf-8") for p in (TESTS / f"ch{chapter}").glob("test_*.py"))
    missing = [t for t in CHAPTERS[chapter].task_ids() if f'task("{t}")' not in text]
    assert not missing, f"tasks without tests: {missing}"


def test_every_solution_has_tests():
    solved = sorted(p.name for p in (ROOT / "solutions").glob("ch*.py"))
    untested = [n for n in solved if n[2:4] not in CHAPTERS_WITH_TESTS]
    assert not untested, f"solutions without a tests/chNN folder: {untested}"


def test_chapter_test_folders_are_packages():
    """tests/chNN/__init__.py keeps same-named files (test_public.py) of different chapters apart."""
    assert (TESTS / "__init__.py").is_file()
    missing = [p.name for p in TESTS.glob("ch[0-9][0-9]") if not (p / "__init__.py").is_file()]
    assert not missing, f"add an empty __init__.py to: {missing}"
