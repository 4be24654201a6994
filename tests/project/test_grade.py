"""`grader grade` and `grader merge`: the demo cohort, outputs, resuming, shards, limits.

Grading runs in a child forked from this (warm) process; see hostile/harness.py. The
hostile and broken submissions have their own module, test_grade_hostile.py.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from grader import submissions as collect
from grader.cohort import choose_chapters, in_shard, parse_shard, read_phases
from grader.gradescope import RESULTS_SCHEMA
from grader.mistakes import load_catalogue
from grader.paths import ROOT, chapters_with_tests
from grader.check import run_pytest
from grader.process import chapter_test_args
from grader.syllabus import CHAPTERS
from hostile.cases import DYNAMIC, FILENAME, SOLUTION, at_import, in_function
from hostile.harness import (blas_thread_counts, grader_processes, results, run_cli, shared_by_workers,
                             start_cli, wait_cli, wait_gone, wait_until)

DEMO = ROOT / "examples" / "submissions"
MISTAKES = {m.name: m for m in load_catalogue(ROOT / "tests" / "mistakes")["05"]}
needs_root = pytest.mark.skipif(not sys.platform.startswith("linux") or os.geteuid() != 0,
                                reason="the full sandbox needs Linux and root")


def _grades(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "grades.csv", encoding="utf-8", newline="") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def _stamps(out: Path) -> dict[str, int]:
    return {p.parent.name: json.loads(p.read_text())["extra_data"]["graded_at_ns"]
            for p in out.glob("*/results.json")}


def _cohort(folder: Path, files: dict[str, str]) -> Path:
    """student -> ch05 source, as folders with exercises/."""
    for student, text in files.items():
        (folder / student / "exercises").mkdir(parents=True, exist_ok=True)
        (folder / student / "exercises" / FILENAME).write_text(text, encoding="utf-8")
    return folder


# --------------------------------------------------------------------------- the demo cohort

@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo cohort, graded once per test run however many workers read it (read only:
    tests that grade again work on copies)."""
    return shared_by_workers(tmp_path_factory, "demo-cohort", _grade_demo)


def _grade_demo(tmp_path_factory):
    base = tmp_path_factory.mktemp("demo")
    subs = base / "submissions"
    shutil.copytree(DEMO, subs)
    out = base / "gradebook"
    run = run_cli(["grade", str(subs), "-o", str(out), "--jobs", "2"], base, calibrate=True)
    return base, subs, out, run


def test_grade_help_is_clear(tmp_path):
    run = run_cli(["grade", "--help"], tmp_path)
    assert run.code == 0
    for option in ("SUBMISSIONS", "--out", "--chapters", "--jobs", "--timeout", "--wall", "--memory",
                   "--force", "--shard", "examples:", "grader merge"):
        assert option in run.stdout, f"`grader grade --help` does not mention {option}"
    merge = run_cli(["merge", "--help"], tmp_path)
    assert merge.code == 0 and "--out" in merge.stdout


def test_demo_submissions_are_up_to_date():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import make_submissions
    finally:
        sys.path.remove(str(ROOT / "examples"))
    assert not make_submissions.stale(), "run: python examples/make_submissions.py"


def test_demo_cohort_scores(demo):
    base, subs, out, run = demo
    assert run.code == 0, run.explain()
    grades = _grades(out)
    assert sorted(grades) == ["alice", "bob", "carol", "dave"]
    full = float(grades["alice"]["max"])
    assert float(grades["alice"]["ch05"]) == full > 0
    assert float(grades["carol"]["total"]) == 0 and "does not import" in grades["carol"]["flags"]
    for student, mistake in (("bob", "no zero_grad in the training loop"), ("dave", "ReLU left out of TwoLayerNet")):
        data = results(out, student)
        assert 0 < data["score"] < full, f"{student}: {data['score']}"
        messages = [t["output"] for t in data["tests"] if t["status"] == "failed"]
        assert any(MISTAKES[mistake].message.lower() in m.lower() for m in messages), messages
        failed_tasks = {t["tags"][0] for t in data["tests"] if t["status"] == "failed"}
        assert failed_tasks == {MISTAKES[mistake].task}, failed_tasks
    carol = results(out, "carol")["extra_data"]["chapters"]["05"]
    assert carol["status"] == "import-error" and "syntax error at line" in carol["reason"]
    assert "ch05" in run.stdout and "flagged" in run.stdout, "the summary table is missing"
    # limits scaled to this machine's measured speed, and the measurement kept with the results
    assert "calibration: reference workload" in run.stderr, run.explain()
    calibration = results(out, "alice")["extra_data"]["limits"]["calibration"]
    assert calibration["seconds"] > 0 and calibration["factor"] >= 1, calibration


def test_demo_outputs(demo):
    jsonschema = pytest.importorskip("jsonschema")
    base, subs, out, run = demo
    for student in ("alice", "bob", "carol", "dave"):
        data = results(out, student)
        jsonschema.validate(data, RESULTS_SCHEMA)
        assert data["score"] == sum(t["score"] for t in data["tests"])
        for t in data["tests"]:
            want = "after_published" if "hidden" in t["tags"] else "visible"
            assert t["visibility"] == want, t
        extra = data["extra_data"]
        assert extra["fingerprint"]["05"][0] == extra["files"][FILENAME]
        assert extra["device"] in ("cpu", "cuda")
        feedback = (out / student / "feedback.md").read_text(encoding="utf-8")
        assert f"**Total: {data['score']:g} / " in feedback
        log = (out / student / "log.txt").read_text(encoding="utf-8")
        # a judge writes its terminal as the run ends (`judgeserver.hold_progress`): all of it
        assert "==== ch05 (run 1) ====" in log and " in " in log.splitlines()[-1], log[-300:]
    bob = (out / "bob" / "feedback.md").read_text(encoding="utf-8")
    assert "| ch05.train |" in bob and "(hidden test)" in bob
    report = (out / "report.html").read_text(encoding="utf-8")
    assert report.count("<img") >= 3 and "Most-failed tests" in report and "bob" in report


