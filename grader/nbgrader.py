"""`grader nbgrader DEST` and `grader nbgrader-import OUT COURSE`: the chapters as nbgrader assignments.

`grader nbgrader` writes an nbgrader course folder: `nbgrader_config.py` and, per chapter,
`source/chNN/chNN.ipynb`, built from `solutions/` and the tests. A chapter notebook is:

    intro        markdown: the chapter and how the notebook works                read-only
    setup        `from grader.notebook import setup`                             read-only
    code_NN      the chapter module, split between top-level definitions:
                 a cell with a solution region is a solution cell, others are    read-only
    about_TASK   markdown per task, from its docstrings and TODOs                read-only
    test_TASK_public   run_task(TASK, public=True), points of its public tests   graded
    test_TASK_hidden   run_task(TASK, hidden=True) inside nbgrader's hidden-test
                       markers, points of its hidden tests                       graded

The module cells, joined two blank lines apart, are the solution file in the source
notebook and exactly the stub of `exercises/` in the release: nbgrader_config.py replaces
nbgrader's ClearSolutions with `StubSolutions`, which releases a solution cell as the stub
generator (`grader.stubs`) makes it. Stock ClearSolutions cannot: each region leaves at
least one line of its fixed `code_stub`, while each stub keeps the region's TODO and
raises a NotImplementedError that names its task.

Two ways to grade what students submit, with the same points:

* nbgrader's `autograde` executes the notebooks; the test cells run the tests (see
  `grader.notebook`).
* `grader grade COURSE/submitted` reads the notebooks itself (`grader.submissions`: the
  solution cells go into the released module) and grades in its sandbox; then
  `grader nbgrader-import OUT COURSE` writes the scores into nbgrader's gradebook and the
  feedback into `autograded/`, so formgrader, `export` and `generate_feedback` work.

nbgrader is an optional dependency and is imported only by the commands.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from grader import stubs
from grader.notebook import cell_source, grade_id, join_cells, module_cells, module_id
from grader.paths import ROOT, SOLUTIONS, chapters_with_tests, tests_dir as resolve_tests_dir
from grader.syllabus import CHAPTERS

INSTALL_HINT = ("nbgrader is not installed: run `make nbgrader-setup` "
                "(or `.venv/bin/pip install -e '.[nbgrader]'`)")
CONFIG_FILE = "nbgrader_config.py"
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
SCHEMA_VERSION = 3


class CourseError(Exception):
    """The course cannot be written or imported as asked; the message is one line."""


def require_nbgrader() -> None:
    """One line instead of an ImportError when the optional extra is missing."""
    import importlib.util
    if importlib.util.find_spec("nbgrader") is None:
        raise CourseError(INSTALL_HINT)


# --------------------------------------------------------------------------- the module's cells

@dataclass
class ModuleCell:
    number: int
    solution: str                 # the text in the source notebook (solution regions and markers)
    released: str                 # the text students get: the stub generator's
    tasks: list[str] = field(default_factory=list)   # tasks whose regions it holds, in order
    parts: int = 1                # chunks of `split_module` it holds (read-only code is merged)

    @property
    def grade_id(self) -> str:
        return module_id(self.number)

    @property
    def is_solution(self) -> bool:
        return bool(self.tasks)


@dataclass
class Region:
    task: str
    where: str                    # "LinearModel.forward", or "module level"
    todo: str                     # the TODO's text, without the comment marks
    doc: str                      # first paragraph of the enclosing function's docstring


@dataclass
class ChapterPlan:
    chapter: str
    cells: list[ModuleCell]
    regions: list[Region]

    def module(self, released: bool) -> str:
        return join_cells(c.released if released else c.solution for c in self.cells)


def split_module(text: str) -> list[str]:
    """The module's text in chunks, each ending with a newline; joined two blank lines apart
    (`grader.notebook.join_cells`) they give the text back. A chunk ends where exactly two
    blank lines precede a top-level statement (with its decorators and the comment lines
    right above it), outside solution and stub regions, so each chunk runs as a cell."""
    lines = text.splitlines(keepends=True)
    inside = _region_lines(lines)
    starts = []
    for node in ast.parse(text).body:
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1
        while first > 0 and lines[first - 1].startswith("#"):
            first -= 1
        starts.append(first)
    cuts = [s for s in starts if s >= 3 and s not in inside and lines[s - 1] == "\n"
            and lines[s - 2] == "\n" and lines[s - 3].strip()]
    chunks, previous = [], 0
    for cut in cuts:
        chunks.append("".join(lines[previous:cut - 2]))
        previous = cut
    chunks.append("".join(lines[previous:]))
    return chunks


def _region_lines(lines: list[str]) -> set[int]:
    """Indices of lines after a BEGIN marker up to its END (solution and stub regions)."""
    inside, depth = set(), 0
    for i, line in enumerate(lines):
        marker = line.strip()
        if marker in (stubs.BEGIN_SOLUTION, stubs.BEGIN_STUB):
            depth += 1
        elif marker in (stubs.END_SOLUTION, stubs.END_STUB):
            depth = max(0, depth - 1)
        elif depth:
            inside.add(i)
    return inside


def cell_text(chunk: str) -> str:
    """A chunk as a cell holds it: without its final newline."""
    return chunk[:-1] if chunk.endswith("\n") else chunk


def release_text(source: str, name: str = "<cell>") -> str:
    """A solution cell as students get it: the stub generator's text for the cell."""
    return cell_text(stubs.make_stub(source + "\n", name))


