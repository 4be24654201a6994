"""Per-student output: results.json (Gradescope's format), feedback.md and log.txt.

Each is a view of one `SubmissionResult`. A student's folder is written to a temporary
folder and renamed into place, so an interrupted run never leaves a half-written student
behind. Everything a student's code controls passes through the `Redactor` first.
"""
from __future__ import annotations

import functools
import html
import itertools
import json
import math
import os
import platform
import re
import shutil
import time
from pathlib import Path
from typing import Callable

from grader import __version__
from grader.manifest import fingerprint
from grader.redact import Redactor, printable
from grader.results import ChapterResult, Outcome, Status, SubmissionResult, TestResult, status_text, task_rows
from grader.syllabus import CHAPTERS

def ordered_tests(cr: ChapterResult) -> list[TestResult]:
    """A chapter's tests as Gradescope lists them: public before hidden, each in task order
    (the syllabus's), then in the order they were collected. So what a student sees before
    grades are published is numbered 1, 2, 3, ... without gaps."""
    tasks = {task: i for i, task in enumerate(CHAPTERS[cr.chapter].task_ids())}
    indexed = list(enumerate(cr.tests.values()))
    indexed.sort(key=lambda it: (it[1].hidden, tasks.get(it[1].task, len(tasks)), it[0]))
    return [t for _, t in indexed]


def results_json(result: SubmissionResult, redact: Redactor, *, limits: dict) -> dict:
    """Gradescope's results format. The top-level `output`, which Gradescope shows at once,
    holds only what is visible now: the public tests (see `visible_feedback_md`); the hidden
    tests' results are in `tests`, `after_published`, and in feedback.md."""
    sub = result.submission
    tests = []
    chapters = {}
    for c, cr in sorted(result.chapters.items()):
        for k, t in enumerate(ordered_tests(cr), 1):
            score = 0.0 if cr.void else t.score
            message = redact(t.message, 600) if t.outcome != Outcome.PASSED else ""
            if not t.counted:
                message = f"not counted on this machine: {message}"
            if cr.status == Status.TAMPERED:
                message = f"chapter scored 0: {redact(cr.reason, 300)}"
            entry = {
                "name": f"{t.task} {t.name}" + (" (hidden)" if t.hidden else ""),
                "score": score,
                "max_score": t.possible,
                "status": "passed" if t.outcome == Outcome.PASSED and not cr.void else "failed",
                "visibility": "after_published" if t.hidden else "visible",
                "output": message,
                "tags": [t.task, f"ch{c}", "hidden" if t.hidden else "public"],
                "number": f"{int(c)}.{k}",
            }
            if not t.counted:  # neither passed nor failed: it does not count here
                del entry["status"]
                entry["tags"].append("not counted")
            tests.append(entry)
        chapters[c] = {
            "title": CHAPTERS[c].title,
            "file": CHAPTERS[c].filename,
            "score": cr.score, "max_score": cr.max_score,
            "status": cr.status, "reason": redact(cr.reason, 600),
            "tampered": [redact(x, 200) for x in cr.tampered],
            "device": cr.device, "wall": round(cr.wall, 3), "cpu": round(cr.cpu, 3),
            "runs": cr.runs, "crashes": cr.crashes, "load_at_limit": cr.limit_load,
            "file_sha256": cr.file_sha256, "tests_sha256": cr.tests_sha256,
            "tasks": {row.task: [row.earned, row.possible] for row in cr.task_rows()},
            "durations": {t.nodeid: round(t.duration, 4) for t in cr.tests.values() if t.reported},
            "cpu_seconds": {t.nodeid: round(t.cpu, 4) for t in cr.tests.values() if t.reported},
        }
    devices = sorted({cr.device for cr in result.chapters.values() if cr.device})
    return {
        "score": result.score,
        "execution_time": round(result.wall, 3),
        "output": visible_feedback_md(result, redact),
        "output_format": "md",
        "test_output_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        "extra_data": {
            "student": sub.student,
            "source": printable(sub.source.name),
            "graded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "graded_at_ns": time.time_ns(),
            "max_score": result.max_score,
            "fingerprint": fingerprint(sub.file_hashes(),
                                       {c: cr.tests_sha256 for c, cr in result.chapters.items()}),
            "files": dict(sub.file_hashes()),
            "unreadable": redact(sub.error, 300),
            "regrade": result.regrade,
            "review": [redact(line, 200) for line in sub.review],  # instructors only: never a score
            "notes": [redact(n, 300) for n in sub.notes[:50]],
            "device": ",".join(devices) or "none",
            "chapters": chapters,
            "isolation": result.isolation,
            "limits": limits,
            "stray_files_removed": len(result.stray_files),
            "grader": {"version": __version__, "python": platform.python_version(),
                       "torch": _torch_version()},
        },
    }


