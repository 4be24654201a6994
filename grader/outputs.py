"""Score and write: results.json, feedback.md and log.txt per student; grades.csv; the summary.

Every student's folder is written to a temporary folder and renamed into place, so an
interrupted run never leaves a half-written student behind; `grades.csv` (and the HTML
report) are rebuilt from all `results.json` files at the end of every run and by
`grader merge`.

Anything a student's code controls (exception messages, printed output, file names) is
cleaned before it is written: undecodable bytes made visible, long text truncated, and
every distinctive line of the hidden tests' source removed, so a submission that reads
and prints the hidden tests still cannot carry them into feedback.
"""
from __future__ import annotations

import csv
import html
import io
import json
import os
import platform
import shutil
import statistics
import time
from pathlib import Path

from grader import __version__
from grader.collect import printable
from grader.scheduler import ChapterResult, Manifest, SubmissionResult
from grader.syllabus import CHAPTERS

REDACTED = "[hidden test source removed]"
STATUS_TEXT = {
    "graded": "graded",
    "missing": "file missing",
    "import-error": "does not import",
    "tampered": "TAMPERED",
    "timeout": "time limit",
    "crashed": "crashed",
    "error": "could not grade",
    "unreadable": "unreadable submission",
}


class Redactor:
    """Removes lines of the hidden tests' source from text a student's code controls."""

    def __init__(self, manifests: dict[str, Manifest]) -> None:
        lines = {ln for m in manifests.values() for ln in m.hidden_lines}
        self.lines = sorted(lines, key=len, reverse=True)

    def __call__(self, text: str, limit: int | None = None) -> str:
        text = printable_block(text)
        if limit is not None and len(text) > limit:
            text = text[:limit] + " [...]"
        for line in self.lines:
            if line in text:
                text = text.replace(line, REDACTED)
        return text


def printable_block(text: str) -> str:
    """Like `printable`, but keeps newlines."""
    return "\n".join(printable(part) for part in str(text).split("\n"))


# --------------------------------------------------------------------------- per student

def fingerprint(chapters: dict[str, ChapterResult]) -> dict:
    """What a grade depends on: each chapter's file and tests, by content hash."""
    return {c: [cr.file_sha256 or None, cr.tests_sha256] for c, cr in sorted(chapters.items())}


def wanted_fingerprint(files: dict[str, str], test_hashes: dict[str, str]) -> dict:
    """The fingerprint a submission would have if graded now (files: filename -> sha256,
    test_hashes: chapter -> hash of its tests)."""
    return {c: [files.get(CHAPTERS[c].filename), h] for c, h in sorted(test_hashes.items())}