def test_rerun_skips_unchanged_and_force_regrades(demo, tmp_path):
    base, subs, out, run = demo
    work_subs, work_out = tmp_path / "subs", tmp_path / "out"
    shutil.copytree(subs, work_subs)
    shutil.copytree(out, work_out)
    before = _stamps(work_out)
    again = run_cli(["grade", str(work_subs), "-o", str(work_out)], tmp_path)
    assert again.code == 0 and "0 graded, 4 unchanged" in again.stdout, again.explain()
    assert _stamps(work_out) == before
    (work_subs / "carol" / FILENAME).write_text(SOLUTION, encoding="utf-8")  # carol fixes her file
    fixed = run_cli(["grade", str(work_subs), "-o", str(work_out)], tmp_path)
    assert "1 graded, 3 unchanged" in fixed.stdout, fixed.explain()
    after = _stamps(work_out)
    assert [s for s in before if after[s] != before[s]] == ["carol"]
    assert results(work_out, "carol")["score"] == results(work_out, "alice")["score"]
    forced = run_cli(["grade", str(work_subs), "-o", str(work_out), "--force"], tmp_path)
    assert "4 graded, 0 unchanged" in forced.stdout, forced.explain()
    # where the time went, as `make bench` reads it
    phases = read_phases(forced.stdout)
    assert phases, forced.stdout
    total, *parts = phases
    # the total is rounded to 0.1 s and the three parts to 0.01 s: they may miss it by 0.065 s
    assert all(p > 0 for p in parts[:2]) and abs(sum(parts) - total) <= 0.065 + 1e-9, phases


def test_shards_merge_into_the_full_gradebook(demo, tmp_path):
    base, subs, out, run = demo
    parts = []
    for k in (1, 2):
        part = tmp_path / f"part{k}"
        r = run_cli(["grade", str(subs), "-o", str(part), "--shard", f"{k}/2", "-q"], tmp_path)
        assert r.code == 0, r.explain()
        parts.append(part)
    names = [set(_grades(p)) for p in parts]
    assert not names[0] & names[1] and names[0] | names[1] == {"alice", "bob", "carol", "dave"}
    merged = tmp_path / "merged"
    r = run_cli(["merge", str(parts[0]), str(parts[1]), "-o", str(merged)], tmp_path)
    assert r.code == 0, r.explain()
    assert _grades(merged) == _grades(out)
    assert (merged / "report.html").is_file()


def test_shard_slices_are_deterministic():
    ids = [f"s{i:03d}" for i in range(200)]
    slices = [[s for s in ids if in_shard(s, (k, 3))] for k in (1, 2, 3)]
    assert sorted(sum(slices, [])) == ids
    assert all(40 < len(s) < 90 for s in slices), [len(s) for s in slices]
    assert slices == [[s for s in ids if in_shard(s, (k, 3))] for k in (1, 2, 3)]
    with pytest.raises(ValueError):
        parse_shard("3/2")


# --------------------------------------------------------------------------- robustness

@needs_root
def test_interrupted_run_is_completed_without_loss_or_duplicates(tmp_path):
    subs = _cohort(tmp_path / "subs", {f"s{i}": SOLUTION for i in range(8)})
    out = tmp_path / "out"
    out.mkdir()  # watched from the start; the grader moves each student's finished folder in
    started = start_cli(["grade", str(subs), "-o", str(out), "--jobs", "2", "-q"], tmp_path)
    wait_until(lambda: len(list(out.glob("*/results.json"))) >= 2, out, timeout=300)
    os.kill(started[0], signal.SIGKILL)  # the grader dies mid-run; its children die with it
    killed = wait_cli(started)
    assert killed.code == -signal.SIGKILL
    done_before = set(_stamps(out))
    assert 2 <= len(done_before) < 8, "the run finished before it could be interrupted"
    rerun = run_cli(["grade", str(subs), "-o", str(out), "--jobs", "2"], tmp_path)
    assert rerun.code == 0, rerun.explain()
    grades = _grades(out)
    assert sorted(grades) == [f"s{i}" for i in range(8)]
    assert len({float(g["total"]) for g in grades.values()}) == 1
    assert f"{8 - len(done_before)} graded, {len(done_before)} unchanged" in rerun.stdout, rerun.explain()
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary folders were left behind"
    assert not grader_processes()


@needs_root
@pytest.mark.slow
def test_wall_clock_limit_stops_a_submission(tmp_path):
    # code that waits instead of computing (its CPU time stays far below any CPU limit),
    # with the alarm signal ignored
    stubborn = at_import("import signal as _signal, time as _time\n_signal.signal(_signal.SIGALRM, _signal.SIG_IGN)",
                         in_function("        return self.linear(x)\n", "while True:\n    _time.sleep(0.5)"))
    subs = _cohort(tmp_path / "subs", {"good": SOLUTION, "stubborn": stubborn})
    out = tmp_path / "out"
    run = run_cli(["grade", str(subs), "-o", str(out), "--wall", "3", "--timeout", "60", "-q"], tmp_path)
    assert run.code == 0, run.explain()
    chapter = results(out, "stubborn")["extra_data"]["chapters"]["05"]
    # graded again alone, with the backstop widened for load from outside the grader
    assert chapter["status"] == "timeout" and "wall-clock backstop of 9 s" in chapter["reason"], chapter
    assert chapter["load_at_limit"] is not None
    assert "graded again alone" in (out / "stubborn" / "log.txt").read_text()
    assert results(out, "stubborn")["score"] == 0
    assert results(out, "good")["score"] == results(out, "good")["extra_data"]["max_score"]
    # stopped by the wall-clock backstop, long before the 60 s per-test limit could have (a
    # bound that machine load cannot break)
    assert results(out, "stubborn")["execution_time"] < 60
    assert not grader_processes()


