"""nbgrader: the chapters as nbgrader assignments, graded by nbgrader itself or in the sandbox.

One course of chapter 08 (the `if __name__ == "__main__":` chapter, whose DataLoader
workers and guard make it the hardest to run as a notebook) is written, released with the
real `nbgrader generate_assignment` and graded both ways, once for the whole module: three
students (the solution, the untouched release, and a catalogued mistake, which partial
credit must score like `grader grade`). Other chapters' notebooks are read and graded by
the cheaper tests at the end.

nbgrader is an optional extra: without it these tests skip, except in CI (CI=true), where
the extra is installed and its absence is a failure.
"""
from __future__ import annotations

import ast
import csv
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grader import nbgrader as course_tools
from grader.mistakes import load_catalogue
from grader.notebook import module_source, read_notebook
from grader.paths import ROOT
from grader.syllabus import CHAPTERS

HAVE_NBGRADER = importlib.util.find_spec("nbgrader") is not None
IN_CI = os.environ.get("CI") == "true"
if not HAVE_NBGRADER and not IN_CI:
    pytest.skip("nbgrader is not installed (`make nbgrader-setup` installs the extra; CI does)",
                allow_module_level=True)

CHAPTERS_UNDER_TEST = ["08"]
MISTAKE = next(m for m in load_catalogue(ROOT / "tests" / "mistakes")["08"]
               if m.name == "no zero_grad between batches")
MISTAKE05 = next(m for m in load_catalogue(ROOT / "tests" / "mistakes")["05"]
                 if m.name == "no zero_grad in the training loop")
BIN = Path(sys.executable).parent
MIN_LINE = 20


def run(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """A command with the venv's bin/ first on PATH (nbgrader runs `alembic`)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("JPY_SESSION_NAME", None)
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def start(args: list[str], cwd: Path, output) -> subprocess.Popen:
    """`run`, in the background, its output to a file (a pipe nobody reads could fill)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("JPY_SESSION_NAME", None)
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT)


