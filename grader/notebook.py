"""Chapter notebooks: the chapter module read from a notebook's cells, and the test cells' `run_task`.

A chapter notebook (written by `grader nbgrader`) holds the chapter module split into code
cells whose nbgrader ids are `code_00`, `code_01`, ...: joined in that order, two blank
lines apart, they are the chapter file (`ch05_linear_regression.py`). Cells a student adds
have no such id and are not part of the module, so scratch work never reaches the grader.

The test cells call `run_task`, which lives here, in the installed package, rather than in
the notebook: it writes the module cells into the chapter file in a temporary folder and
runs that task's tests through pytest in a fresh Python (the path `grader check` takes on
Windows and macOS), so nothing the notebook's kernel has defined or changed takes part in
the verdict. Its result is what nbgrader reads from a cell:

* every test passes: the cell prints its points and ends normally (full credit);
* some pass: it prints what to fix and its value is the points earned (nbgrader's partial
  credit), so nbgrader gives the same points as `grader grade`;
* none pass: it raises `TaskFailed`, an AssertionError with the failure messages.

Tests marked `gpu` are not part of a notebook's points: nbgrader fixes the maximum when the
assignment is generated, while those tests count only on a machine with CUDA.

Nothing here imports torch, pytest or nbgrader: the kernel starts them only in the child.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

from grader.syllabus import ALL_TASKS, CHAPTERS, normalise_chapter

MODULE_ID_RE = re.compile(r"^code_(\d{2,3})$")
CELL_SEPARATOR = "\n\n\n"      # module cells are joined two blank lines apart
RUN_TIMEOUT = 600.0             # wall-clock seconds for one pytest run of a chapter's tests
NOTEBOOK_LIMIT = 64 << 20       # a larger file is not a chapter notebook


class NotebookError(ValueError):
    """A file is not a usable chapter notebook; the message is one line."""


class TaskFailed(AssertionError):
    """No test of the task passes. IPython shows `lines` instead of a traceback through
    the grader's code, which would tell a student nothing."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines

    def _render_traceback_(self) -> list[str]:
        return [f"TaskFailed: {self.lines[0]}"] + self.lines[1:]


# --------------------------------------------------------------------------- cells and module

def cell_source(cell: Mapping[str, Any]) -> str:
    """A cell's text; nbformat allows a string or a list of lines."""
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def grade_id(cell: Mapping[str, Any]) -> str | None:
    """The nbgrader id of a cell that nbgrader tracks (grade, solution or read-only)."""
    meta = cell.get("metadata")
    meta = meta.get("nbgrader") if isinstance(meta, dict) else None
    if not isinstance(meta, dict) or not any(meta.get(k) for k in ("grade", "solution", "locked")):
        return None
    value = meta.get("grade_id")
    return value if isinstance(value, str) else None


def module_id(number: int) -> str:
    return f"code_{number:02d}"


def module_cells(cells: Iterable[Mapping[str, Any]]) -> dict[int, Mapping[str, Any]]:
    """Module cell number -> its cell. When a student has copied a cell, its last copy
    counts, as nbgrader's autograde decides (DeduplicateIds keeps the last)."""
    found = {}
    for cell in cells:
        match = MODULE_ID_RE.match(grade_id(cell) or "")
        if match and cell.get("cell_type") == "code":
            found[int(match.group(1))] = cell
    return found


def join_cells(sources: Iterable[str]) -> str:
    """The chapter file made of module cell texts (each without its final newline)."""
    return CELL_SEPARATOR.join(sources) + "\n"


def read_notebook(data: bytes, name: str = "notebook") -> dict:
    """A notebook's JSON, checked just enough to read cells from it safely."""
    if len(data) > NOTEBOOK_LIMIT:
        raise NotebookError(f"{name} is larger than {NOTEBOOK_LIMIT >> 20} MB")
    try:
        nb = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise NotebookError(f"{name} is not a notebook (not JSON: {str(exc)[:80]})") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list) \
            or not all(isinstance(c, dict) for c in nb["cells"]):
        raise NotebookError(f"{name} is not a notebook (no list of cells)")
    return nb