def test_without_root_limits_and_cleanup_still_apply(tmp_path):
    """As an ordinary user the grader cannot switch uids; it still grades, and the process
    it cannot kill by uid are killed as orphans. (Simulated: the grading process is told
    it is not root.)"""
    from hostile.cases import sources

    token = f"noroot-{os.getpid()}-{time.monotonic_ns()}"
    background, _ = sources(token)["background_process"]
    subs = _cohort(tmp_path / "subs", {"good": SOLUTION, "background": background,
                                       "broken": SOLUTION.replace("(x)", "(x", 1)})
    out = tmp_path / "out"

    def not_root() -> None:
        os.geteuid = lambda: 4242  # noqa: E731 - only in this forked grading process

    run = run_cli(["grade", str(subs), "-o", str(out), "--unsafe-limited"], tmp_path, before=not_root)
    assert run.code == 0, run.explain()
    assert "isolation: limited" in run.stderr
    full = results(out, "good")["extra_data"]["max_score"]
    assert results(out, "good")["score"] == full
    assert results(out, "background")["score"] == full
    assert results(out, "broken")["score"] == 0
    log = (out / "background" / "log.txt").read_text(encoding="utf-8")
    pids = [int(p) for p in re.findall(r"BG-PID (\d+)", log)]
    assert len(pids) == 2, log[-2000:]
    alive = wait_gone(pids, timeout=15)  # killed by the grader; exiting can take a moment
    assert not alive, f"background processes survived: {alive}"
    # without a uid of its own the grader cannot tell the submission's files in /tmp from
    # anyone else's; this one is the test's to remove
    Path(f"/tmp/hostile-{token}-bg").unlink(missing_ok=True)


def test_unreadable_submissions_get_one_line_reasons(tmp_path):
    subs = tmp_path / "subs"
    (subs / "empty").mkdir(parents=True)
    (subs / "readme_only").mkdir()
    (subs / "readme_only" / "README.md").write_text("hello")
    (subs / "wrong_name").mkdir()
    (subs / "wrong_name" / "ch05_linreg.py").write_text(SOLUTION)
    _cohort(subs, {"twice": SOLUTION})
    shutil.make_archive(str(subs / "twice"), "zip", subs / "twice")
    (subs / "notes.txt").write_text("not a submission")
    (subs / "truncated.tar.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    _cohort(subs, {"good": SOLUTION})
    out = tmp_path / "out"
    run = run_cli(["grade", str(subs), "-o", str(out), "--chapters", "05"], tmp_path)
    assert run.code == 0, run.explain()
    assert "notes.txt: not a folder, .zip or .tar.gz" in run.stderr
    reasons = {s: results(out, s)["extra_data"]["unreadable"] for s in
               ("empty", "readme_only", "wrong_name", "twice", "truncated")}
    assert "no chapter files found" in reasons["empty"]
    assert "no chapter files found" in reasons["readme_only"]
    assert "chapter 05's file is ch05_linear_regression.py" in reasons["wrong_name"]
    assert "more than one submission" in reasons["twice"]
    assert reasons["truncated"].startswith("cannot read truncated.tar.gz")
    assert all("\n" not in r and r for r in reasons.values()), reasons
    assert results(out, "good")["score"] == results(out, "good")["extra_data"]["max_score"]
    empty = run_cli(["grade", str(tmp_path / "subs" / "empty"), "-o", str(tmp_path / "o2")], tmp_path)
    assert empty.code == 2 and "no submissions" in empty.stderr


def test_grade_matches_check_on_another_chapter(tmp_path):
    """The sandbox changes nothing about outcomes: `grader grade` agrees with the plain runner."""
    others = [c for c in chapters_with_tests(ROOT / "tests") if c != "05"
              and (ROOT / "solutions" / collect.CHAPTERS[c].filename).is_file()]
    if not others:
        pytest.skip("no chapter besides 05 has tests and a solution yet")
    chapter = "03" if "03" in others else others[0]
    filename = collect.CHAPTERS[chapter].filename
    subs = tmp_path / "subs"
    (subs / "both").mkdir(parents=True)
    shutil.copy(ROOT / "solutions" / filename, subs / "both" / filename)
    shutil.copy(ROOT / "solutions" / FILENAME, subs / "both" / FILENAME)
    (subs / "only05").mkdir()
    shutil.copy(ROOT / "solutions" / FILENAME, subs / "only05" / FILENAME)
    out = tmp_path / "out"
    run = run_cli(["grade", str(subs), "-o", str(out)], tmp_path)
    assert run.code == 0, run.explain()
    both = results(out, "both")["extra_data"]["chapters"]
    assert sorted(both) == sorted([chapter, "05"]), "the default should grade every chapter a submission has"
    reference = run_pytest(chapter_test_args(chapter, "solutions"), timeout=600).results
    assert both[chapter]["score"] == reference.score, (both[chapter], reference.score)
    assert both[chapter]["max_score"] == reference.max_score
    only = results(out, "only05")["extra_data"]["chapters"][chapter]
    assert only["status"] == "missing" and only["score"] == 0 and f"{filename} missing" in only["reason"]


def test_a_grader_started_where_the_tests_were_imported_runs_the_folder_given(tmp_path):
    """The tests folder passed with --tests, not the same-named modules the starting process
    already holds (the project's own test run imports the repository's): the zygote drops
    those once as it starts, and what it forks imports its own."""
    tests = tmp_path / "tests"
    (tests / "ch05").mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "__init__.py", tests)
    for source in (ROOT / "tests" / "ch05").glob("*.py"):
        text = source.read_text(encoding="utf-8")
        if source.name == "test_public.py":
            marker = "def test_forward_shape(impl):\n"
            assert marker in text, "pick another test to change"
            text = text.replace(marker, marker + "    raise AssertionError(\"the copy in the folder given ran\")\n", 1)
        (tests / "ch05" / source.name).write_text(text, encoding="utf-8")
    shutil.copytree(ROOT / "tests" / "mistakes", tests / "mistakes")
    subs = tmp_path / "subs"
    (subs / "ada").mkdir(parents=True)
    (subs / "ada" / FILENAME).write_text(SOLUTION, encoding="utf-8")

    def import_the_repositorys_tests() -> None:
        import tests.ch05.probes  # noqa: F401
        import tests.ch05.test_public  # noqa: F401

    out = tmp_path / "out"
    run = run_cli(["grade", str(subs), "-o", str(out), "--chapters", "05", "--tests", str(tests)], tmp_path,
                  before=import_the_repositorys_tests)
    assert run.code == 0, run.explain()
    messages = [t["output"] for t in results(out, "ada")["tests"]]
    assert any("the copy in the folder given ran" in m for m in messages), messages


