"""The cohort's files: grades.csv and the summary table, rebuilt from every results.json.

`grades.csv` (and report.html) are rebuilt from all `OUT/*/results.json` at the end of
every run and by `grader merge`, so they always agree with the per-student files.
"""
from __future__ import annotations

import csv
import io
import json
import os
import statistics
from pathlib import Path

from grader.results import Status, status_text

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
        if ch["status"] not in (Status.GRADED, Status.UNREADABLE):
            flags.append(f"ch{c} {status_text(ch['status'])}")
    review = extra.get("review") or []
    if review:
        flags.append(f"review ({len(review)}): " + "; ".join(review[:3]) + ("; ..." if len(review) > 3 else ""))
    return "; ".join(flags)


def needs_regrade(record: dict) -> bool:
    """The grader failed on this submission (not the student): it has no score yet."""
    return bool(record["extra_data"].get("regrade"))


def _cell(record: dict, chapter: str) -> str:
    ch = record["extra_data"].get("chapters", {}).get(chapter)
    if ch is None:
        return ""
    return "regrade" if ch["status"] == Status.ERROR else f"{ch['score']:g}"


def write_grades_csv(out: Path, records: list[dict]) -> Path:
    chapters = sorted({c for r in records for c in r["extra_data"].get("chapters", {})})
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["student"] + [f"ch{c}" for c in chapters] + ["total", "max", "flags"])
    for r in records:
        w.writerow([r["extra_data"]["student"]]
                   + [_cell(r, c) for c in chapters]
                   + ["regrade" if needs_regrade(r) else f"{r['score']:g}",
                      f"{r['extra_data'].get('max_score', 0):g}", flags_of(r)])
    path = out / "grades.csv"
    tmp = out / f".grades.csv.{os.getpid()}.tmp"
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    os.replace(tmp, path)
    return path


def summary_table(records: list[dict]) -> str:
    """Score statistics per chapter and in total, over the submissions that have a score
    (those awaiting a regrade are counted apart), then the flagged students."""
    if not records:
        return "no graded submissions"
    chapters = sorted({c for r in records for c in r["extra_data"].get("chapters", {})})
    lines = [f"{'chapter':8} {'max':>5} {'mean':>6} {'median':>6} {'min':>5} {'max':>5}  full marks"]
    for c in chapters:
        graded = [r["extra_data"]["chapters"][c] for r in records if c in r["extra_data"]["chapters"]]
        top = max(ch["max_score"] for ch in graded)
        scores = [ch["score"] for ch in graded if ch["status"] != Status.ERROR]
        if not scores:
            lines.append(f"ch{c:6} {top:5g}  (all awaiting a regrade)")
            continue
        full = sum(s >= top for s in scores)
        lines.append(f"ch{c:6} {top:5g} {statistics.mean(scores):6.2f} {statistics.median(scores):6g} "
                     f"{min(scores):5g} {max(scores):5g}  {full}/{len(scores)}")
    totals = [r["score"] for r in records if not needs_regrade(r)]
    if totals:
        lines.append(f"{'total':8} {max(r['extra_data'].get('max_score', 0) for r in records):5g} "
                     f"{statistics.mean(totals):6.2f} {statistics.median(totals):6g} {min(totals):5g} "
                     f"{max(totals):5g}")
    waiting = sum(needs_regrade(r) for r in records)
    if waiting:
        lines.append(f"{waiting} submission(s) await a regrade: the grader failed on them (see flags); "
                     "run the same command again")
    flagged = [(r["extra_data"]["student"], flags_of(r)) for r in records if flags_of(r)]
    if flagged:
        lines += ["", "flagged:"]
        for student, flags in flagged[:40]:
            lines.append(f"  {student}: {flags}"[:240])
        if len(flagged) > 40:
            lines.append(f"  ... and {len(flagged) - 40} more (see grades.csv)")
    return "\n".join(lines)
