"""Text a person reads: the per-task table of `grader check`."""
from __future__ import annotations

from grader.plugin import TestResult
from grader.runner import RunOutcome
from grader.syllabus import Chapter


def _pts(x: float) -> str:
    return f"{x:g}"


def task_rows(chapter: Chapter, tests: list[TestResult]) -> list[tuple[str, float, float, str]]:
    """(task, earned, possible, status) for every task of the chapter, in syllabus order."""
    rows = []
    for task in chapter.task_ids():
        mine = [t for t in tests if t.task == task]
        if not mine:
            continue
        earned = sum(t.score for t in mine)
        possible = sum(t.points for t in mine if t.outcome != "skipped")
        failed = sum(t.outcome in ("failed", "error") for t in mine)
        skipped = sum(t.outcome == "skipped" for t in mine)
        if failed:
            status = f"FAIL ({failed} of {len(mine)} tests)"
        elif skipped == len(mine):
            status = "skipped"
        else:
            status = "ok" + (f" ({skipped} skipped)" if skipped else "")
        rows.append((task, earned, possible, status))
    return rows


def format_check(chapter: Chapter, outcome: RunOutcome, verbose: bool = False) -> str:
    results = outcome.results
    lines = [f"ch{chapter.number} {chapter.title} ({chapter.filename}, device {results.device})", ""]
    if outcome.error:
        lines.append(f"error: {outcome.error}")
        if verbose and outcome.log:
            lines += ["", outcome.log[-4000:]]
        return "\n".join(lines)
    rows = task_rows(chapter, results.tests)
    width = max([len("task")] + [len(r[0]) for r in rows])
    lines.append(f"  {'task':{width}}  {'points':>9}  status")
    for task, earned, possible, status in rows:
        lines.append(f"  {task:{width}}  {_pts(earned):>4} / {_pts(possible):<3}  {status}")
    lines.append(f"  {'total':{width}}  {_pts(results.score):>4} / {_pts(results.max_score):<3}")
    for err in results.collection_errors:
        lines.append(f"\nerror collecting tests: {err}")
    if not results.tests and not results.collection_errors:
        lines.append("\nno tests ran")
    failures = [t for t in results.tests if t.outcome in ("failed", "error")]
    if failures:
        lines += ["", "What to fix:"]
        seen = set()
        for t in failures:
            key = (t.task, t.message)
            if key in seen and not verbose:
                continue  # one import error or stub fails every test the same way
            seen.add(key)
            lines.append(f"  [{t.task}] {t.name}: {t.message}")
            if verbose and t.details:
                lines += ["", _indent(t.details), ""]
        if not verbose:
            lines.append("\n(-v shows the tracebacks)")
    return "\n".join(lines)


def _indent(text: str, prefix: str = "      ") -> str:
    return "\n".join(prefix + ln for ln in text.splitlines())