@functools.cache
def _torch_version() -> str:
    """Read once per grading run (a metadata lookup scans site-packages: 2.6 ms a student)."""
    from importlib import metadata
    try:
        return metadata.version("torch")  # without importing it: the grader process never does
    except metadata.PackageNotFoundError:  # pragma: no cover
        return ""


_MD_SPECIAL = re.compile(r"([\\`*_\[\]!~|#])")


def _md(text: str) -> str:
    """Text a student's code controls, inside markdown: one line, no HTML, and every
    character that could start a link, an image, emphasis, code or a table cell escaped."""
    return _MD_SPECIAL.sub(r"\\\1", html.escape(" ".join(str(text).split()), quote=False))


def strict_json(value):
    """`value` with every non-finite float (NaN, Infinity) replaced by None: results.json
    must parse with strict JSON parsers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def feedback_md(result: SubmissionResult, redact: Redactor) -> str:
    sub = result.submission
    out = [f"# Feedback for {_md(sub.student)}", "",
           f"**Total: {result.score:g} / {result.max_score:g} points**", ""]
    if sub.error:
        out += [f"Your submission could not be read: {_md(redact(sub.error, 300))}", ""]
    if sub.notes:
        out += ["Notes on your submission:", ""] + [f"- {_md(redact(n, 300))}" for n in sub.notes[:20]] + [""]
    for c, cr in sorted(result.chapters.items()):
        chapter = CHAPTERS[c]
        out += [f"## ch{c} {chapter.title}: {cr.score:g} / {cr.max_score:g}", ""]
        if cr.status not in (Status.GRADED, Status.CRASHED):
            out += [f"**{status_text(cr.status)}**: {_md(redact(cr.reason, 600))}", ""]
            if cr.status == Status.ERROR:
                out += ["This is a failure of the grader, not of your work: no score was written, "
                        "and the chapter is graded again on the next run.", ""]
            if cr.void or cr.status == Status.IMPORT_ERROR:
                continue
        out += ["| task | points | result |", "| --- | ---: | --- |"]
        for row in cr.task_rows():
            result_text = "all tests pass" if not row.failed else f"{row.failed} of {row.total} tests failed"
            out.append(f"| {row.task} | {row.earned:g} / {row.possible:g} | {result_text} |")
        out.append("")
        failures = [t for t in cr.tests.values() if t.failed]
        if failures:
            out += ["What to fix:", ""]
            for t in failures:
                kind = " (hidden test)" if t.hidden else ""
                out.append(f"- [{t.task}] `{t.name}`{kind}: {_md(redact(t.message, 600))}")
            out.append("")
        skipped = [t for t in cr.tests.values() if t.outcome == Outcome.SKIPPED]
        if skipped:
            out += [f"Skipped on this machine: {', '.join(f'`{t.name}`' for t in skipped)} "
                    f"({_md(redact(skipped[0].message, 200))}); no points for them here.", ""]
    return "\n".join(out).rstrip() + "\n"


HIDDEN_LATER = ("Hidden tests ran on your work too: their results, and your total, appear here "
                "when grades are published.")


def visible_feedback_md(result: SubmissionResult, redact: Redactor) -> str:
    """What a student may see before grades are published: per chapter the public tests'
    points per task and what to fix, the chapter's status (a file missing, an import error,
    a time limit), and a note that the hidden tests' results come later. No hidden test's
    name, message or points, and no total that includes them."""
    sub = result.submission
    public = [t for cr in result.chapters.values() for t in cr.tests.values() if not t.hidden]
    hidden = sum(t.hidden for cr in result.chapters.values() for t in cr.tests.values())
    earned = sum(0.0 if result.chapters[c].void else t.score
                 for c, cr in result.chapters.items() for t in cr.tests.values() if not t.hidden)
    out = [f"# Feedback for {_md(sub.student)}", "",
           f"**Public tests: {earned:g} / {sum(t.possible for t in public):g} points**", ""]
    if hidden:
        out += [HIDDEN_LATER, ""]
    if sub.error:
        out += [f"Your submission could not be read: {_md(redact(sub.error, 300))}", ""]
    if sub.notes:
        out += ["Notes on your submission:", ""] + [f"- {_md(redact(n, 300))}" for n in sub.notes[:20]] + [""]
    for c, cr in sorted(result.chapters.items()):
        out += _visible_chapter(cr, redact)
    return "\n".join(out).rstrip() + "\n"


def _visible_chapter(cr: ChapterResult, redact: Redactor) -> list[str]:
    tests = [t for t in cr.tests.values() if not t.hidden]
    rows = task_rows(cr.chapter, tests, cr.void)
    earned = sum(r.earned for r in rows)
    out = [f"## ch{cr.chapter} {CHAPTERS[cr.chapter].title}: public tests "
           f"{earned:g} / {sum(r.possible for r in rows):g}", ""]
    if cr.status not in (Status.GRADED, Status.CRASHED):
        out += [f"**{status_text(cr.status)}**: {_md(redact(cr.reason, 600))}", ""]
        if cr.void or cr.status == Status.IMPORT_ERROR:
            return out
    if rows:
        out += ["| task | public points | result |", "| --- | ---: | --- |"]
        for row in rows:
            text = "all tests pass" if not row.failed else f"{row.failed} of {row.total} tests failed"
            out.append(f"| {row.task} | {row.earned:g} / {row.possible:g} | {text} |")
        out.append("")
    failures = [t for t in tests if t.failed]
    if failures:
        out += ["What to fix:", ""]
        out += [f"- [{t.task}] `{t.name}`: {_md(redact(t.message, 600))}" for t in failures]
        out.append("")
    return out


def write_student(out: Path, result: SubmissionResult, redact: Redactor, limits: dict,
                  discard: Callable[[Path], None] | None = None) -> dict:
    """Write OUT/<student>/{results.json,feedback.md,log.txt} atomically; returns results.
    `discard(folder)` deletes what it replaces (at once by default)."""
    student = result.submission.student
    feedback = feedback_md(result, redact)
    data = results_json(result, redact, limits=limits)
    tmp = out / f".tmp-{student}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    (tmp / "feedback.md").write_text(feedback, encoding="utf-8")
    (tmp / "log.txt").write_text(redact(result.log), encoding="utf-8")
    (tmp / "results.json").write_text(json.dumps(strict_json(data), indent=1, ensure_ascii=False,
                                                 allow_nan=False), encoding="utf-8")
    replace_dir(tmp, out / student, discard)
    return data


_OLD = itertools.count()


def replace_dir(new: Path, target: Path, discard: Callable[[Path], None] | None = None) -> None:
    old = None
    if target.exists():
        old = target.parent / f".old-{target.name}-{os.getpid()}-{next(_OLD)}"
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        if discard is None:
            shutil.rmtree(old, ignore_errors=True)
        else:
            discard(old)


def clean_leftovers(out: Path) -> None:
    """Temporary folders of an interrupted run."""
    for p in out.glob(".tmp-*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in out.glob(".old-*"):
        shutil.rmtree(p, ignore_errors=True)