def _judges_logged(log: Path, kill_server_before: int = 0, servers: bool = True,
                   temp: Path | None = None):
    """A `before` for run_cli: who forked each judge ("server" or "zygote") goes to `log`;
    the judge server is killed before the `kill_server_before`-th judge (counting from 1);
    `temp`: the temporary folder of the run's processes."""
    def before() -> None:
        from grader import judgeserver, scheduler
        if temp is not None:
            import tempfile
            temp.mkdir()
            tempfile.tempdir = str(temp)
        scheduler.JUDGE_SERVERS = servers
        real = judgeserver.Servers.judge
        count = [0]

        def judge(self, plan, args, fds):
            count[0] += 1
            if count[0] == kill_server_before:
                for pid in list(self.pids):
                    os.kill(pid, signal.SIGKILL)
                    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # dead; the zygote reaps it
            pid = real(self, plan, args, fds)
            with open(log, "a", encoding="utf-8") as f:
                f.write("server\n" if pid else "zygote\n")
            return pid
        judgeserver.Servers.judge = judge
    return before


def _verdicts(out: Path, students: list[str]) -> dict:
    """What a student reads, without the timings."""
    return {s: (r["score"], r["extra_data"]["chapters"]["05"]["status"],
                [(t["name"], t["status"], t["output"]) for t in r["tests"]])
            for s in students for r in [results(out, s)]}


@pytest.mark.slow
def test_judges_forked_by_the_chapters_server_grade_as_collecting_judges_do(tmp_path):
    """The judge server (`grader.judgeserver`) collects a chapter's tests once and forks its
    judges from there: the same verdicts and messages as judges that each collect, for a
    solution, a mistake and a submission whose process dies mid-chapter (the rest of its
    tests run in a fresh pair, the graded ones skipped). A server that dies leaves its
    chapter's judges to the zygote, and the grading goes on. Neither kind of judge leaves
    anything in the temporary folder (a judge is killed once its results are read)."""
    files = {"ada": SOLUTION, "bob": MISTAKES["no zero_grad in the training loop"].apply(SOLUTION),
             "cy": in_function(DYNAMIC, "import ctypes\nctypes.string_at(0)")}
    subs = _cohort(tmp_path / "subs", files)
    verdicts, forks = {}, {}
    for way, kill, servers in (("served", 0, True), ("collecting", 0, False), ("server-killed", 2, True)):
        log = tmp_path / f"{way}.log"
        out = tmp_path / way
        temp = tmp_path / f"{way}.tmp"
        run = run_cli(["grade", str(subs), "-o", str(out), "--chapters", "05", "--jobs", "1"], tmp_path,
                      before=_judges_logged(log, kill, servers, temp))
        assert run.code == 0, run.explain()
        assert sorted(p.name for p in temp.iterdir()) == [], way
        verdicts[way] = _verdicts(out, sorted(files))
        forks[way] = log.read_text(encoding="utf-8").split() if log.exists() else []
    runs = len(forks["served"])   # one per chapter run: cy's runs again after each crash
    assert runs > 3 and forks["served"] == ["server"] * runs, forks
    assert forks["collecting"] == [], forks
    assert forks["server-killed"] == ["server"] + ["zygote"] * (runs - 1), forks
    ada, bob, cy = (verdicts["served"][s] for s in sorted(files))
    assert ada[1] == "graded" and ada[0] == 20, ada
    assert bob[0] < 20 and cy[1] == "crashed" and "segmentation fault" in str(cy[2]), (bob, cy)
    assert verdicts["served"] == verdicts["collecting"] == verdicts["server-killed"]


def _workers_logged(log: Path, servers: bool = True):
    """A `before` for run_cli: the judge each request went to, as "chapter pid" lines (pid 0:
    forked by the zygote); idle workers are kept however long they wait."""
    def before() -> None:
        from grader import judgeserver, scheduler
        scheduler.JUDGE_SERVERS = servers
        judgeserver.IDLE_SECONDS = 3600.0
        real = judgeserver.Servers.judge

        def judge(self, plan, args, fds):
            pid = real(self, plan, args, fds)
            chapter = next(a for a in args if re.fullmatch(r".*ch\d\d", a))[-2:]
            with open(log, "a", encoding="utf-8") as f:
                f.write(f"{chapter} {pid or 0}\n")
            return pid
        judgeserver.Servers.judge = judge
    return before