def nbgrader(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    done = run([str(BIN / "nbgrader"), *args], cwd)
    assert done.returncode == 0, f"nbgrader {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def filled(release: dict, chapter: str, mistake=None) -> dict:
    """The released notebook with every solution cell holding the solution (with a
    catalogued mistake applied where its text occurs), as a student would submit it."""
    nb = json.loads(json.dumps(release))
    cells = {c.grade_id: c for c in course_tools.chapter_plan(chapter).cells if c.is_solution}
    for cell in nb["cells"]:
        plan = cells.get(cell["metadata"].get("nbgrader", {}).get("grade_id"))
        if plan is not None:
            source = plan.solution
            if mistake is not None and all(old in source for old, _ in mistake.edits):
                source = mistake.apply(source)
            cell["source"] = source
    return nb


def submit(course: Path, student: str, chapter: str, nb: dict) -> None:
    folder = course / "submitted" / student / f"ch{chapter}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"ch{chapter}.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    (folder / "timestamp.txt").write_text("2024-01-01 00:00:00.000000 UTC\n")


def gradebook_scores(course: Path) -> dict[tuple[str, str], tuple[float, float]]:
    """(student, assignment) -> (score, max score) from nbgrader's gradebook."""
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        return {(s.student.id, s.assignment.name): (s.score, s.max_score)
                for a in gb.assignments for s in a.submissions}


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> dict:
    """Built once per test run, whichever xdist workers run this module's tests."""
    if not HAVE_NBGRADER:
        pytest.fail("nbgrader is not installed, and CI installs it: install the nbgrader extra")
    from hostile.harness import shared_by_workers
    return shared_by_workers(tmp_path_factory, "nbgrader-course", _build_course)


def _build_course(tmp_path_factory) -> dict:
    """The course, released and submitted; then, side by side (two lanes, as they are
    independent): nbgrader's autograde of it, and validate on the correct notebooks followed
    by the sandboxed route on a copy made before autograde (grade, import, export, feedback)."""
    base = tmp_path_factory.mktemp("nbgrader")
    root = base / "course"
    course_tools.write_course(root, CHAPTERS_UNDER_TEST)
    nbgrader(["generate_assignment", "*"], root)
    releases = {c: json.loads((root / "release" / f"ch{c}" / f"ch{c}.ipynb").read_text(encoding="utf-8"))
                for c in CHAPTERS_UNDER_TEST}
    for c, nb in releases.items():
        submit(root, "solution", c, filled(nb, c))
        submit(root, "untouched", c, nb)
    submit(root, "mistake", "08", filled(releases["08"], "08", MISTAKE))
    sandboxed = base / "sandboxed"
    shutil.copytree(root, sandboxed)

    log = base / "autograde.log"
    with open(log, "w") as output:
        autograde = start([str(BIN / "nbgrader"), "autograde", "*"], root, output)
        try:
            found = {"root": root, "releases": releases, "sandboxed": sandboxed, "out": base / "out",
                     **_validate_then_sandboxed_route(base, releases, sandboxed)}
            code = autograde.wait(timeout=900)
        finally:
            if autograde.poll() is None:
                autograde.kill()
                autograde.wait()
    assert code == 0, f"nbgrader autograde failed:\n{log.read_text()[-3000:]}"
    return found


def _validate_then_sandboxed_route(base: Path, releases: dict, sandboxed: Path) -> dict:
    correct = base / "student"              # what a student validates: the released notebook, solved
    for c in CHAPTERS_UNDER_TEST:
        (correct / f"ch{c}").mkdir(parents=True)
        (correct / f"ch{c}" / f"ch{c}.ipynb").write_text(json.dumps(filled(releases[c], c)))
    validate = run([str(BIN / "nbgrader"), "validate",
                    *[str(correct / f"ch{c}" / f"ch{c}.ipynb") for c in CHAPTERS_UNDER_TEST]], base)
    out = base / "out"
    grade = run([sys.executable, "-m", "grader", "grade", str(sandboxed / "submitted"), "-o", str(out),
                 "--jobs", "2", "-q"] + ([] if os.geteuid() == 0 else ["--unsafe-limited"]), base)
    imported = run([sys.executable, "-m", "grader", "nbgrader-import", str(out), str(sandboxed)], base)
    export = sandboxed / "export.csv"
    if imported.returncode == 0:
        nbgrader(["export", "--to", str(export)], sandboxed)
        nbgrader(["generate_feedback", "ch08", "--student", "mistake"], sandboxed)
    return {"validate": validate, "grade": grade, "imported": imported, "export": export}


def grades_csv(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "grades.csv", encoding="utf-8", newline="") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def chapter_max(out: Path, chapter: str) -> float:
    data = json.loads((out / "solution" / "results.json").read_text(encoding="utf-8"))
    return data["extra_data"]["chapters"][chapter]["max_score"]


# --------------------------------------------------------------------------- the release

def test_released_code_is_the_stub_byte_for_byte(course):
    for c, nb in course["releases"].items():
        assert module_source(nb) == (ROOT / "exercises" / CHAPTERS[c].filename).read_text(encoding="utf-8"), \
            f"ch{c}: the released notebook's code cells differ from exercises/{CHAPTERS[c].filename}"


def _secrets() -> tuple[set[str], set[str]]:
    """Lines of solution regions and hidden tests (20 characters or more, not published
    anyway by a stub or a public test) and hidden test names, read here independently."""
    lines, names = set(), set()
    for c in CHAPTERS_UNDER_TEST:
        inside = False
        for line in (ROOT / "solutions" / CHAPTERS[c].filename).read_text(encoding="utf-8").splitlines():
            marker = line.strip()
            inside = {"### BEGIN SOLUTION": True, "### END SOLUTION": False}.get(marker, inside)
            if inside and len(marker) >= MIN_LINE:
                lines.add(marker)
        for path in (ROOT / "tests" / f"ch{c}").glob("test_hidden*.py"):
            text = path.read_text(encoding="utf-8")
            lines |= {ln.strip() for ln in text.splitlines() if len(ln.strip()) >= MIN_LINE}
            names |= {n.name for n in ast.walk(ast.parse(text)) if isinstance(n, ast.FunctionDef)
                      and n.name.startswith("test")}
    public = [p.read_text(encoding="utf-8") for p in (ROOT / "exercises").glob("ch*.py")]
    public += [p.read_text(encoding="utf-8") for p in (ROOT / "tests").glob("ch*/test_public.py")]
    return {s for s in lines if not any(s in text for text in public)}, names


def test_release_has_no_solution_line_and_no_hidden_test(course):
    secrets, names = _secrets()
    assert len(secrets) > 40 and len(names) > 5      # the search is not vacuous
    pattern = re.compile(r"\b(" + "|".join(sorted(names)) + r")\b")
    for c in CHAPTERS_UNDER_TEST:
        path = course["root"] / "release" / f"ch{c}" / f"ch{c}.ipynb"
        cells = read_notebook(path.read_bytes())["cells"]
        text = "\n".join("".join(cell["source"]) for cell in cells) + "\n" + path.read_text(encoding="utf-8")
        leaks = sorted(s for s in secrets if s in text) + sorted(set(pattern.findall(text)))
        assert not leaks, f"ch{c}'s released notebook leaks: {leaks[:10]}"
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "hidden=True"):
            assert marker not in text, f"ch{c}'s released notebook still holds {marker!r}"