def regions_of(chunk: str) -> list[Region]:
    """The solution regions of a chunk: task, enclosing function, TODO text, docstring."""
    lines = chunk.splitlines(keepends=True)
    tree = ast.parse(chunk)
    found = []
    for i, line in enumerate(lines):
        if line.strip() != stubs.BEGIN_SOLUTION:
            continue
        todo = []
        for body in lines[i + 1:]:
            if not body.strip().startswith("#"):
                break
            todo.append(body.strip().lstrip("#").strip())
        match = stubs.TODO_RE.match(lines[i + 1]) if i + 1 < len(lines) else None
        if not match:
            continue  # make_stub reports it, naming the line
        todo[0] = todo[0].split(":", 1)[1].strip()
        where = stubs._enclosing_name(lines, i)
        found.append(Region(match.group(1), where, " ".join(t for t in todo if t), _docstring(tree, where)))
    return found


def _docstring(tree: ast.Module, qualified: str) -> str:
    """First paragraph of the docstring of `Class.method` or `function` in `tree`."""
    scope: list[ast.stmt] = tree.body
    for name in qualified.split("."):
        node = next((n for n in scope if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                     and n.name == name), None)
        if node is None:
            return ""
        scope = node.body
    doc = ast.get_docstring(node) or ""
    return " ".join(doc.split("\n\n")[0].split())


@lru_cache(maxsize=None)
def chapter_plan(chapter: str, solutions: Path = SOLUTIONS) -> ChapterPlan:
    """The chapter module's cells, from its solution file. Raises CourseError when the cells
    would not give back the solution and the stub exactly."""
    path = solutions / CHAPTERS[chapter].filename
    text = path.read_text(encoding="utf-8")
    cells: list[ModuleCell] = []
    regions: list[Region] = []
    try:
        for chunk in split_module(text):
            found = regions_of(chunk)
            regions += found
            tasks = list(dict.fromkeys(r.task for r in found))
            source = cell_text(chunk)
            if not tasks and cells and not cells[-1].is_solution:  # read-only code in one cell
                cells[-1].solution = cells[-1].released = join_cells([cells[-1].solution, source])[:-1]
                cells[-1].parts += 1
                continue
            cells.append(ModuleCell(len(cells), source, release_text(source, str(path)), tasks))
        stub = stubs.make_stub(text, str(path))
    except (SyntaxError, stubs.StubError) as exc:
        raise CourseError(f"{path.name}: {exc}") from None
    plan = ChapterPlan(chapter, cells, regions)
    if plan.module(released=False) != text or plan.module(released=True) != stub:
        raise CourseError(f"{path.name}: its notebook cells would not join back into the solution "
                          "and the stub exactly (top-level definitions two blank lines apart?)")
    return plan


def graded_module(nb: dict, chapter: str) -> tuple[str, list[str]]:
    """The chapter file to grade from a submitted notebook: the released module with each
    solution cell's text taken from the submission. Read-only cells count as released, as
    nbgrader's autograde restores them; a solution cell missing from the notebook keeps
    its stub. Returns the text and notes for the student."""
    plan = chapter_plan(chapter)
    submitted = module_cells(nb.get("cells", []))
    sources, notes = [], []
    for cell in plan.cells:
        if not cell.is_solution:
            sources.append(cell.released)
        elif cell.number in submitted:
            sources.append(cell_source(submitted[cell.number]))
        else:
            sources.append(cell.released)
            notes.append(f"the notebook has no cell {cell.grade_id} (for {', '.join(cell.tasks)}): "
                         "graded as released")
    return join_cells(sources), notes


