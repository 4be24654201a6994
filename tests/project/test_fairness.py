"""Grades that machine load cannot change, and points possible that are the same for all.

Time limits count the CPU time of a submission's processes (an alarm in the child, and
the parent's own measurement), with wall-clock limits only as backstops; a submission
that hits a backstop is graded again alone before the limit counts. So a busy machine
(a shared CI runner, a laptop at midnight) gives the same grades as a quiet one.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from grader.calibration import scale
from grader.paths import ROOT
from grader.sandbox import Limits
from hostile.cases import FILENAME, SOLUTION, TWO_LAYER, at_import, in_function
from hostile.harness import results, run_cli

CH14 = "ch14_lenet_cifar.py"
PER_TEST_CPU = 3  # seconds: the slow submission's test waits longer than this, and computes less
SLOW = in_function("        return self.linear(x)\n",
                   "import time as _t\n"
                   "if not getattr(_t, '_waited', False):\n"
                   "    _t._waited = True\n"
                   f"    _t.sleep({PER_TEST_CPU + 1})\n"
                   "    _c = _t.process_time()\n"
                   "    while _t.process_time() - _c < 1.0:\n"
                   "        pass\n")
BROKEN = SOLUTION.replace("return self.linear(x)", "return self.linear(x) * 0", 1)


def _cohort(folder: Path, files: dict[str, dict[str, str]]) -> Path:
    for student, chapters in files.items():
        (folder / student).mkdir(parents=True)
        for name, text in chapters.items():
            (folder / student / name).write_text(text, encoding="utf-8")
    return folder


def _grades(out: Path) -> list[dict[str, str]]:
    with open(out / "grades.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


class CpuHog:
    """`n` busy processes, bounded in time, ended on exit."""

    def __init__(self, n: int) -> None:
        code = "import time\nend = time.monotonic() + 600\nwhile time.monotonic() < end:\n    pass\n"
        self.procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]

    def __enter__(self) -> "CpuHog":
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory) -> Path:
    return _cohort(tmp_path_factory.mktemp("fair") / "subs", {
        "honest": {FILENAME: SOLUTION}, "broken": {FILENAME: BROKEN}, "slow": {FILENAME: SLOW}})


def _grade(subs: Path, out: Path, tmp: Path, per_test: float = PER_TEST_CPU):
    run = run_cli(["grade", str(subs), "-o", str(out), "--jobs", "2", "--timeout", f"{per_test:g}",
                   "--cpu", "120", "-q"], tmp, timeout=900)
    assert run.code == 0, run.explain()
    return run


def test_grades_are_the_same_beside_a_cpu_hog(small_cohort, tmp_path):
    quiet = tmp_path / "quiet"
    _grade(small_cohort, quiet, tmp_path)
    with CpuHog(2 * (os.cpu_count() or 2)):
        busy = tmp_path / "busy"
        _grade(small_cohort, busy, tmp_path)
    assert _grades(quiet) == _grades(busy)
    by_student = {row["student"]: row for row in _grades(busy)}
    assert by_student["honest"]["total"] == by_student["honest"]["max"]
    assert float(by_student["broken"]["total"]) < float(by_student["broken"]["max"])
    # correct but slow: it waits longer than the per-test limit, uses less CPU than it
    assert by_student["slow"]["total"] == by_student["slow"]["max"], by_student["slow"]
    for out in (quiet, busy):
        chapter = results(out, "slow")["extra_data"]["chapters"]["05"]
        slowest = max(chapter["durations"], key=chapter["durations"].get)
        assert chapter["durations"][slowest] > PER_TEST_CPU, chapter["durations"]
        assert chapter["cpu_seconds"][slowest] < PER_TEST_CPU, chapter["cpu_seconds"]


def test_a_cpu_bound_loop_is_stopped_by_the_cpu_limit_even_with_the_alarm_switched_off(tmp_path):
    # in TwoLayerNet.forward, for the 6 samples of test_two_layer_shape only: that test is
    # stopped, the tests after it run in a fresh process and pass
    spin = in_function(TWO_LAYER, "while x.shape[0] == 6:\n    pass")
    disarmed = in_function(TWO_LAYER, "import signal\nif x.shape[0] == 6:\n    signal.setitimer(signal.ITIMER_PROF, 0)\n"
                                      "while x.shape[0] == 6:\n    pass")
    subs = _cohort(tmp_path / "subs", {"spin": {FILENAME: spin}, "disarmed": {FILENAME: disarmed},
                                       "honest": {FILENAME: SOLUTION}})
    out = tmp_path / "out"
    _grade(subs, out, tmp_path, per_test=1)
    for student in ("spin", "disarmed"):
        data = results(out, student)
        failed = [t for t in data["tests"] if t["status"] == "failed"]
        assert [t["name"].split()[-1] for t in failed] == ["test_two_layer_shape"], failed
        assert "CPU time" in failed[0]["output"], failed
        assert data["extra_data"]["limits"]["test_cpu"] == 1
    # the grader stopped the test from outside: the code had switched the alarm off
    assert any("during this test" in t["output"] for t in results(out, "disarmed")["tests"])
    assert results(out, "honest")["score"] == results(out, "honest")["extra_data"]["max_score"]


def test_points_possible_are_the_same_for_every_student(tmp_path):
    solution14 = (ROOT / "solutions" / CH14).read_text(encoding="utf-8")
    subs = _cohort(tmp_path / "subs", {
        "complete": {FILENAME: SOLUTION, CH14: solution14},
        "no_ch14": {FILENAME: SOLUTION},
        "crash_ch14": {FILENAME: SOLUTION, CH14: at_import("import os\nos._exit(3)", solution14)},
        "syntax_ch05": {FILENAME: "def broken(:\n", CH14: solution14},
    })
    out = tmp_path / "out"
    run = run_cli(["grade", str(subs), "-o", str(out), "--jobs", "2", "--chapters", "05,14", "-q"],
                  tmp_path, timeout=900)
    assert run.code == 0, run.explain()
    rows = _grades(out)
    assert len(rows) == 4 and len({row["max"] for row in rows}) == 1, rows
    complete = next(row for row in rows if row["student"] == "complete")
    assert complete["total"] == complete["max"], complete
    for chapter in ("05", "14"):
        possible = {results(out, r["student"])["extra_data"]["chapters"][chapter]["max_score"] for r in rows}
        assert len(possible) == 1, (chapter, possible)
    # a GPU test on a machine without one is shown as not counted, never as passed
    for r in rows:
        for t in results(out, r["student"])["tests"]:
            if "not counted" in t["tags"]:
                assert "status" not in t and t["max_score"] == 0 and t["score"] == 0


def test_limits_scale_with_the_calibration_and_stay_put_within_noise():
    assert scale(0.7) == scale(1.0) == scale(1.49) == 1.0
    assert scale(1.6) == 2.0 and scale(2.2) == 2.5
    limits = Limits().scaled(2.0)
    assert limits.test_cpu == 2 * Limits().test_cpu and limits.cpu == 2 * Limits().cpu
    assert limits.wall_backstop >= 4 * limits.cpu and limits.test_wall > 4 * limits.test_cpu


def test_the_calibration_runs_in_a_child_beside_the_warm_up_and_needs_no_compiler_stack():
    """The zygote forks the calibration as soon as torch is imported and goes on importing
    the rest (torch._dynamo among it, a second): the workload must not wait for that."""
    code = ("import sys\n"
            "import torch\n"
            "from grader.calibration import Beside, workload\n"
            "beside = Beside()\n"
            "workload()\n"
            "c = beside.result()\n"
            "print(c.seconds > 0, c.factor >= 1, 'torch._dynamo' in sys.modules)\n")
    assert _fresh_interpreter(code) == ["True", "True", "False"]


def test_the_warm_up_steps_optimizers_without_moving_the_random_state():
    """The zygote steps SGD and Adam once so its children inherit torch's first-use set-up;
    what every child then draws at random must not depend on it."""
    import torch

    from grader.process import first_calls
    before = torch.get_rng_state()
    first_calls()
    assert torch.equal(torch.get_rng_state(), before)


def test_the_warm_up_imports_without_collecting_and_leaves_the_collector_on():
    """Collections during the imports only walk objects that live as long as the process,
    and one before the freeze leaves holes that every child's new objects fill (slower
    grading, `grader.process.warm_up`); the children must still collect their own garbage."""
    code = ("import gc, sys\n"
            "from grader.process import warm_up\n"
            "seen = []\n"
            "gc.callbacks.append(lambda phase, info: seen.append(phase))\n"
            "warm_up(vision=False, children=1)\n"
            "print(len(seen), gc.isenabled(), gc.get_freeze_count() > 100000)\n")
    assert _fresh_interpreter(code) == ["0", "True", "True"]


def _fresh_interpreter(code: str) -> list[str]:
    """The words `code` prints, run in a new interpreter (nothing imported yet)."""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


def test_the_time_limit_rule_prefers_cpu_time_and_widens_backstops_when_alone():
    from grader.timelimits import SOLO_FACTOR, exceeded
    limits = Limits(test_cpu=10, cpu=100)
    calm = dict(solo=False, submission_cpu=5, test_cpu=1, test_wall=5, past_deadline=False)
    assert exceeded(limits, **calm) is None
    assert exceeded(limits, **{**calm, "submission_cpu": 101})[0] == "cpu"
    assert exceeded(limits, **{**calm, "test_cpu": limits.test_cpu_hard + 1})[0] == "test-cpu"
    slow = {**calm, "test_wall": limits.test_wall + 1}
    assert exceeded(limits, **slow)[0] == "test-wall"
    assert exceeded(limits, **{**slow, "solo": True}) is None  # alone: SOLO_FACTOR x the backstop
    assert exceeded(limits, **{**slow, "solo": True, "test_wall": SOLO_FACTOR * limits.test_wall + 1})
    assert exceeded(limits, **{**calm, "test_cpu": None, "test_wall": 10**6}) is None  # between tests
    assert exceeded(limits, **{**calm, "past_deadline": True})[0] == "wall"


def test_cpu_scans_are_spaced_by_what_is_left_of_the_limit():
    """The parent scans a job's processes for its CPU time less often far from the limit,
    never so rarely that the job could pass the limit between two scans by more than one
    TICK on every core."""
    from grader.scheduler import CORES, MAX_TICK, TICK, sample_interval
    assert sample_interval(10_000.0) == MAX_TICK
    assert sample_interval(0.0) == sample_interval(-5.0) == TICK
    for left in (0.3, 1.0, 2.5, 4.0, 8.0, 60.0):
        gap = sample_interval(left)
        assert TICK <= gap <= MAX_TICK
        assert gap * CORES <= max(left / 2, TICK * CORES)   # what every core could use by the next scan