def test_max_score_is_the_pytest_points(course):
    assert course["grade"].returncode == 0, course["grade"].stderr[-3000:]
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{course['root'] / 'gradebook.db'}") as gb:
        for c in CHAPTERS_UNDER_TEST:
            assert gb.find_assignment(f"ch{c}").max_score == chapter_max(course["out"], c) > 0, f"ch{c}"


# --------------------------------------------------------------------------- nbgrader's autograde

def test_autograde_solution_full_release_zero_same_as_grader_grade(course):
    scores = gradebook_scores(course["root"])
    grades = grades_csv(course["out"])
    for c in CHAPTERS_UNDER_TEST:
        score, top = scores[("solution", f"ch{c}")]
        assert score == top == chapter_max(course["out"], c), f"ch{c}: the solution scored {score} / {top}"
        assert scores[("untouched", f"ch{c}")][0] == 0, f"ch{c}: the untouched release scored points"
        for student in ("solution", "untouched", "mistake"):
            if (student, f"ch{c}") in scores:
                assert scores[(student, f"ch{c}")][0] == float(grades[student][f"ch{c}"]), (student, c)
    assert 0 < scores[("mistake", "ch08")][0] < scores[("solution", "ch08")][0]


def test_autograded_cells_say_what_to_fix(course):
    nb = json.loads((course["root"] / "autograded" / "mistake" / "ch08" / "ch08.ipynb").read_text())
    text = json.dumps([c.get("outputs", []) for c in nb["cells"]])
    assert MISTAKE.message in text, "the mistake's message is not in the autograded notebook"


def test_validate_reports_no_failure_on_correct_public_work(course):
    done = course["validate"]
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("Success! Your notebook passes all the tests.") == len(CHAPTERS_UNDER_TEST), \
        done.stdout[-3000:]
    assert "failed" not in done.stdout.lower() and "partial credit" not in done.stdout.lower()


# --------------------------------------------------------------------------- the sandboxed route

def test_sandboxed_grade_import_export_equals_grades_csv(course):
    assert course["grade"].returncode == 0, course["grade"].stderr[-3000:]
    assert course["imported"].returncode == 0, course["imported"].stderr[-3000:]
    grades = grades_csv(course["out"])
    with open(course["export"], encoding="utf-8", newline="") as f:
        exported = {(row["student_id"], row["assignment"]): row for row in csv.DictReader(f)}
    assert {s for s, _ in exported} == set(grades) == {"solution", "untouched", "mistake"}
    for (student, assignment), row in exported.items():
        want = grades[student][assignment] or "0"     # a chapter not submitted is empty there
        assert float(row["score"]) == float(want), (student, assignment, row["score"], want)
        assert float(row["max_score"]) == chapter_max(course["out"], assignment[2:])
    feedback = json.loads((course["out"] / "mistake" / "results.json").read_text())
    assert feedback["score"] == float(grades["mistake"]["total"])


def test_imported_notebooks_feed_generate_feedback(course):
    assert course["imported"].returncode == 0, course["imported"].stderr[-3000:]
    html = (course["sandboxed"] / "feedback" / "mistake" / "ch08" / "ch08.html").read_text(encoding="utf-8")
    assert MISTAKE.message in html.replace("&#39;", "'").replace("&quot;", '"')