def module_source(nb: Mapping[str, Any], executed: Mapping[str, str] | None = None) -> str:
    """The chapter file from a notebook's module cells, in id order. `executed` (cell id ->
    source as last run in the kernel) takes precedence over the saved text, so a test cell
    checks the code the student ran, saved or not."""
    cells = module_cells(nb.get("cells", []))
    if not cells:
        raise NotebookError("the notebook has no cells of the chapter module (nbgrader ids "
                            "code_00, code_01, ...): is it a chapter notebook of `grader nbgrader`?")
    executed = executed or {}
    return join_cells(executed.get(str(cell.get("id")), cell_source(cell))
                      for _, cell in sorted(cells.items()))


# --------------------------------------------------------------------------- in the kernel

_EXECUTED: dict[str, str] = {}     # cell id -> source, as the kernel last ran it
_RUNS: dict[tuple, Any] = {}       # (module hash, chapter, selection, tests) -> RunOutcome
_HOOKED: list[bool] = []


def setup(chapter: str) -> tuple[str, str]:
    """The notebook's first cell. Lets the test cells see code the student ran before saving
    (IPython reports each cell's id as the front end sends it), points the code at the
    course's data, and returns `__name__` and `__file__` for the notebook's namespace.

    `__file__` is the chapter file's path, which module code may use. `__name__` stays
    "__main__" in Jupyter, so the last cell runs the demonstration as the script would; under
    nbgrader (validate, autograde) it is the module's name, so the cells run as the grader
    imports the module and a demonstration guarded by `if __name__ == "__main__":` (training
    for minutes in later chapters) does not run for every submission. It decides no points:
    the tests run in a fresh Python either way."""
    number = normalise_chapter(chapter)
    from grader.paths import datasets_dir
    os.environ.setdefault("PRACTICE_DATASETS", str(datasets_dir()))
    under_nbgrader = bool(os.environ.get("NBGRADER_EXECUTION"))
    if under_nbgrader:
        os.environ.setdefault("PRACTICE_EPOCHS", "1")   # an unguarded demonstration stays short
    _record_executed_cells()
    name = CHAPTERS[number].module if under_nbgrader else "__main__"
    return name, str(Path.cwd() / CHAPTERS[number].filename)


def _record_executed_cells() -> None:
    """Keep each cell's source as the kernel runs it, once per kernel. Only front ends that
    send cell ids (JupyterLab, Notebook 7) provide them; nbgrader's runs read the saved file."""
    try:
        from IPython import get_ipython
    except ImportError:  # not in IPython: the saved notebook is all there is
        return
    shell = get_ipython()
    if shell is None or _HOOKED:
        return

    def record(info) -> None:
        cell_id = getattr(info, "cell_id", None)
        if cell_id:
            _EXECUTED[str(cell_id)] = info.raw_cell

    shell.events.register("pre_run_cell", record)
    _HOOKED.append(True)


def run_task(task: str, *, public: bool = False, hidden: bool = False,
             notebook: str | os.PathLike | None = None) -> float | None:
    """Run the public or the hidden tests of `task` on the notebook's chapter module; see
    the module's docstring for what the cell shows and what nbgrader reads from it."""
    if public == hidden:
        raise ValueError("run_task: pass exactly one of public=True or hidden=True")
    if task not in ALL_TASKS:
        raise ValueError(f"run_task: {task!r} is not a task of the course")
    chapter = task.split(".")[0][2:]
    kind = "public" if public else "hidden"
    source = module_source(read_notebook(_notebook_path(chapter, notebook).read_bytes()), _EXECUTED)
    outcome = _run_chapter(chapter, source, kind)
    earned, possible, lines = task_score(outcome, task, hidden)
    if earned >= possible:
        print("\n".join(lines))
        return None
    if earned > 0:
        print("\n".join(lines))
        return earned
    raise TaskFailed(lines)


