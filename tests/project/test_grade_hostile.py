"""`grader grade` against hostile and broken submissions.

One cohort run grades every case of hostile/cases.py together with good submissions
(small limits keep it short); each test then checks one promise: the right score and a
clear reason per submission, good submissions unaffected, nothing left running, the
grader's files intact, and no hidden test source in anything written.
"""
from __future__ import annotations

import json
import os
import re
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from grader.submissions import safe_id
from grader.gradescope import RESULTS_SCHEMA
from grader.paths import ROOT
from hostile.cases import build_cohort, sources
from hostile.harness import (grader_processes, hidden_lines, results, run_cli, shared_by_workers,
                             tree_hash, wait_gone)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0,
    reason="the sandbox's hostile cases need Linux and root (a separate uid per job)")

NAMES = list(sources("x")) + ["missing_file", "zip_escape", "tar_links", "folder_link", "zip_bomb",
                              "tar_bomb", "broken", "d\udce9bora"]
WATCHED = (ROOT / "grader", ROOT / "tests" / "ch05", ROOT / "solutions", ROOT / "exercises")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """The hostile cohort, graded once per test run however many workers read it."""
    return shared_by_workers(tmp_path_factory, "hostile-cohort", _grade_cohort)


def _grade_cohort(tmp_path_factory) -> SimpleNamespace:
    """Grade every case; what only the moment after the run can tell (processes still
    running) is recorded here, so that a test reading it later, maybe in another worker,
    sees the same thing."""
    base = tmp_path_factory.mktemp("hostile")
    token = uuid.uuid4().hex[:10]
    subs = base / "submissions"
    subs.mkdir()
    cases = {c.student: c for c in build_cohort(subs, token)}
    before = tree_hash(*WATCHED)
    out = base / "out"
    run = run_cli(["grade", str(subs), "-o", str(out), "--chapters", "05", "--jobs", "2",
                   "--timeout", "3", "--wall", "120", "--nproc", "48", "--memory", "1024", "-q"],
                  base, timeout=800)  # under pytest-timeout's 900 s, so a slow run explains itself
    background = _background_pids(out)
    return SimpleNamespace(base=base, subs=subs, out=out, run=run, cases=cases, token=token,
                           before=before, after=tree_hash(*WATCHED), survivors=grader_processes(),
                           background=background, background_alive=wait_gone(background, 15.0))


def _background_pids(out: Path) -> list[int]:
    """The processes the background-process case says it started (in its log)."""
    log = out / "background_process" / "log.txt"
    text = log.read_text(encoding="utf-8") if log.is_file() else ""
    return [int(p) for p in re.findall(r"BG-PID (\d+)", text)]


def _points(out: Path) -> dict[str, float]:
    """Points of each task and of each test (by function name), from the good submission."""
    data = results(out, "good")
    points = {task: possible for task, (_, possible) in data["extra_data"]["chapters"]["05"]["tasks"].items()}
    for t in data["tests"]:
        points[t["name"].split()[1]] = t["max_score"]
    return points


def _expected(score, points: dict[str, float]) -> float:
    full = sum(v for k, v in points.items() if k.startswith("ch05."))
    if score == "full":
        return full
    if isinstance(score, str) and score.startswith("full-"):
        return full - sum(points[t] for t in score[5:].split(","))
    return float(score)


def test_the_run_finishes_and_grades_everyone(cohort):
    assert cohort.run.code == 0, cohort.run.explain()
    graded = {p.parent.name for p in cohort.out.glob("*/results.json")}
    missing = [n for n in NAMES if safe_id(n) not in graded]
    assert not missing, f"no results for {missing}\n{cohort.run.explain()}"
    print(f"\nhostile cohort of {len(NAMES)} graded in {cohort.run.wall:.1f} s")


@pytest.mark.parametrize("name", NAMES, ids=[safe_id(n) for n in NAMES])
def test_score_and_reason(cohort, name):
    case = cohort.cases[name]
    data = results(cohort.out, safe_id(name))
    extra = data["extra_data"]
    chapter = extra["chapters"]["05"]
    if case.score == "any":
        want = data["score"]
    elif isinstance(case.score, str) and case.score.startswith("same-as:"):
        want = results(cohort.out, case.score.split(":", 1)[1])["score"]
    else:
        want = _expected(case.score, _points(cohort.out))
    messages = [chapter["reason"]] + [t["output"] for t in data["tests"]]
    assert data["score"] == want, (f"{name}: scored {data['score']}, expected {want} "
                                   f"(status {chapter['status']}: {chapter['reason']})\n"
                                   + "\n".join(m for m in messages if m)[:3000])
    if case.status:
        assert chapter["status"] == case.status, f"{name}: status {chapter['status']!r} ({chapter['reason']})"
    if case.says:
        assert any(case.says.lower() in m.lower() for m in messages), \
            f"{name}: no message says {case.says!r}:\n" + "\n".join(m for m in messages if m)[:3000]
    if case.unreadable:
        assert case.unreadable.lower() in extra["unreadable"].lower(), f"{name}: {extra['unreadable']!r}"
    feedback = (cohort.out / safe_id(name) / "feedback.md").read_text(encoding="utf-8")
    assert f"{data['score']:g} / " in feedback