def test_commands_say_how_to_install_nbgrader_when_it_is_missing(tmp_path):
    code = ("import importlib.util, sys\n"
            "find = importlib.util.find_spec\n"
            "importlib.util.find_spec = lambda name, *a: None if name == 'nbgrader' else find(name, *a)\n"
            "from grader.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    for args in (["nbgrader", str(tmp_path / "course")], ["nbgrader-import", str(tmp_path), str(tmp_path)]):
        done = run([sys.executable, "-c", code, *args], tmp_path)
        assert done.returncode == 2 and "make nbgrader-setup" in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


# --------------------------------------------------------------------------- reading notebooks

def _release_notebook(chapter: str) -> dict:
    """The released notebook as StubSolutions makes it, without running nbgrader: the
    source notebook with every solution cell as released."""
    plan = course_tools.chapter_plan(chapter)
    points = {t: course_tools.TaskPoints(1, 1) for t in CHAPTERS[chapter].task_ids()}
    nb = course_tools.build_notebook(plan, points)
    released = {c.grade_id: c.released for c in plan.cells}
    for cell in nb["cells"]:
        gid = cell["metadata"]["nbgrader"]["grade_id"]
        if gid in released:
            cell["source"] = released[gid]
    return nb


def test_submissions_read_notebooks_from_nbgrader_layout_and_archives(tmp_path):
    import zipfile

    from grader import submissions

    solved = filled(_release_notebook("05"), "05", MISTAKE05)
    solved["cells"].append({"cell_type": "code", "id": "scratch", "metadata": {}, "outputs": [],
                            "execution_count": None, "source": "print('scratch work')"})
    folder = tmp_path / "submitted" / "alice" / "ch05"
    folder.mkdir(parents=True)
    (folder / "ch05.ipynb").write_text(json.dumps(solved))
    with zipfile.ZipFile(tmp_path / "submitted" / "bob.zip", "w") as zf:
        zf.writestr("bob/ch05/ch05.ipynb", json.dumps(_release_notebook("05")))
        zf.writestr("bob/ch03/ch03.ipynb", "{not json")
    subs, _ = submissions.discover(tmp_path / "submitted")
    alice, bob = (submissions.read(s) for s in subs)
    filename = CHAPTERS["05"].filename
    solution = (ROOT / "solutions" / filename).read_text(encoding="utf-8")
    assert alice.files[filename].decode() == MISTAKE05.apply(solution)   # scratch cells are not code
    assert bob.files[filename] == (ROOT / "exercises" / filename).read_bytes()
    assert CHAPTERS["03"].filename not in bob.files
    assert any("ch03.ipynb is not a notebook" in n for n in bob.notes), bob.notes


def test_locked_cells_are_graded_as_released_and_missing_cells_as_stubs(tmp_path):
    from grader import submissions

    nb = filled(_release_notebook("05"), "05")
    for cell in nb["cells"]:
        gid = cell["metadata"]["nbgrader"]["grade_id"]
        if gid == "code_00":
            cell["source"] = "import os\nos.system('echo edited a read-only cell')"
    nb["cells"] = [c for c in nb["cells"] if c["metadata"]["nbgrader"]["grade_id"] != "code_04"]
    (tmp_path / "carol").mkdir()
    (tmp_path / "carol" / "ch05.ipynb").write_text(json.dumps(nb))
    (tmp_path / "dave").mkdir()
    (tmp_path / "dave" / "ch05.ipynb").write_text(json.dumps(nb))
    (tmp_path / "dave" / CHAPTERS["05"].filename).write_text("# the .py wins a tie of places\n")
    carol, dave = (submissions.read(s) for s in submissions.discover(tmp_path)[0])
    text = carol.files[CHAPTERS["05"].filename].decode()
    plan = course_tools.chapter_plan("05")
    assert plan.cells[0].released in text and "edited a read-only cell" not in text
    assert plan.cells[4].released in text and any("code_04" in n for n in carol.notes), carol.notes
    assert dave.files[CHAPTERS["05"].filename] == b"# the .py wins a tie of places\n"
    assert any(n.startswith("ch05.ipynb: skipped") for n in dave.notes), dave.notes


def test_a_grading_copy_without_solutions_grades_the_code_cells_as_submitted(tmp_path, monkeypatch):
    from grader import submissions

    def no_solutions(nb, chapter):
        raise FileNotFoundError("solutions/ is not part of this copy")

    monkeypatch.setattr(course_tools, "graded_module", no_solutions)
    (tmp_path / "erin").mkdir()
    (tmp_path / "erin" / "ch05.ipynb").write_text(json.dumps(filled(_release_notebook("05"), "05")))
    (tmp_path / "fred").mkdir()
    (tmp_path / "fred" / "ch05.ipynb").write_text(json.dumps({"cells": [], "metadata": {}}))
    erin, fred = (submissions.read(s) for s in submissions.discover(tmp_path)[0])
    filename = CHAPTERS["05"].filename
    assert erin.files[filename] == (ROOT / "solutions" / filename).read_bytes()
    assert not fred.files and "ch05.ipynb: the notebook has no cells of the chapter module" in fred.error