@pytest.mark.slow
def test_a_judge_worker_grades_each_submission_as_a_fresh_judge_would(tmp_path):
    """A judge server's workers run one submission's tests after another's. For every
    chapter, a mistake, the solution and another mistake, graded one after the other (one
    job) by the chapter's one worker, get the verdicts and messages that judges forked
    afresh give the mistakes, and the solution every point: nothing of one run (results,
    failures, the connection, the tallies) reaches the next, neither a mistake's failures
    the solution's run nor the solution's passes the next mistake's."""
    catalogue = load_catalogue(ROOT / "tests" / "mistakes")
    chapters = chapters_with_tests(ROOT / "tests")
    subs = tmp_path / "subs"
    for student, pick in (("a", 0), ("b", None), ("c", -1)):
        folder = subs / student / "exercises"
        folder.mkdir(parents=True)
        for chapter in chapters:
            filename = CHAPTERS[chapter].filename
            text = (ROOT / "solutions" / filename).read_text(encoding="utf-8")
            if pick is not None:
                text = catalogue[chapter][pick].apply(text)
            (folder / filename).write_text(text, encoding="utf-8")
    # Fresh judges grade the mistakes only: the solution's fresh verdict is known, every
    # test passed with its points (or skipped for want of a GPU, as everywhere here).
    mistakes = tmp_path / "mistakes"
    for student in "ac":
        shutil.copytree(subs / student, mistakes / student)
    verdicts, served = {}, {}
    for way, servers, jobs, cohort in (("workers", True, "1", subs), ("fresh", False, "2", mistakes)):
        log = tmp_path / f"{way}.log"
        out = tmp_path / way
        run = run_cli(["grade", str(cohort), "-o", str(out), "--jobs", jobs], tmp_path,
                      before=_workers_logged(log, servers))
        assert run.code == 0, run.explain()
        verdicts[way] = {s.name: (r["score"], {c: v["status"] for c, v in r["extra_data"]["chapters"].items()},
                                  [(t["name"], t.get("status"), t.get("output"), t.get("score")) for t in r["tests"]])
                         for s in sorted(cohort.iterdir()) for r in [results(out, s.name)]}
        served[way] = [line.split() for line in log.read_text(encoding="utf-8").splitlines()] \
            if log.exists() else []
    a, b, c = (verdicts["workers"][s] for s in "abc")
    assert {"a": a, "c": c} == verdicts["fresh"]
    tests = results(tmp_path / "workers", "b")["tests"]
    full = sum(t["max_score"] for t in tests)
    assert b[0] == full and a[0] < full and c[0] < full, (a[0], b[0], c[0], full)
    assert set(b[1].values()) == {"graded"}, b[1]
    assert all(t.get("status") == "passed" and t["score"] == t["max_score"] and not t["output"]
               or t.get("status") is None and t["max_score"] == 0 and "needs a CUDA GPU" in t["output"]
               for t in tests), [t for t in tests if t.get("status") != "passed"]
    by_chapter: dict[str, list[str]] = {}
    for chapter, pid in served["workers"]:
        by_chapter.setdefault(chapter, []).append(pid)
    assert sorted(by_chapter) == chapters and "0" not in {p for ps in by_chapter.values() for p in ps}, served
    # a, b and c in that order, one at a time: in every chapter, one worker judged all three
    assert all(len(pids) == 3 and len(set(pids)) == 1 for pids in by_chapter.values()), by_chapter
    assert served["fresh"] == [], served


def test_a_judge_server_dying_with_a_request_costs_a_regrade_not_a_score(tmp_path):
    """The one judge a dead server may have left half-started is the grader's failure: that
    submission awaits a regrade (never a score), the rest are graded, the chapter's judges
    now forked by the zygote, and the same command again grades what was left."""
    files = {"ada": SOLUTION, "bob": SOLUTION, "cy": SOLUTION}
    subs = _cohort(tmp_path / "subs", files)

    def server_dies_at_its_second_judge() -> None:
        from grader import judgeserver
        real = judgeserver._Serve._assign
        count = [0]

        def assign(self, *args):
            count[0] += 1
            if count[0] == 2:
                os._exit(1)
            return real(self, *args)
        judgeserver._Serve._assign = assign

    out = tmp_path / "out"
    first = run_cli(["grade", str(subs), "-o", str(out), "--chapters", "05", "--jobs", "1"], tmp_path,
                    before=server_dies_at_its_second_judge)
    assert first.code == 3, first.explain()
    grades = _grades(out)
    feedback = (out / "bob" / "feedback.md").read_text(encoding="utf-8")
    assert grades["bob"]["total"] == "regrade" and "judge server ended" in feedback, (grades["bob"], feedback)
    assert grades["ada"]["total"] == grades["cy"]["total"] == "20", grades
    second = run_cli(["grade", str(subs), "-o", str(out), "--chapters", "05"], tmp_path)
    assert second.code == 0, second.explain()
    assert _grades(out)["bob"]["total"] == "20" and "1 graded, 2 unchanged" in second.stdout + second.stderr


def _starts_logged(log: Path, overlap: bool = True):
    """A `before` for run_cli: each job started goes to `log` as (student, its uid, the uids
    of the jobs still finishing then); with `overlap` False, a slot waits for its job's end."""
    def before() -> None:
        from grader import scheduler
        real = scheduler.Scheduler._start_job

        def start(self, sub, slot, solo=""):
            finishing = sorted(j.uid for j in self.finishing)
            result = real(self, sub, slot, solo)
            job = self.jobs.get(slot)
            with open(log, "a", encoding="utf-8") as f:
                f.write(json.dumps([sub.student, job and job.uid, finishing]) + "\n")
            return result
        scheduler.Scheduler._start_job = start
        if not overlap:
            scheduler.Scheduler._release = lambda self, job: None
    return before


