"""`make bench`'s bookkeeping (benchmarks/compare.py): the numbers it reports come from the
runs they name. The timings themselves are the benchmark's, not a test's."""
from __future__ import annotations

import sys

import pytest

from grader.paths import ROOT
from hostile.harness import blas_thread_counts

sys.path.insert(0, str(ROOT / "benchmarks"))

import compare  # noqa: E402


def _runs(walls):
    return [{"wall": w, "scores": {"s000": 20.0}} for w in walls]


def test_the_median_run_keeps_every_run_in_the_order_it_ran():
    chosen = compare.median_run(_runs([9.0, 7.0, 8.0]), lambda r: r["wall"])
    assert chosen["wall"] == 8.0
    assert chosen["all"] == [9.0, 7.0, 8.0]   # not sorted: run i is paired with the floor's run i
    assert chosen["scores_agree"]


def test_each_run_is_paired_with_the_floor_run_beside_it():
    graded = compare.median_run(_runs([9.0, 7.0, 8.0]), lambda r: r["wall"])["all"]
    floors = compare.median_run(_runs([8.0, 6.0, 7.0]), lambda r: r["wall"])["all"]
    assert compare.paired_ratios(graded, floors) == [9.0 / 8.0, 7.0 / 6.0, 8.0 / 7.0]


def test_runs_that_disagree_on_a_score_are_flagged():
    runs = _runs([1.0, 2.0])
    runs[1]["scores"] = {"s000": 19.0}
    assert not compare.median_run(runs, lambda r: r["wall"])["scores_agree"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_floor_computes_on_one_blas_thread_as_the_grading_processes_do():
    """The floor's imports (numpy among them, by way of the grading plugin) start no BLAS
    thread, as in every grading process; asked for two, they start, and they show."""
    imports = compare.FLOOR_SCRIPT.split("warm_up()")[0]
    probe = imports + "\nimport os\nprint(len(os.listdir('/proc/self/task')))\n"
    counts = blas_thread_counts(probe)
    assert counts == {None: 1, "2": 2}, counts


def test_the_report_names_the_pairs_and_the_machines_speed():
    from types import SimpleNamespace
    scores = {"s000": 20.0}
    graded = compare.median_run([{"wall": w, "scores": scores, "peak": 2**30, "code": 0,
                                  "phases": (1.5, g, 0.3)} for w, g in ((10.0, 8.0), (11.0, 9.0))],
                                compare.grading_phase)
    floor = compare.median_run([{"wall": w, "scores": scores, "peak": 0, "code": 0, "per_submission": 0.1}
                                for w in (7.0, 7.5)], lambda r: r["wall"])
    text, same = compare.report(SimpleNamespace(students=1, chapter="05", jobs=2), {"s000": "solution"},
                                {"grader grade": graded, "floor": floor}, 0.5, (2.0, 0), {}, 0.0612)
    assert same
    assert "calibration workload 0.061 s of CPU time" in text
    assert "the floor's run beside it: 1.143x, 1.200x (median 1.171x)" in text
    assert (f"`{compare.check_label('05')}`: 2.00 s (median of 5, after an untimed run, with the "
            "bytecode Python keeps, as on a student's machine).") in text
    failed, _ = compare.report(SimpleNamespace(students=1, chapter="05", jobs=2), {"s000": "solution"},
                               {"grader grade": graded, "floor": floor}, 0.5, (2.0, 2),
                               {"04": (1.7, 0), "05": (2.5, 1)}, 0.0612)
    assert "as on a student's machine); it FAILED (exit 2) on the solutions." in failed
    assert "| 04 | 1.7 |" in failed and "| 05 | 2.5 FAILED (exit 1) |" in failed


def test_checks_are_timed_as_a_student_runs_them_again(monkeypatch):
    """The untimed first check writes the bytecode (PYTHONDONTWRITEBYTECODE is dropped for
    the checks, as a student's machine has it), the median is of the runs after it, and a
    failure of any run, the untimed one too, is reported."""
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    assert "PYTHONDONTWRITEBYTECODE" not in compare.student_env()
    walls = iter([9.0, 2.0, 2.2, 2.1, 2.4, 2.3, 9.0, 1.5, 9.0, 1.7])
    codes = iter([3, 0, 0, 0, 0, 0, 0, 0, 0, 1])
    monkeypatch.setattr(compare, "run_check", lambda cmd: (next(walls), next(codes)))
    assert compare.time_check(compare.check_command("05")) == (2.2, 3)
    monkeypatch.setattr(compare, "CHAPTERS", {"04": None, "05": None})
    assert compare.time_chapters() == {"04": (1.5, 0), "05": (1.7, 1)}