def is_current(out: Path, student: str, want: dict) -> bool:
    try:
        data = json.loads((out / student / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    extra = data.get("extra_data", {}) if isinstance(data, dict) else {}
    return extra.get("fingerprint") == want and not extra.get("unreadable")


def task_rows(cr: ChapterResult) -> list[tuple[str, float, float, int, int]]:
    """(task, earned, possible, failed tests, tests) in syllabus order."""
    rows = []
    scale = 0.0 if cr.score == 0 and cr.status in ("tampered", "error", "unreadable", "missing") else 1.0
    for task in CHAPTERS[cr.chapter].task_ids():
        mine = [t for t in cr.tests.values() if t.task == task]
        if mine:
            rows.append((task, scale * sum(t.score for t in mine),
                         sum(t.points for t in mine if t.outcome != "skipped"),
                         sum(t.outcome in ("failed", "error") for t in mine), len(mine)))
    return rows


def results_json(result: SubmissionResult, redact: Redactor, *, limits: dict, feedback: str) -> dict:
    sub = result.submission
    tests = []
    chapters = {}
    void = {c for c, cr in result.chapters.items() if cr.score == 0 and cr.status in
            ("tampered", "error", "unreadable", "missing")}
    for c, cr in sorted(result.chapters.items()):
        for t in cr.tests.values():
            score = 0.0 if c in void else t.score
            possible = 0.0 if t.outcome == "skipped" else t.points  # not counted here (no GPU)
            message = redact(t.message, 600) if t.outcome != "passed" else ""
            if t.outcome == "skipped":
                message = f"skipped, not counted: {message}"
            if cr.status == "tampered":
                message = f"chapter scored 0: {redact(cr.reason, 300)}"
            tests.append({
                "name": f"{t.task} {t.name}" + (" (hidden)" if t.hidden else ""),
                "score": score,
                "max_score": possible,
                "status": "passed" if score >= possible and c not in void and t.outcome != "failed"
                          and t.outcome != "error" else "failed",
                "visibility": "after_published" if t.hidden else "visible",
                "output": message,
                "tags": [t.task, f"ch{c}", "hidden" if t.hidden else "public"],
            })
        chapters[c] = {
            "title": CHAPTERS[c].title,
            "file": CHAPTERS[c].filename,
            "score": cr.score, "max_score": cr.max_score,
            "status": cr.status, "reason": redact(cr.reason, 600),
            "tampered": [redact(x, 200) for x in cr.tampered],
            "device": cr.device, "wall": round(cr.wall, 3), "runs": cr.runs, "crashes": cr.crashes,
            "file_sha256": cr.file_sha256, "tests_sha256": cr.tests_sha256,
            "tasks": {task: [earned, possible] for task, earned, possible, _, _ in task_rows(cr)},
            "durations": {t.nodeid: round(t.duration, 4) for t in cr.tests.values() if t.reported},
        }
    devices = sorted({cr.device for cr in result.chapters.values() if cr.device})
    return {
        "score": result.score,
        "execution_time": round(result.wall, 3),
        "output": feedback,
        "output_format": "md",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        "extra_data": {
            "student": sub.student,
            "source": printable(sub.source.name),
            "graded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "graded_at_ns": time.time_ns(),
            "max_score": result.max_score,
            "fingerprint": fingerprint(result.chapters),
            "files": {name: h for name, h in sub.file_hashes().items()},
            "unreadable": redact(sub.error, 300),
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


def _torch_version() -> str:
    try:
        import torch
        return torch.__version__
    except ImportError:  # pragma: no cover
        return ""


def _md(text: str) -> str:
    """Student-facing text inside markdown: no HTML, no table breaks, one line."""
    return html.escape(" ".join(str(text).split()), quote=False).replace("|", "\\|")


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
        if cr.status not in ("graded", "crashed"):
            out += [f"**{STATUS_TEXT.get(cr.status, cr.status)}**: {_md(redact(cr.reason, 600))}", ""]
            if cr.status in ("missing", "unreadable", "tampered", "error", "import-error"):
                continue
        out += ["| task | points | result |", "| --- | ---: | --- |"]
        for task, earned, possible, failed, n in task_rows(cr):
            result_text = "all tests pass" if not failed else f"{failed} of {n} tests failed"
            out.append(f"| {task} | {earned:g} / {possible:g} | {result_text} |")
        out.append("")
        failures = [t for t in cr.tests.values() if t.outcome in ("failed", "error")]
        if failures:
            out += ["What to fix:", ""]
            for t in failures:
                kind = " (hidden test)" if t.hidden else ""
                out.append(f"- [{t.task}] `{t.name}`{kind}: {_md(redact(t.message, 600))}")
            out.append("")
        skipped = [t for t in cr.tests.values() if t.outcome == "skipped"]
        if skipped:
            out += [f"Skipped on this machine: {', '.join(f'`{t.name}`' for t in skipped)} "
                    f"({_md(redact(skipped[0].message, 200))}); no points for them here.", ""]
    return "\n".join(out).rstrip() + "\n"


def write_student(out: Path, result: SubmissionResult, redact: Redactor, limits: dict) -> dict:
    """Write OUT/<student>/{results.json,feedback.md,log.txt} atomically; returns results."""
    student = result.submission.student
    feedback = feedback_md(result, redact)
    data = results_json(result, redact, limits=limits, feedback=feedback)
    tmp = out / f".tmp-{student}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    (tmp / "feedback.md").write_text(feedback, encoding="utf-8")
    (tmp / "log.txt").write_text(redact(result.log), encoding="utf-8")
    (tmp / "results.json").write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    _replace_dir(tmp, out / student)
    return data


def _replace_dir(new: Path, target: Path) -> None:
    old = None
    if target.exists():
        old = target.parent / f".old-{target.name}-{os.getpid()}"
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def clean_leftovers(out: Path) -> None:
    """Temporary folders of an interrupted run."""
    for p in out.glob(".tmp-*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in out.glob(".old-*"):
        shutil.rmtree(p, ignore_errors=True)


# --------------------------------------------------------------------------- cohort files

def load_all(out: Path) -> list[dict]:
    """Every student's results.json under OUT, sorted by student."""
    records = []
    for path in sorted(out.glob("*/results.json")):
        if path.parent.name.startswith("."):
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("extra_data"), dict):
            data["extra_data"].setdefault("student", path.parent.name)
            records.append(data)
    return sorted(records, key=lambda d: d["extra_data"]["student"])


def flags_of(record: dict) -> str:
    extra = record["extra_data"]
    flags = []
    if extra.get("unreadable"):
        flags.append(f"unreadable: {extra['unreadable']}")
    for c, ch in sorted(extra.get("chapters", {}).items()):
        if ch["status"] not in ("graded",) and not (ch["status"] == "unreadable"):
            flags.append(f"ch{c} {STATUS_TEXT.get(ch['status'], ch['status'])}")
    return "; ".join(flags)


def write_grades_csv(out: Path, records: list[dict]) -> Path:
    chapters = sorted({c for r in records for c in r["extra_data"].get("chapters", {})})
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["student"] + [f"ch{c}" for c in chapters] + ["total", "max", "flags"])
    for r in records:
        chs = r["extra_data"].get("chapters", {})
        w.writerow([r["extra_data"]["student"]]
                   + [f"{chs[c]['score']:g}" if c in chs else "" for c in chapters]
                   + [f"{r['score']:g}", f"{r['extra_data'].get('max_score', 0):g}", flags_of(r)])
    path = out / "grades.csv"
    tmp = out / f".grades.csv.{os.getpid()}.tmp"
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    os.replace(tmp, path)
    return path


def summary_table(records: list[dict]) -> str:
    if not records:
        return "no graded submissions"
    chapters = sorted({c for r in records for c in r["extra_data"].get("chapters", {})})
    lines = [f"{'chapter':8} {'max':>5} {'mean':>6} {'median':>6} {'min':>5} {'max':>5}  full marks"]
    for c in chapters:
        scores = [r["extra_data"]["chapters"][c]["score"] for r in records if c in r["extra_data"]["chapters"]]
        top = max(r["extra_data"]["chapters"][c]["max_score"] for r in records if c in r["extra_data"]["chapters"])
        full = sum(s >= top for s in scores)
        lines.append(f"ch{c:6} {top:5g} {statistics.mean(scores):6.2f} {statistics.median(scores):6g} "
                     f"{min(scores):5g} {max(scores):5g}  {full}/{len(scores)}")
    totals = [r["score"] for r in records]
    lines.append(f"{'total':8} {max(r['extra_data'].get('max_score', 0) for r in records):5g} "
                 f"{statistics.mean(totals):6.2f} {statistics.median(totals):6g} {min(totals):5g} "
                 f"{max(totals):5g}")
    flagged = [(r["extra_data"]["student"], flags_of(r)) for r in records if flags_of(r)]
    if flagged:
        lines += ["", "flagged:"]
        for student, flags in flagged[:40]:
            lines.append(f"  {student}: {flags}"[:240])
        if len(flagged) > 40:
            lines.append(f"  ... and {len(flagged) - 40} more (see grades.csv)")
    return "\n".join(lines)