@needs_root
def test_a_slot_takes_its_next_submission_while_the_last_is_cleaned_up(tmp_path):
    """Once a judge is done and its results end the submission, the slot starts the next
    one under its other uid while the last one's processes exit and its folder goes: the
    same verdicts as one after the other, for a solution, a mistake, code that leaves a
    process behind and a submission whose process dies mid-chapter (its fresh runs are
    not overlapped: the submission is not over)."""
    files = {"ada": SOLUTION, "bob": MISTAKES["no zero_grad in the training loop"].apply(SOLUTION),
             "cy": in_function(DYNAMIC, "import ctypes\nctypes.string_at(0)"),
             "dan": at_import("import subprocess\nsubprocess.Popen(['sleep', '3011'], start_new_session=True)"),
             "eve": SOLUTION}
    subs = _cohort(tmp_path / "subs", files)
    verdicts, starts = {}, {}
    for way, overlap in (("overlapping", True), ("one after another", False)):
        log = tmp_path / f"{way}.log"
        out = tmp_path / way
        run = run_cli(["grade", str(subs), "-o", str(out), "--chapters", "05", "--jobs", "1"], tmp_path,
                      before=_starts_logged(log, overlap))
        assert run.code == 0, run.explain()
        verdicts[way] = _verdicts(out, sorted(files))
        starts[way] = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert verdicts["overlapping"] == verdicts["one after another"]
    ada, bob, cy, dan, eve = (verdicts["overlapping"][s] for s in sorted(files))
    assert ada[0] == dan[0] == eve[0] == 20 and bob[0] < 20 and cy[1] == "crashed", verdicts
    overlapped = starts["overlapping"]
    assert [s[0] for s in overlapped] == sorted(files), overlapped
    assert all(uid not in finishing for _, uid, finishing in overlapped), overlapped
    assert sum(bool(finishing) for _, _, finishing in overlapped) >= 3, overlapped
    assert len({uid for _, uid, _ in overlapped}) == 2, overlapped
    assert all(not finishing for _, _, finishing in starts["one after another"]), starts
    assert len({uid for _, uid, _ in starts["one after another"]}) == 1, starts


# --------------------------------------------------------------------------- units

def test_a_zygote_closed_before_it_was_needed_is_ended_not_waited_for():
    """The zygote imports from its birth, while the grader reads the submissions; a run
    that stops before it needs the zygote (no submissions, say) ends it at once."""
    from grader.zygote import Zygote
    zygote = Zygote(ROOT / "tests", calibrate=True)
    assert zygote.warming
    zygote.close()
    with pytest.raises(ChildProcessError):
        os.waitpid(zygote.pid, os.WNOHANG)   # already reaped by close()
    warm = Zygote(ROOT / "tests", calibrate=False)
    try:
        assert warm.warm_up(vision=False) == {} and not warm.warming
    finally:
        warm.close()


_ZYGOTE_THREADS = """
import os
from pathlib import Path
from grader.zygote import HUGE_PAGES_THREAD, Zygote
zygote = Zygote(Path(os.environ["TESTS"]), calibrate=False)
zygote.warm_up(vision=False)
names = []
for task in os.listdir(f"/proc/{zygote.pid}/task"):
    try:
        with open(f"/proc/{zygote.pid}/task/{task}/comm") as f:
            names.append(f.read().strip())
    except FileNotFoundError:
        pass   # (the huge-pages thread, ended meanwhile)
print(" ".join(names))
print(len([n for n in names if n != HUGE_PAGES_THREAD]))
zygote.close()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts threads in /proc")
def test_the_warm_zygote_is_one_thread_numpys_blas_started_none():
    """In a fresh grader (numpy not yet loaded), the zygote's numpy BLAS starts no threads
    of its own (`process.one_blas_thread`); asked for two, it has them, and they show.
    (The zygote's own short-lived thread that moves memory to huge pages is not counted.)"""
    counts = blas_thread_counts(_ZYGOTE_THREADS, {"TESTS": str(ROOT / "tests")})
    assert counts == {None: 1, "2": 2}, counts


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_judge_server_keeps_few_idle_workers_and_not_for_long(monkeypatch):
    """`_Serve._retire`: beyond IDLE_WORKERS idle workers, the longest idle end; so does a
    worker idle for IDLE_SECONDS. An ended worker's line is closed (the worker, waiting for
    a run, reads its end and exits); busy workers are left alone."""
    import socket as sockets
    from grader import judgeserver
    serve = judgeserver._Serve(sockets.socket(), -1, None)
    theirs = {}
    for pid in (11, 12, 13, 14, 15):
        mine, theirs[pid] = sockets.socketpair(sockets.AF_UNIX, sockets.SOCK_SEQPACKET)
        serve.lines[pid] = mine
    now = time.monotonic()
    monkeypatch.setattr(judgeserver, "IDLE_WORKERS", 2)
    serve.idle = {11: now - 3, 12: now - 2, 13: now - 1, 14: now - judgeserver.IDLE_SECONDS - 1}
    serve._retire()   # 15 is busy
    assert sorted(serve.idle) == [12, 13] and sorted(serve.lines) == [12, 13, 15], (serve.idle, serve.lines)
    for pid in (11, 14):
        assert theirs[pid].recv(16) == b""   # the worker's end: the server hung up
    for pid in (12, 13, 15):
        theirs[pid].setblocking(False)
        with pytest.raises(BlockingIOError):
            theirs[pid].recv(16)
    for sock in [*serve.lines.values(), *theirs.values()]:
        sock.close()


def test_slots_get_cores_of_their_own_when_there_are_enough(monkeypatch):
    """`process.slot_cpus`: one CPU per slot, from the ones this process may use (the last
    ones), or none at all when the slots outnumber them; `run_on` never fails a run."""
    from grader import process
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 5}, raising=False)
    assert process.slot_cpus(1) == (5,)
    assert process.slot_cpus(2) == (2, 5)
    assert process.slot_cpus(4) == (0, 1, 2, 5)
    assert process.slot_cpus(5) == ()

    def refused(pid, cpus):
        raise OSError(22, "Invalid argument")
    monkeypatch.setattr(os, "sched_setaffinity", refused, raising=False)
    process.run_on(7)   # a CPU that cannot be had: left as it is, no error