# --------------------------------------------------------------------------- points

@dataclass
class TaskPoints:
    public: float = 0.0
    hidden: float = 0.0


def collect_points(chapters: list[str], tests_root: Path) -> dict[str, TaskPoints]:
    """task -> points of its public and hidden tests, from a collect-only pytest run in a
    forked child (the grader's trusted manifest). Tests marked `gpu` are left out: see
    `grader.notebook`."""
    from grader import manifest
    from grader.process import can_fork, fork_child

    if not can_fork():
        raise CourseError("collecting the tests' points needs os.fork (Linux or macOS)")
    pids = []

    def fork(args: list[str], write_fd: int) -> None:
        pids.append(fork_child(lambda: manifest.collect_in_child(args, write_fd), keep={write_fd}))

    hashes = {c: manifest.tests_hash(tests_root / f"ch{c}") for c in chapters}
    try:
        manifests, errors = manifest.collect_manifests(chapters, tests_root, hashes, fork)
    finally:
        for pid in pids:
            os.waitpid(pid, 0)
    if errors:
        chapter, reason = next(iter(errors.items()))
        raise CourseError(f"chapter {chapter}'s tests cannot be collected: {reason}")
    points: dict[str, TaskPoints] = {}
    for m in manifests.values():
        for t in m.tests:
            if not t.gpu:
                entry = points.setdefault(t.task, TaskPoints())
                if t.hidden:
                    entry.hidden += t.points
                else:
                    entry.public += t.points
    return points


# --------------------------------------------------------------------------- the notebook

def grade_cell_id(task: str, kind: str) -> str:
    return f"test_{task.replace('.', '_')}_{kind}"


def task_of_cell(grade_id: str) -> tuple[str, str] | None:
    """(task, 'public' or 'hidden') of a test cell id, None for other cells."""
    if not grade_id.startswith("test_") or not grade_id.endswith(("_public", "_hidden")):
        return None
    slug, kind = grade_id[len("test_"):].rsplit("_", 1)
    return slug.replace("_", ".", 1), kind


def _meta(cell_id: str, *, locked: bool = False, solution: bool = False,
          points: float | None = None) -> dict:
    meta = {"grade": points is not None, "grade_id": cell_id, "locked": locked,
            "schema_version": SCHEMA_VERSION, "solution": solution}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def _cell(kind: str, cell_id: str, source: str, metadata: dict) -> dict:
    cell = {"cell_type": kind, "id": cell_id, "metadata": metadata, "source": source}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def intro_markdown(chapter: str) -> str:
    c = CHAPTERS[chapter]
    return (f"# Chapter {chapter}: {c.title}\n\n"
            f"The code cells of this notebook, from the top, make up `{c.filename}`. Write your code "
            "in the cells with a `TODO`: replace its `raise NotImplementedError(...)` line. The "
            "read-only cells stay as they are.\n\n"
            "Run the setup cell first. Under each task, a test cell runs that task's public tests on "
            "your code as you last ran it, and shows your points and what to fix. Hidden tests run "
            "when your work is graded.")


def task_markdown(task: str, regions: list[Region], points: TaskPoints) -> str:
    parts = [f"## Task `{task}`"]
    for r in regions:
        doc = f": {markdown_text(r.doc)}" if r.doc else ""
        where = "At module level" if r.where == "module level" else f"`{r.where}`"
        parts.append(f"**{where}**{doc}\n\nTo do: {markdown_text(r.todo)}")
    if points.public or points.hidden:
        parts.append(f"Points: {points_text(points.public)} for the public tests below, "
                     f"{points_text(points.hidden)} for hidden tests when your work is graded.")
    else:
        parts.append("This task has no tests yet.")
    return "\n\n".join(parts)


def markdown_text(text: str) -> str:
    """Docstring and TODO text as markdown: code spans kept, and outside them the characters
    that would turn `__init__` or `a*b` into emphasis escaped."""
    pieces = text.split("`")
    for i in range(0, len(pieces), 2):   # even pieces lie outside code spans
        pieces[i] = re.sub(r"([\\*_\[\]<>#|])", r"\\\1", pieces[i])
    return "`".join(pieces)