def _notebook_path(chapter: str, notebook: str | os.PathLike | None) -> Path:
    """The notebook the test cell belongs to: as given, else chNN.ipynb in the kernel's
    folder (Jupyter and nbgrader run a notebook in its own folder), else the notebook the
    Jupyter server started this kernel for (a renamed copy). The server's name comes second:
    a kernel that nbgrader started from inside another notebook inherits that one's name."""
    if notebook is not None:
        return Path(notebook)
    path = Path.cwd() / f"ch{chapter}.ipynb"
    session = os.environ.get("JPY_SESSION_NAME", "")
    if not path.is_file() and session.endswith(".ipynb") and Path(session).is_file():
        return Path(session)
    if not path.is_file():
        raise NotebookError(f"cannot find ch{chapter}.ipynb in {Path.cwd()}: run the notebook from "
                            "its own folder, or pass notebook=PATH")
    return path


def _selection() -> str:
    """Under nbgrader's autograde one run serves every test cell (public and hidden);
    elsewhere each kind runs on its own, and a student's machine has only public tests."""
    return "all" if os.environ.get("NBGRADER_EXECUTION") == "autograde" else ""


def _run_chapter(chapter: str, source: str, kind: str):
    """The chapter's tests of `kind` on `source`, run once per module text."""
    import hashlib
    from grader.paths import tests_dir

    tests = tests_dir(os.environ.get("PRACTICE_TESTS") or None)
    selection = _selection() or kind
    key = (hashlib.sha256(source.encode("utf-8")).hexdigest(), chapter, selection, str(tests))
    if key not in _RUNS:
        _RUNS.clear()  # one chapter's module at a time: a changed cell makes a new run
        _RUNS[key] = _run_pytest(chapter, source, selection, tests)
    return _RUNS[key]


def _run_pytest(chapter: str, source: str, selection: str, tests: Path):
    from grader.check import run_pytest_subprocess
    from grader.process import chapter_test_args

    marks = {"public": ["-m", "not hidden"], "hidden": ["-m", "hidden"], "all": []}[selection]
    with tempfile.TemporaryDirectory(prefix=f"ch{chapter}-notebook-") as folder:
        (Path(folder) / CHAPTERS[chapter].filename).write_text(source, encoding="utf-8")
        args = chapter_test_args(chapter, folder, tests_dir=tests, extra=marks)
        return run_pytest_subprocess(args, timeout=RUN_TIMEOUT)


def task_score(outcome, task: str, hidden: bool) -> tuple[float, float, list[str]]:
    """(points earned, points possible, lines for the cell) of one task's public or hidden
    tests in a run's outcome. Raises TaskFailed when there is nothing to score."""
    kind = "hidden" if hidden else "public"
    if outcome.error:
        raise TaskFailed([f"{task}, {kind} tests: {outcome.error}"])
    results = outcome.results
    if results.collection_errors:
        raise TaskFailed([f"{task}: the tests could not be collected"] + results.collection_errors[:3])
    tests = [t for t in results.tests if t.task == task and t.hidden == hidden and not t.gpu]
    if not tests:
        where = "the course's tests" if not hidden else "the instructor's hidden tests"
        raise TaskFailed([f"no {kind} tests of {task} ran: {where} are not on this machine"])
    earned = sum(t.score for t in tests)
    possible = sum(t.points for t in tests)
    failed = [t for t in tests if t.failed]
    head = f"{task}, {kind} tests: {earned:g} / {possible:g} points"
    if not failed:
        return earned, possible, [f"{head}, {len(tests)} of {len(tests)} pass"]
    lines = [f"{head}, {len(failed)} of {len(tests)} failed:"]
    seen = set()
    for t in failed:
        if t.message not in seen:   # a stub fails every test the same way
            seen.add(t.message)
            lines.append(f"  FAILED  {t.name}: {t.message}")
    return earned, possible, lines