def test_a_job_graded_again_alone_is_not_pinned():
    """`scheduler.run_cpu`: a job runs on its slot's CPU, unless pinning is off or it is the
    second chance after a wall-clock backstop, which the kernel may move off a busy core."""
    from types import SimpleNamespace

    from grader.scheduler import run_cpu
    assert run_cpu((3, 5), SimpleNamespace(slot=1, solo=False)) == 5
    assert run_cpu((3, 5), SimpleNamespace(slot=0, solo=True)) is None
    assert run_cpu((), SimpleNamespace(slot=1, solo=False)) is None


def test_a_judge_server_gives_a_run_to_the_idle_worker_that_last_ran_on_its_cpu():
    """`_Serve._assign`: an idle worker whose last run was on the request's CPU takes it
    (what it holds is in that core's caches), else another idle one; none is forked while
    one is idle."""
    import socket as sockets
    from grader import judgeserver
    serve = judgeserver._Serve(sockets.socket(), -1, None)
    theirs = {}
    for pid, cpu in ((21, 0), (22, 1), (23, 0)):
        mine, theirs[pid] = sockets.socketpair(sockets.AF_UNIX, sockets.SOCK_SEQPACKET)
        serve.lines[pid], serve.cpu_of[pid], serve.idle[pid] = mine, cpu, time.monotonic()
    serve._fork = lambda session, fresh: pytest.fail("forked a worker while one was idle")

    def request(cpu):
        return json.dumps({"impl": "x", "skip": [], "cpu": cpu}).encode()
    assert serve._assign(None, None, request(1), []) == 22
    other = serve._assign(None, None, request(1), [])   # none left that ran on CPU 1
    assert other in (21, 23) and serve.cpu_of[other] == 1 and serve.cpu_of[22] == 1
    assert serve._assign(None, None, request(0), []) == ({21, 23} - {other}).pop()
    assert not serve.idle
    assert theirs[22].recv(1 << 16) == request(1)
    for sock in [*serve.lines.values(), *theirs.values()]:
        sock.close()


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs a choice of at least two CPUs")
def test_a_slots_processes_run_on_a_core_of_their_own(tmp_path):
    """With --jobs 1 on a machine of several cores, a submission's processes run on one
    core (the last this process may use), and the grader says so; the student's code,
    which prints where it runs, still gets full marks."""
    last = max(os.sched_getaffinity(0))
    printing = SOLUTION + "\nimport os as _os\nprint('runs on', sorted(_os.sched_getaffinity(0)))\n"
    subs = _cohort(tmp_path / "subs", {"pinned": printing})
    out = tmp_path / "out"
    run = run_cli(["grade", str(subs), "-o", str(out), "--jobs", "1"], tmp_path)
    assert run.code == 0, run.explain()
    assert f"with 1 job(s), each on a core of its own (CPU {last})" in run.stderr, run.stderr
    assert f"runs on [{last}]" in (out / "pinned" / "log.txt").read_text(encoding="utf-8")
    graded = results(out, "pinned")
    assert graded["score"] == sum(t["max_score"] for t in graded["tests"]), graded["tests"]


def test_the_zygote_keeps_track_of_live_judges_only():
    """`Servers.prune`: a judge whose parent is its server, or the zygote (its server dead),
    is kept from the orphan killer; one that is gone is forgotten, and so is a number that
    now belongs to a process of another parent."""
    import socket as sockets
    from grader.judgeserver import Servers

    def child(body) -> int:
        pid = os.fork()
        if pid == 0:
            try:
                body()
            finally:
                os._exit(0)
        return pid

    read, write = os.pipe()
    orphaned = child(lambda: time.sleep(60))     # as if re-parented here by a dead server
    server = child(lambda: (os.write(write, str(child(lambda: time.sleep(60))).encode()), time.sleep(60)))
    judge = int(os.read(read, 32))
    gone = child(lambda: None)
    os.waitpid(gone, 0)
    servers = Servers(sockets.socket())
    try:
        servers.pids = {server}
        servers.judges = {orphaned, judge, gone, 1}   # 1: init, nobody's judge
        servers.prune()
        assert servers.judges == {orphaned, judge}, servers.judges
    finally:
        for pid in (orphaned, judge, server):
            os.kill(pid, signal.SIGKILL)
        for pid in (orphaned, server):
            os.waitpid(pid, 0)
        os.close(read)
        os.close(write)
        servers.events.close()


@pytest.mark.parametrize("scan", [False, True], ids=["children-files", "proc-scan"])
def test_the_orphan_killer_kills_untracked_children_only(scan):
    """`kill_orphans`: a child of this process that is not tracked (student code re-parented
    to the zygote) is killed, a tracked one is not, whether the children are read from
    /proc/self/task/*/children or from a scan of every /proc entry."""
    from grader import accounting

    def child() -> int:
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        return pid

    tracked, orphan = child(), child()
    try:
        listed = accounting.own_children()
        if listed is not None:
            assert {tracked, orphan} <= set(listed), listed
        accounting.kill_orphans({tracked}, scan=scan)
        _, status = os.waitpid(orphan, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        assert os.waitpid(tracked, os.WNOHANG) == (0, 0), "a tracked child was killed"
    finally:
        for pid in (tracked, orphan):
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass


def test_a_working_folder_deleted_beside_the_loop_is_closed_to_its_uid_at_once(tmp_path):
    """`Workspace.destroy(remover)`: the folder is deleted by the remover's thread, but from
    the call on only its owner (the grader) may enter it, as the slot's uid may already run
    the next submission; `close` returns once it is gone."""
    from grader import accounting, sandbox

    ws = sandbox.Workspace(tmp_path / "0-1", os.getuid(), os.getgid())
    ws.create({FILENAME: SOLUTION.encode()})
    (ws.home / "notes.txt").write_text("left behind")
    remover = accounting.Remover()
    gate = threading.Event()
    original = shutil.rmtree

    def held(path, **kwargs):   # the thread deletes nothing until the test has looked
        gate.wait(30)
        original(path, **kwargs)

    shutil.rmtree = held
    try:
        ws.destroy(remover)
        assert ws.path.exists() and (ws.path.stat().st_mode & 0o777) == 0o700
    finally:
        gate.set()
        remover.close()
        shutil.rmtree = original
    assert not ws.path.exists()
    ws.create({FILENAME: SOLUTION.encode()})
    ws.destroy()   # without a remover: at once
    assert not ws.path.exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="huge pages: Linux")