def points_text(points: float) -> str:
    return f"{points:g} point" + ("" if points == 1 else "s")


def setup_source(chapter: str) -> str:
    return ("# Run this cell first: it lets the test cells find the course's tests and data, and\n"
            "# read the code you run in this notebook.\n"
            "from grader.notebook import setup\n\n"
            f'__name__, __file__ = setup("{chapter}")')


def public_source(task: str, points: float) -> str:
    return (f"# The public tests of {task} ({points_text(points)}): run this cell to check your work.\n"
            "from grader.notebook import run_task\n\n"
            f'run_task("{task}", public=True)')


def hidden_source(task: str, points: float) -> str:
    return (f"# The hidden tests of {task} ({points_text(points)}) run when your work is graded.\n"
            "### BEGIN HIDDEN TESTS\n"
            "from grader.notebook import run_task\n\n"
            f'run_task("{task}", hidden=True)\n'
            "### END HIDDEN TESTS")


def build_notebook(plan: ChapterPlan, points: dict[str, TaskPoints]) -> dict:
    """The source notebook of a chapter (nbformat 4.5, nbgrader metadata schema 3)."""
    chapter = plan.chapter
    cells = [_cell("markdown", "intro", intro_markdown(chapter), _meta("intro", locked=True)),
             _cell("code", "setup", setup_source(chapter), _meta("setup", locked=True))]
    first = {r.task: next(c.number for c in plan.cells if r.task in c.tasks) for r in plan.regions}
    last = {r.task: max(c.number for c in plan.cells if r.task in c.tasks) for r in plan.regions}
    tasks = [t for t in CHAPTERS[chapter].task_ids() if t in first or t in points]
    for cell in plan.cells:
        for task in (t for t in tasks if first.get(t) == cell.number):
            regions = [r for r in plan.regions if r.task == task]
            cells.append(_cell("markdown", f"about_{task.replace('.', '_')}",
                               task_markdown(task, regions, points.get(task, TaskPoints())),
                               _meta(f"about_{task.replace('.', '_')}", locked=True)))
        cells.append(_cell("code", cell.grade_id, cell.solution,
                           _meta(cell.grade_id, solution=cell.is_solution, locked=not cell.is_solution)))
        for task in (t for t in tasks if last.get(t) == cell.number):
            cells += grade_cells(task, points.get(task, TaskPoints()))
    for task in (t for t in tasks if t not in first):  # tests for a task without a TODO
        cells += grade_cells(task, points[task])
    return {"cells": cells, "metadata": {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def grade_cells(task: str, points: TaskPoints) -> list[dict]:
    cells = []
    if points.public:
        cid = grade_cell_id(task, "public")
        cells.append(_cell("code", cid, public_source(task, points.public),
                           _meta(cid, locked=True, points=points.public)))
    if points.hidden:
        cid = grade_cell_id(task, "hidden")
        cells.append(_cell("code", cid, hidden_source(task, points.hidden),
                           _meta(cid, locked=True, points=points.hidden)))
    return cells


# --------------------------------------------------------------------------- the course folder

CONFIG_TEXT = '''\
"""nbgrader configuration of the PyTorch Practice course, written by `grader nbgrader`.

Run nbgrader from the course's virtual environment, with its bin/ on PATH (nbgrader runs
`alembic` as a command). The notebooks' test cells import the installed `grader` package.
"""
from grader.nbgrader import release_preprocessors

c = get_config()  # noqa: F821 - nbgrader provides it when it reads this file

# Release each solution cell as exactly the stub of exercises/ (its TODO and the
# NotImplementedError naming the task), not as nbgrader's bare `raise NotImplementedError()`.
c.GenerateAssignment.preprocessors = release_preprocessors()

# A test cell runs its task's tests in a fresh Python: seconds, more than the 30 s default
# on a busy machine.
c.Execute.timeout = 600
'''


@dataclass
class CourseReport:
    dest: Path
    notebooks: dict[str, tuple[int, TaskPoints]] = field(default_factory=dict)  # chapter -> tasks, points
    config_written: bool = False


def write_course(dest: Path, chapters: list[str] | None = None, tests_root: Path | None = None) -> CourseReport:
    """Write (or update) the course folder DEST: nbgrader_config.py when it has none, and the
    chapters' source notebooks."""
    dest = Path(dest).expanduser().resolve()
    tests_root = tests_root or resolve_tests_dir()
    ready = chapters_with_tests(tests_root)
    chosen = ready if chapters is None else chapters
    missing = [c for c in chosen if c not in ready]
    if missing:
        raise CourseError(f"chapter(s) {', '.join(missing)} have no tests yet; chapters ready: "
                          f"{', '.join(ready) or 'none'}")
    _check_dest(dest)
    plans = [chapter_plan(c) for c in chosen]          # every check before anything is written
    points = collect_points(chosen, tests_root)
    report = CourseReport(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if not (dest / CONFIG_FILE).is_file():
        (dest / CONFIG_FILE).write_text(CONFIG_TEXT, encoding="utf-8")
        report.config_written = True
    for plan in plans:
        folder = dest / "source" / f"ch{plan.chapter}"
        folder.mkdir(parents=True, exist_ok=True)
        nb = build_notebook(plan, points)
        _write_json(folder / f"ch{plan.chapter}.ipynb", nb)
        tasks = [t for t in CHAPTERS[plan.chapter].task_ids() if t in points]
        total = TaskPoints(sum(points[t].public for t in tasks), sum(points[t].hidden for t in tasks))
        report.notebooks[plan.chapter] = (len(tasks), total)
    return report


def _check_dest(dest: Path) -> None:
    if dest == ROOT or ROOT in dest.parents:
        raise CourseError(f"{dest} is inside the repository: the source notebooks hold the solutions; "
                          "write the course outside it")
    if dest.exists() and not dest.is_dir():
        raise CourseError(f"{dest} is a file, not a folder")
    if dest.is_dir() and not (dest / CONFIG_FILE).is_file() and any(dest.iterdir()):
        raise CourseError(f"{dest} is not empty and is not an nbgrader course ({CONFIG_FILE}): "
                          "choose a new or empty folder")


def _write_json(path: Path, nb: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def release_preprocessors() -> list:
    """nbgrader's generate_assignment steps with ClearSolutions replaced by StubSolutions."""
    from nbgrader.converters import GenerateAssignment
    from nbgrader.preprocessors import ClearSolutions

    default = GenerateAssignment.class_traits()["preprocessors"].default()
    return [stub_solutions_class() if p is ClearSolutions else p for p in default]


@lru_cache(maxsize=None)
def stub_solutions_class() -> type:
    """ClearSolutions, releasing a cell whose regions follow the course's markers (a TODO
    first) as the stub generator does; any other cell as nbgrader would."""
    from nbgrader.preprocessors import ClearSolutions

    class StubSolutions(ClearSolutions):
        def _replace_solution_region(self, cell, language: str) -> bool:
            if cell.cell_type != "code" or stubs.BEGIN_SOLUTION not in cell.source:
                return super()._replace_solution_region(cell, language)
            try:
                cell.source = release_text(cell.source)
            except stubs.StubError:
                return super()._replace_solution_region(cell, language)
            return True

    return StubSolutions


# --------------------------------------------------------------------------- nbgrader-import

@dataclass
class ImportReport:
    graded: dict[str, int] = field(default_factory=dict)      # assignment -> submissions imported
    notes: list[str] = field(default_factory=list)
    students: set[str] = field(default_factory=set)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


def course_directory(course: Path):
    """nbgrader's CourseDirectory for COURSE, with its nbgrader_config.py applied."""
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    config = Config()
    if (course / CONFIG_FILE).is_file():
        config = PyFileConfigLoader(CONFIG_FILE, path=str(course)).load_config()
    coursedir = CourseDirectory(config=config)
    if "root" not in config.get("CourseDirectory", {}):
        coursedir.root = str(course)
    return coursedir


def nbgrader_student(record: dict) -> str:
    """The nbgrader student id of a result: the name of the folder it was graded from
    (`submitted/<student>`), which the grader's own id may have had to alter."""
    extra = record["extra_data"]
    source = str(extra.get("source") or "")
    from grader.submissions import ARCHIVE_SUFFIXES
    for suffix in ARCHIVE_SUFFIXES:
        if source.lower().endswith(suffix):
            source = source[: -len(suffix)]
    return source or extra["student"]


def import_results(out: Path, course: Path) -> ImportReport:
    """Scores and feedback of `grader grade`'s OUT into COURSE's gradebook and autograded/."""
    from nbgrader.api import Gradebook, MissingEntry

    from grader.gradebook import load_all

    out, course = Path(out).resolve(), Path(course).resolve()
    if not (course / CONFIG_FILE).is_file():
        raise CourseError(f"{course} is not an nbgrader course folder (no {CONFIG_FILE})")
    records = load_all(out)
    if not records:
        raise CourseError(f"{out} holds no results of `grader grade` (*/results.json)")
    coursedir = course_directory(course)
    report = ImportReport()
    with Gradebook(coursedir.db_url, coursedir.course_id) as gb:
        for record in records:
            student = nbgrader_student(record)
            for chapter, info in sorted(record["extra_data"].get("chapters", {}).items()):
                assignment = f"ch{chapter}"
                try:
                    gb.find_notebook(assignment, assignment)
                except MissingEntry:
                    report.note(f"{assignment} is not in the gradebook: run `nbgrader generate_assignment "
                                f"{assignment}` first; its results were not imported")
                    continue
                if info.get("status") == "missing":
                    continue  # nothing submitted: nbgrader's export counts 0
                if info.get("status") == "error":
                    report.note(f"{student} {assignment}: awaiting a regrade; not imported")
                    continue
                _import_one(gb, coursedir, student, assignment, record, report)
                report.graded[assignment] = report.graded.get(assignment, 0) + 1
                report.students.add(student)
    return report


def _import_one(gb, coursedir, student: str, assignment: str, record: dict, report: ImportReport) -> None:
    """One student's chapter: the submission, a grade per test cell, and the autograded notebook."""
    submitted = Path(coursedir.format_path(coursedir.submitted_directory, student, assignment))
    gb.update_or_create_student(student)
    timestamp = coursedir.get_existing_timestamp(str(submitted))
    gb.update_or_create_submission(assignment, student, **({"timestamp": timestamp} if timestamp else {}))
    scores = cell_scores(record, assignment)
    notebook = gb.find_notebook(assignment, assignment)
    for grade_cell in notebook.grade_cells:
        grade = gb.find_grade(grade_cell.name, assignment, assignment, student)
        found = scores.get(grade_cell.name)
        if found is None:
            report.note(f"{assignment}: grade cell {grade_cell.name} is not a test cell of "
                        "`grader nbgrader`; left for manual grading")
            continue
        grade.auto_score = min(found.earned, grade_cell.max_score)
        grade.needs_manual_grade = grade.manual_score is not None
    gb.db.commit()
    path = submitted / f"{assignment}.ipynb"
    if not path.is_file():
        report.note(f"{student} {assignment}: no {path.name} in {submitted}; scores imported "
                    "without an autograded notebook (no feedback for it)")
        return
    try:
        _write_autograded(gb, coursedir, student, assignment, path, scores)
    except Exception as exc:  # noqa: BLE001 - one student's unreadable notebook must not stop the import
        gb.db.rollback()
        report.note(f"{student} {assignment}: scores imported, but {path.name} could not be written to "
                    f"autograded/ ({type(exc).__name__}: {str(exc)[:120]})")


@dataclass
class CellScore:
    earned: float = 0.0
    lines: list[str] = field(default_factory=list)   # one per test
    failed: int = 0
    reason: str = ""                                  # why the chapter scored as it did, if not graded


def cell_scores(record: dict, assignment: str) -> dict[str, CellScore]:
    """Test cell id -> points earned and the feedback lines for that cell, from results.json."""
    chapter = assignment[2:]
    info = record["extra_data"]["chapters"][chapter]
    scores: dict[str, CellScore] = {}
    for test in record.get("tests", []):
        tags = test.get("tags") or []
        if len(tags) < 3 or tags[1] != assignment or "not counted" in tags:
            continue
        task, kind = tags[0], tags[2]
        cell = scores.setdefault(grade_cell_id(task, kind), CellScore())
        cell.earned += float(test.get("score") or 0)
        name = str(test.get("name", "")).removeprefix(f"{task} ").removesuffix(" (hidden)")
        if test.get("status") == "passed":
            cell.lines.append(f"  passed  {name}")
        else:
            cell.failed += 1
            cell.lines.append(f"  FAILED  {name}: {test.get('output') or 'failed'}")
    if info.get("status") not in ("graded", "crashed") and info.get("reason"):
        for cell in scores.values():
            cell.reason = f"{info['status']}: {info['reason']}"
    return scores


def cell_lines(cell_id: str, score: CellScore, points: float) -> list[str]:
    """A test cell's text, as `grader.notebook.run_task` words it."""
    task, kind = task_of_cell(cell_id)
    head = f"{task}, {kind} tests: {score.earned:g} / {points:g} points"
    if score.reason:
        head += f" ({score.reason})"
    total = len(score.lines)
    tail = f", {score.failed} of {total} failed:" if score.failed else f", {total} of {total} pass"
    return [head + tail] + score.lines


def _write_autograded(gb, coursedir, student: str, assignment: str, path: Path,
                      scores: dict[str, CellScore]) -> None:
    """The submitted notebook as nbgrader's autograde would leave it (outputs cleared,
    read-only and test cells restored from the gradebook), with each test cell showing its
    result, so formgrader and generate_feedback have a notebook to show."""
    import nbformat
    from nbgrader import utils
    from nbgrader.preprocessors import (CheckCellMetadata, ClearOutput, DeduplicateIds,
                                        OverwriteCells, OverwriteKernelspec)

    nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
    resources = {"nbgrader": {"notebook": assignment, "assignment": assignment, "student": student,
                              "db_url": coursedir.db_url}}
    for step in (ClearOutput, DeduplicateIds, OverwriteKernelspec, OverwriteCells, CheckCellMetadata):
        nb, resources = step().preprocess(nb, resources)
    for cell in nb.cells:
        gid = grade_id(cell)
        if gid in scores and utils.is_grade(cell):
            points = float(cell.metadata.nbgrader["points"])
            cell.outputs = _outputs(scores[gid].earned, cell_lines(gid, scores[gid], points), points)
        if utils.is_solution(cell) and gid:
            comment = gb.find_comment(gid, assignment, assignment, student)
            unchanged = cell.metadata.nbgrader.get("checksum") == utils.compute_checksum(cell)
            comment.auto_comment = "No response." if unchanged else None
    gb.db.commit()
    dest = Path(coursedir.format_path(coursedir.autograded_directory, student, assignment))
    dest.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(dest / path.name))
    stamp = path.parent / "timestamp.txt"
    if stamp.is_file():
        shutil.copy2(stamp, dest / "timestamp.txt")


def _outputs(earned: float, lines: list[str], points: float) -> list:
    """A test cell's outputs as `run_task` leaves them: the lines, and the points earned
    when partial, or an error when none."""
    from nbformat.v4 import new_output

    if earned <= 0 < points:
        return [new_output("error", ename="TaskFailed", evalue="\n".join(lines),
                           traceback=[f"TaskFailed: {lines[0]}"] + lines[1:])]
    outputs = [new_output("stream", name="stdout", text="\n".join(lines) + "\n")]
    if earned < points:
        outputs.append(new_output("execute_result", data={"text/plain": f"{earned:g}"},
                                  execution_count=None))
    return outputs


# --------------------------------------------------------------------------- the commands

def cmd_nbgrader(args: argparse.Namespace) -> int:
    from grader.release import parse_chapters

    try:
        require_nbgrader()
        report = write_course(Path(args.dest), parse_chapters(args.chapters))
    except CourseError as exc:
        print(f"grader nbgrader: {exc}", file=sys.stderr)
        return 2
    print(f"nbgrader course in {report.dest}" + ("" if report.config_written else
                                                   f" ({CONFIG_FILE} kept as it was)"))
    for chapter, (tasks, total) in sorted(report.notebooks.items()):
        print(f"  source/ch{chapter}/ch{chapter}.ipynb: {tasks} tasks, {total.public + total.hidden:g} "
              f"points ({total.public:g} public, {total.hidden:g} hidden)")
    first = min(report.notebooks)
    print(f"next: cd {report.dest} && PATH={Path(sys.prefix) / 'bin'}:$PATH nbgrader generate_assignment ch{first}")
    return 0


def cmd_nbgrader_import(args: argparse.Namespace) -> int:
    try:
        require_nbgrader()
        report = import_results(Path(args.out), Path(args.course))
    except CourseError as exc:
        print(f"grader nbgrader-import: {exc}", file=sys.stderr)
        return 2
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    counts = ", ".join(f"{a}: {n}" for a, n in sorted(report.graded.items())) or "nothing"
    print(f"imported {sum(report.graded.values())} submission(s) of {len(report.students)} student(s) "
          f"into {Path(args.course).resolve()}/gradebook.db ({counts}); feedback notebooks in autograded/")
    print("next: nbgrader export, nbgrader generate_feedback, or formgrader")
    return 0


EXAMPLES = """\
examples:
  grader nbgrader ../course --chapters 03,05,08     write the course's source notebooks
  cd ../course && nbgrader generate_assignment ch05 release a chapter (the venv's bin/ on PATH)
  nbgrader autograde ch05                           grade with nbgrader itself, or in the sandbox:
  grader grade ../course/submitted -o out           ... then
  grader nbgrader-import out ../course              scores and feedback into nbgrader's gradebook
"""


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "nbgrader", help="write the chapters as an nbgrader course (source notebooks, config)",
        description="Write an nbgrader course folder into DEST: nbgrader_config.py and, per chapter, "
                    "source/chNN/chNN.ipynb built from solutions/ and the tests. Solution cells release "
                    "as the stubs of exercises/; each task has a public and a hidden test cell worth "
                    "its tests' points. Needs the nbgrader extra.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dest", metavar="DEST", help="the course folder (new, empty, or a course written before)")
    p.add_argument("--chapters", default=None, metavar="03,05,...",
                   help="these chapters (default: every chapter with tests)")
    p.set_defaults(func=cmd_nbgrader)

    p = sub.add_parser(
        "nbgrader-import", help="write grader grade's scores and feedback into an nbgrader gradebook",
        description="Read OUT (the output of `grader grade COURSE/submitted -o OUT`) and write every "
                    "graded chapter into COURSE's gradebook (a score per test cell) and its notebook "
                    "with the results into COURSE/autograded, for formgrader, `nbgrader export` and "
                    "`nbgrader generate_feedback`. Needs the nbgrader extra.")
    p.add_argument("out", metavar="OUT", help="output folder of grader grade")
    p.add_argument("course", metavar="COURSE", help="the nbgrader course folder")
    p.set_defaults(func=cmd_nbgrader_import)


# --------------------------------------------------------------------------- benchmark

def notebook_with_module(release: dict, chapter: str, text: str) -> dict:
    """The released notebook with its code cells holding `text`, a chapter file: how a
    student who wrote that file would submit the notebook."""
    plan = chapter_plan(chapter)
    chunks = split_module(text)
    if len(chunks) != sum(c.parts for c in plan.cells):
        raise CourseError(f"the file does not split into ch{chapter}'s notebook cells")
    sources = {}
    for cell in plan.cells:
        group, chunks = chunks[:cell.parts], chunks[cell.parts:]
        sources[cell.grade_id] = join_cells(cell_text(chunk) for chunk in group)[:-1]
    nb = json.loads(json.dumps(release))
    for cell in nb["cells"]:
        if grade_id(cell) in sources:
            cell["source"] = sources[grade_id(cell)]
    return nb


def benchmark_autograde(subs: Path, base: Path, chapter: str) -> dict[str, float]:
    """nbgrader's own autograde of a folder of chapter files (SUBS/<student>/chNN_name.py),
    each submitted as the chapter's notebook, for `benchmarks/compare.py` to time beside the
    other ways of grading. Returns student -> score."""
    from nbgrader.api import Gradebook

    require_nbgrader()
    course, assignment = Path(base) / "course", f"ch{chapter}"
    write_course(course, [chapter])
    _nbgrader(["generate_assignment", assignment], course)
    release = json.loads((course / "release" / assignment / f"{assignment}.ipynb").read_text(encoding="utf-8"))
    for folder in sorted(p for p in Path(subs).iterdir() if p.is_dir()):
        text = (folder / CHAPTERS[chapter].filename).read_text(encoding="utf-8")
        dest = course / "submitted" / folder.name / assignment
        dest.mkdir(parents=True)
        _write_json(dest / f"{assignment}.ipynb", notebook_with_module(release, chapter, text))
    _nbgrader(["autograde", assignment], course)
    with Gradebook(course_directory(course).db_url) as gb:
        return {s.student.id: float(s.score) for s in gb.find_assignment(assignment).submissions}


def _nbgrader(args: list[str], course: Path) -> None:
    """An nbgrader command in COURSE, with this Python's bin/ on PATH (nbgrader runs alembic)."""
    import subprocess

    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run([str(bin_dir / "nbgrader"), *args], cwd=course, env=env,
                          capture_output=True, text=True)
    if done.returncode:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise CourseError(f"nbgrader {' '.join(args)} failed: {tail[0]}")