def test_good_submissions_are_unaffected(cohort):
    full = _expected("full", _points(cohort.out))
    for name in ("good", "good_late", "zip_escape", "d\udce9bora"):
        data = results(cohort.out, safe_id(name))
        assert data["score"] == full, f"{name} lost points next to hostile submissions: " + \
            "; ".join(t["output"] for t in data["tests"] if t["status"] != "passed")


def test_nothing_is_left_running(cohort):
    assert not cohort.survivors, f"processes of the grader's uids outlived the run: {cohort.survivors}"
    log = (cohort.out / "background_process" / "log.txt").read_text(encoding="utf-8")
    assert cohort.background, "the background-process case did not start its processes:\n" + log[-2000:]
    assert not cohort.background_alive, f"background processes {cohort.background_alive} survived grading"
    marker = Path(f"/tmp/hostile-{cohort.token}-bg")
    assert not marker.exists(), "the background process's file outside the working folder was left behind"


def test_grader_files_are_intact(cohort):
    # other people may edit the repository while this runs: look for what the student wrote
    targets = [ROOT / "grader" / "plugin.py", ROOT / "tests" / "ch05" / "test_public.py",
               ROOT / "solutions" / "ch05_linear_regression.py"]
    pwned = [str(p) for p in targets if "# pwned" in p.read_text(encoding="utf-8")]
    assert not pwned, f"student code changed the grader's files: {pwned}"
    assert not (ROOT / "tests" / "ch05" / "conftest.py").exists()
    changed = [p for p in set(cohort.before) | set(cohort.after)
               if cohort.before.get(p) != cohort.after.get(p) and "ch05" in p]
    assert not changed, f"chapter 05's files changed during grading: {changed}"
    log = (cohort.out / "writes_everywhere" / "log.txt").read_text(encoding="utf-8")
    assert "WROTE home" in log, log[-2000:]
    for what in ("tests", "tests-new", "grader", "repo-tests", "solutions"):
        assert f"REFUSED {what} " in log, f"writing to {what} was not refused:\n{log[-2000:]}"
    leftovers = [p for p in (Path(f"/tmp/hostile-{cohort.token}-written"), Path(f"/var/tmp/hostile-{cohort.token}"))
                 if p.exists()]
    assert not leftovers, f"files written outside the working folder were left behind: {leftovers}"
    extra = {p.name for p in cohort.out.iterdir()} - {safe_id(n) for n in NAMES} - {"grades.csv", "report.html"}
    assert not extra, f"unexpected files in the output folder: {extra}"


def test_archives_cannot_place_files_outside(cohort):
    escaped = [p for folder in (cohort.base, cohort.base.parent, Path("/tmp"))
               for p in folder.glob(f"*{cohort.token}*") if "absolute" in p.name or "escaped" in p.name]
    assert not escaped, f"archive members escaped: {escaped}"
    notes = results(cohort.out, "zip_escape")["extra_data"]["notes"]
    assert any("unsafe path" in n for n in notes), notes


def test_hidden_source_never_reaches_outputs(cohort):
    lines = hidden_lines()
    assert len(lines) > 20
    leaks = []
    for path in cohort.out.rglob("*"):
        if path.is_file() and path.suffix in (".md", ".json", ".txt", ".csv", ".html"):
            text = path.read_text(encoding="utf-8", errors="replace")
            leaks += [f"{path.relative_to(cohort.out)}: {ln[:60]}" for ln in lines if ln in text]
    assert not leaks, "hidden test source in the outputs:\n" + "\n".join(leaks[:20])
    log = (cohort.out / "reads_hidden" / "log.txt").read_text(encoding="utf-8")
    assert "LEAKED 0 characters" in log, "the hidden tests were readable from student code:\n" + log[-3000:]


def test_the_reference_cache_is_closed_to_student_code(cohort):
    log = (cohort.out / "reads_references" / "log.txt").read_text(encoding="utf-8")
    assert "REFERENCES list PermissionError" in log and "REFERENCES write PermissionError" in log, \
        "student code could open the judges' reference cache:\n" + log[-3000:]


def test_dataloader_workers_run_in_the_sandbox(cohort):
    log = (cohort.out / "dataloader_workers" / "log.txt").read_text(encoding="utf-8")
    assert "WORKERS-OK 2" in log, "a DataLoader with num_workers=2 did not work:\n" + log[-3000:]


def test_huge_output_is_truncated(cohort):
    log = cohort.out / "print_100mb" / "log.txt"
    assert log.stat().st_size < 100_000, f"log.txt is {log.stat().st_size} bytes"
    assert "bytes of output not kept" in log.read_text(encoding="utf-8")


def test_outputs_are_valid_gradescope_results(cohort):
    jsonschema = pytest.importorskip("jsonschema")
    for path in cohort.out.glob("*/results.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        jsonschema.validate(data, RESULTS_SCHEMA)


def test_gradebook_lists_everyone(cohort):
    rows = (cohort.out / "grades.csv").read_text(encoding="utf-8").splitlines()
    assert rows[0].startswith("student,ch05,total")
    assert len(rows) == 1 + len(NAMES)
    flagged = {r.split(",")[0] for r in rows[1:] if r.rstrip().split(",")[-1]}
    for name in ("patch_pytest", "forge_report_properties", "forge_result_property", "shadow_via_functions",
                 "function_mode_allclose", "lying_tensor_function", "builtins_restoring", "walks_frames",
                 "syntax_error", "broken"):
        assert name in flagged, f"{name} is not flagged in grades.csv"