def test_the_zygotes_large_regions_move_to_huge_pages_with_their_contents():
    """`huge_static_data` (run by the zygote once it is warm): a large private anonymous
    region is backed by huge pages afterwards where the kernel can (MADV_COLLAPSE), and
    holds exactly what it held; small regions and the heap are left alone."""
    import mmap

    from grader.process import huge_static_data

    def kernel_collapses() -> bool:   # MADV_COLLAPSE itself, on a region of its own
        import ctypes
        probe = mmap.mmap(-1, 8 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        probe.write(b"x" * len(probe))
        start = -(-ctypes.addressof(ctypes.c_char.from_buffer(probe)) // (2 << 20)) * (2 << 20)
        madvise = ctypes.CDLL(None, use_errno=True).madvise
        madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        return madvise(start, 2 << 20, 14) == 0 and madvise(start, 2 << 20, 25) == 0

    def child() -> int:
        if not kernel_collapses():
            return 2   # older than Linux 6.1, or THP off: the function has nothing to do
        region = mmap.mmap(-1, 40 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        pattern = bytes(range(256)) * 16
        for offset in range(0, len(region), len(pattern)):
            region[offset:offset + len(pattern)] = pattern
        moved = huge_static_data()
        if any(region[o:o + len(pattern)] != pattern for o in range(0, len(region), len(pattern))):
            return 3
        address = __import__("ctypes").addressof(__import__("ctypes").c_char.from_buffer(region))
        huge = 0
        with open("/proc/self/smaps") as f:
            inside = False
            for line in f:
                if "-" in line.split()[0] and not line.split()[0].endswith(":"):
                    start, end = (int(x, 16) for x in line.split()[0].split("-"))
                    inside = start <= address < end
                elif inside and line.startswith("AnonHugePages:"):
                    huge = int(line.split()[1])
        return 0 if moved >= 16 and huge >= 16 << 10 else 1

    pid = os.fork()
    if pid == 0:
        code = 4
        try:
            code = child()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.WEXITSTATUS(status)
    assert code != 3, "the region's contents changed"
    if code == 2:
        pytest.skip("this kernel does not collapse memory into huge pages")
    assert code == 0, "the region is not backed by huge pages"


def test_a_chapter_whose_tests_do_not_collect_gets_no_judge_server(tmp_path):
    """A server is only worth having for tests that collect cleanly; otherwise the zygote
    forks each judge itself, which reports the collection error as it always has."""
    import socket
    from types import SimpleNamespace

    from grader.judgeserver import Servers
    tests = tmp_path / "tests"
    (tests / "ch05").mkdir(parents=True)
    (tests / "ch05" / "test_broken.py").write_text("def test_x(:\n", encoding="utf-8")
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    servers = Servers(theirs)
    args = chapter_test_args("05", tmp_path, tests_dir=tests, extra=["-c", os.devnull, "--noconftest"])
    try:
        assert servers.judge(SimpleNamespace(skip=frozenset()), args, []) is None
        assert servers.pids == set() and servers.judges == set()
        assert list(servers.by_args.values()) == [None]   # the chapter's judges: the zygote's
    finally:
        servers.close()
        mine.close()
        theirs.close()


def test_a_tests_folder_of_another_name_is_refused_in_one_line(tmp_path, capsys):
    from grader import cli
    (tmp_path / "mytests" / "ch05").mkdir(parents=True)
    for folder, says in ((tmp_path / "mytests", "must be named 'tests'"), (tmp_path / "none", "no such folder")):
        code = cli.main(["grade", str(DEMO), "-o", str(tmp_path / "out"), "--tests", str(folder)])
        err = capsys.readouterr().err
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_chapter_choice():
    a = collect.Submission("a", Path("a"), files={"ch05_linear_regression.py": b""})
    b = collect.Submission("b", Path("b"), files={"ch03_gradient_descent.py": b"", "ch09_softmax_classifier.py": b""})
    chosen, notes = choose_chapters(None, ["03", "05"], [a, b])
    assert chosen == ["03", "05"] and "ch09" in notes[0]
    assert choose_chapters("all", ["03", "05", "07"], [a])[0] == ["03", "05", "07"]
    assert choose_chapters("5", ["03", "05"], [b])[0] == ["05"]
    with pytest.raises(ValueError, match="no tests yet"):
        choose_chapters("07", ["03", "05"], [a])
    with pytest.raises(ValueError, match="no chapter"):
        choose_chapters("42", ["03", "05"], [a])


def test_student_ids_are_safe():
    assert collect.safe_id("alice") == "alice"
    assert collect.safe_id("ali ce") .startswith("ali_ce-")
    assert collect.safe_id("=cmd|' /C calc'!A0")[0] not in "=+-@"
    weird = collect.safe_id("d\udce9bora")
    assert weird.startswith("d_xe9bora-") and weird.isascii()
    assert collect.safe_id("../../etc") not in ("..", "../../etc") and "/" not in collect.safe_id("../../etc")


def test_schema_rejects_malformed_results():
    jsonschema = pytest.importorskip("jsonschema")
    good = {"score": 1, "tests": [{"name": "t", "score": 1, "max_score": 1, "status": "passed",
                                   "visibility": "visible"}]}
    jsonschema.validate(good, RESULTS_SCHEMA)
    for bad in ({"tests": [{"name": "t", "status": "ok"}]},
                {"score": 1, "tests": [{"score": 1, "visibility": "sometimes"}]},
                {"score": "ten"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, RESULTS_SCHEMA)
