"""Every chapter: the solution earns full marks, the stub earns nothing, mistakes lose points."""
from __future__ import annotations

import re

from chapter_runs import CATALOGUE, CHAPTERS_WITH_TESTS, TESTS, run_chapter
from grader.paths import ROOT
from grader.syllabus import CHAPTERS


def _failures(results):
    return [f"{t.name} [{t.task}]: {t.outcome}: {t.message}" for t in results.tests
            if t.outcome in ("failed", "error")]


def test_solution_earns_full_marks(chapter):
    # with the student's code in a process of its own, as `grader grade` runs it (the stub
    # and the mistakes below run both sides in one process, as `grader check` does)
    results = run_chapter(chapter, "solutions", split=True).results
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
    """One run: every public test of the chapter (and, for a mistake only hidden tests can
    see, `public=False`, the hidden tests of its task). The mistake loses points in its task
    with its message, and in no other task than those in `also`. A mistake the public tests
    catch loses those points in the full suite too, which holds the public tests."""
    chapter, entry = mistake
    module = CHAPTERS[chapter]
    source = (ROOT / "solutions" / module.filename).read_text(encoding="utf-8")
    (tmp_path / module.filename).write_text(entry.apply(source), encoding="utf-8")
    if entry.public:
        results = run_chapter(chapter, tmp_path, public_only=True).results
    else:
        results = run_chapter(chapter, tmp_path, hidden_tasks=[entry.task]).results
    failed = [t for t in results.tests if t.outcome in ("failed", "error")]
    own = [t for t in failed if t.task == entry.task]
    ran = "public" if entry.public else "public and hidden"
    assert own, f"mistake {entry.name!r} was not caught: every {ran} {entry.task} test passed"
    named = [t for t in own if entry.message.lower() in t.message.lower()]
    assert named, f"mistake {entry.name!r} lost points, but no message names it ({entry.message!r}); got:\n  " + \
        "\n  ".join(t.message for t in own)
    elsewhere = [f"{t.name} [{t.task}]: {t.message}" for t in failed if t.task not in {entry.task, *entry.also}]
    assert not elsewhere, f"mistake {entry.name!r} in {entry.task} also loses points elsewhere " \
        "(name those tasks in `also` if their tests rely on it and say so):\n  " + "\n  ".join(elsewhere)


def test_every_chapter_is_complete(chapter):
    module = CHAPTERS[chapter]
    assert (ROOT / "solutions" / module.filename).is_file()
    files = {p.name for p in (TESTS / f"ch{chapter}").glob("test_*.py")}
    assert any(f.startswith("test_public") for f in files), "a chapter needs public tests"
    assert any(f.startswith("test_hidden") for f in files), "a chapter needs hidden tests"
    entries = CATALOGUE.get(chapter, [])
    assert len(entries) >= 3, f"ch{chapter} has {len(entries)} catalogued mistakes; at least 3 are needed"


def test_chapter_tests_judge_and_probes_observe(chapter):
    """Every chapter is judged (README, "Tests judge, probes observe"): its tests never patch
    the judge's modules, which would not reach the student's process."""
    folder = TESTS / f"ch{chapter}"
    assert (folder / "probes.py").is_file(), f"ch{chapter} needs a probes.py (a docstring at least)"
    for path in folder.glob("test_*.py"):
        text = path.read_text(encoding="utf-8")
        assert "monkeypatch" not in text, f"{path.name}: patching belongs in probes.py"
    probes = (folder / "probes.py").read_text(encoding="utf-8")
    assert "import pytest" not in probes and "from tests" not in probes, \
        "probes run beside the student's code: no pytest, nothing from tests/"


def test_chapter_tests_need_no_disabled_plugin(chapter):
    """Chapter runs leave out pytest's plugins no chapter test uses (`grader.process.DISABLED`):
    a fixture of one of them would be missing in every run."""
    fixtures = {"tmp_path", "tmp_path_factory", "tmpdir", "tmpdir_factory", "monkeypatch", "caplog",
                "recwarn", "subtests", "doctest_namespace"}
    for path in (TESTS / f"ch{chapter}").glob("*.py"):
        used = sorted(f for f in fixtures if re.search(rf"\b{f}\b", path.read_text(encoding="utf-8")))
        assert not used, f"{path.name} uses {used}, fixtures of plugins chapter runs leave out " \
                         "(grader.process.DISABLED): do without them or take the plugin out of that list"


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
