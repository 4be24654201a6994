"""Grading speed side by side: `grader grade` against a naive runner, nbgrader and the floor.

    python benchmarks/compare.py [--students 100] [--chapter 05] [--jobs CORES] [--repeats 7]
                                 [--skip-chapters]

One run on one machine, the same submissions and the same tests for every way:

* `grader grade --jobs CORES`: the cohort grader (sandbox, zygote, CPU-time limits);
* naive: a fresh `python -m pytest` per submission, CORES at a time;
* nbgrader: `nbgrader autograde` of the same submissions as notebooks made by
  `grader nbgrader`, when nbgrader is installed (`make nbgrader-setup`);
* floor: the same suite with the same pytest options, run in one already warm interpreter
  (its heap frozen, as the zygote's is), once per submission, sharing its reference runs
  across the cohort as `grader grade` does, its total divided by CORES: what grading
  cannot beat without faster tests.

`grader grade` and the floor run `--repeats` times each, one after the other in turn (a
machine's speed drifts over minutes), and the table has the median run of each; the ratio
of each run of `grader grade` to the floor's run beside it is reported too. Every
way must give every student the same score; the script says so or fails. It also
times `make check ch=NN impl=solutions` (the students' command; `grader check` where make is
missing; median of 5 after an untimed run, with bytecode written as on a student's machine)
and each chapter's full suite on the solutions, and writes the table
to benchmarks/RESULTS.md with the machine it ran on and how fast that machine was then (the
CPU time of `grader grade`'s calibration workload). A command that fails on the solutions is
marked FAILED beside its time, and the script exits 1.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from grade_cohort import run  # noqa: E402

from grader.cohort import read_phases  # noqa: E402
from grader.mistakes import load_catalogue  # noqa: E402
from grader.syllabus import CHAPTERS  # noqa: E402

PYTHON = str(ROOT / ".venv" / "bin" / "python")
GRADER = str(ROOT / ".venv" / "bin" / "grader")

FLOOR_SCRIPT = r"""
import json, os, sys, time
os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy's BLAS on one thread, as in every grading process
import pytest
from grader.plugin import RESULTS_KEY
from grader.process import chapter_test_args, run_pytest_main, warm_up
warm_up()  # imports and a frozen heap, as the grader's zygote has them
tests, chapter, folders = sys.argv[1], sys.argv[2], sys.argv[3:]

class Grab:
    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session):
        Grab.score = session.config.stash[RESULTS_KEY].score

import tempfile
references = tempfile.mkdtemp(prefix="floor-references-")  # once per cohort, as grader grade has them
scores, times = {}, []
for folder in folders:
    start = time.perf_counter()
    run_pytest_main(chapter_test_args(chapter, folder, tests_dir=__import__("pathlib").Path(tests),
                                      extra=[f"--reference-cache={references}"]), [Grab()])
    times.append(time.perf_counter() - start)
    scores[folder] = Grab.score
__import__("shutil").rmtree(references, ignore_errors=True)
print("FLOOR " + json.dumps({"scores": scores, "times": times}))
"""


def build(folder: Path, chapter: str, students: int) -> dict[str, str]:
    """Copies of the solution and of the mistake catalogue, deterministic: student -> kind."""
    filename = CHAPTERS[chapter].filename
    solution = (ROOT / "solutions" / filename).read_text(encoding="utf-8")
    mistakes = load_catalogue(ROOT / "tests" / "mistakes").get(chapter, [])
    kinds = {}
    for i in range(students):
        student = f"s{i:03d}"
        if mistakes and i % 5 >= 3:
            m = mistakes[i % len(mistakes)]
            text, kinds[student] = m.apply(solution), m.name
        else:
            text, kinds[student] = solution, "solution"
        (folder / student).mkdir(parents=True)
        (folder / student / filename).write_text(text, encoding="utf-8")
    return kinds


def timed(cmd: list[str], sample: bool = False) -> tuple[float, int, int]:
    """(wall s, peak PSS of the process tree in bytes or 0 when not sampled, exit code)."""
    wall, _, pss, code = run(cmd, sample, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return wall, pss, code


def way_grader(subs: Path, out: Path, chapter: str, jobs: int, sample: bool = True) -> dict:
    cmd = [GRADER, "grade", str(subs), "-o", str(out), "--jobs", str(jobs), "--chapters", chapter, "--force"]
    with tempfile.TemporaryFile("w+", encoding="utf-8") as said:
        wall, _, _, code = run(cmd, stdout=said, stderr=subprocess.DEVNULL)
        said.seek(0)
        phases = read_phases(said.read())
    peak = timed(cmd + ["-q"], sample=True)[1] if sample else 0  # the same again, for the memory
    with open(out / "grades.csv", encoding="utf-8", newline="") as f:
        scores = {row["student"]: float(row["total"]) for row in csv.DictReader(f)}
    return {"wall": wall, "peak": peak, "code": code, "scores": scores, "phases": phases and phases[1:]}


def way_naive(subs: Path, work: Path, chapter: str, jobs: int) -> dict:
    work.mkdir(parents=True, exist_ok=True)

    def one(student: Path) -> tuple[str, float]:
        out = work / f"{student.name}.json"
        subprocess.run([PYTHON, "-m", "pytest", str(ROOT / "tests" / f"ch{chapter}"), f"--impl={student}",
                        "-q", "-p", "no:cacheprovider", f"--results-json={out}"],
                       cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        data = json.loads(out.read_text(encoding="utf-8"))
        return student.name, sum(t["score"] for t in data["tests"])

    start = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        scores = dict(pool.map(one, sorted(subs.iterdir())))
    return {"wall": time.perf_counter() - start, "peak": 0, "code": 0, "scores": scores}


def way_floor(subs: Path, chapter: str, jobs: int) -> dict:
    folders = [str(p) for p in sorted(subs.iterdir())]
    proc = subprocess.run([PYTHON, "-c", FLOOR_SCRIPT, str(ROOT / "tests"), chapter, *folders],
                          cwd=ROOT, capture_output=True, text=True)
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("FLOOR "))
    data = json.loads(line[len("FLOOR "):])
    scores = {Path(k).name: v for k, v in data["scores"].items()}
    return {"wall": sum(data["times"]) / jobs, "peak": 0, "code": proc.returncode, "scores": scores,
            "per_submission": statistics.median(data["times"])}


def paired_ratios(graded: list[float], floors: list[float]) -> list[float]:
    """Run i of `grader grade` against run i of the floor, which ran just after it: the two
    met the same speed of the machine, which drifts over minutes."""
    return [g / f for g, f in zip(graded, floors)]


def median_run(runs: list[dict], key) -> dict:
    """The run whose `key` is the median (the lower middle one of an even number), with
    every run's `key` in "all"."""
    ordered = sorted(runs, key=key)
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["all"] = [key(r) for r in runs]
    chosen["scores_agree"] = all(r["scores"] == runs[0]["scores"] for r in runs)
    return chosen


def grading_phase(run: dict) -> float:
    return run["phases"][1] if run.get("phases") else run["wall"]


def way_nbgrader(subs: Path, base: Path, chapter: str, jobs: int) -> dict | None:
    """nbgrader's autograde of the same submissions, when nbgrader and `grader nbgrader` exist."""
    try:
        import nbgrader  # noqa: F401
        from grader import nbgrader as ours
    except ImportError:
        return None
    bench = getattr(ours, "benchmark_autograde", None)
    if bench is None:
        return None
    start = time.perf_counter()
    scores = bench(subs, base / "nbgrader", chapter)
    return {"wall": time.perf_counter() - start, "peak": 0, "code": 0, "scores": scores}


def check_command(chapter: str) -> list[str]:
    """The students' command, `make check`, where make is here; `grader check` otherwise."""
    make = shutil.which("make")
    if make and (ROOT / "Makefile").is_file():
        return [make, "-s", "check", f"ch={chapter}", "impl=solutions"]
    return [GRADER, "check", chapter, "--impl", "solutions"]


def check_label(chapter: str) -> str:
    cmd = check_command(chapter)
    return " ".join([Path(cmd[0]).name, *(a for a in cmd[1:] if a != "-s")])


def student_env() -> dict[str, str]:
    """This environment as a student's machine has it: Python writes the bytecode of the
    modules a check imports (the grader, the tests, the chapter's file), and the next check
    reads it back. A machine that sets PYTHONDONTWRITEBYTECODE (as this one and many
    container images do) compiles them again in every check: 0.19 s of ch05's (median of 8
    paired checks)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_check(cmd: list[str]) -> tuple[float, int]:
    """(wall seconds, exit code) of one check, as a student runs it."""
    start = time.perf_counter()
    code = subprocess.run(cmd, cwd=ROOT, env=student_env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode
    return time.perf_counter() - start, code


def time_check(cmd: list[str], repeats: int = 5) -> tuple[float, int]:
    """(median wall seconds, the first failing exit code or 0) of `repeats` runs of the check
    `cmd` after an untimed one, as a student checks again and again (the first check in a
    fresh clone also writes the bytecode). A failure is reported with the rest of the run's
    figures rather than losing them."""
    _, failed = run_check(cmd)
    times = []
    for _ in range(repeats):
        seconds, code = run_check(cmd)
        times.append(seconds)
        failed = failed or code
    return statistics.median(times), failed


def time_chapters() -> dict[str, tuple[float, int]]:
    """Each chapter's `grader check` on the solutions: (wall seconds of its second run, the
    first failing exit code or 0)."""
    return {chapter: time_check([GRADER, "check", chapter, "--impl", "solutions"], repeats=1)
            for chapter in CHAPTERS if (ROOT / "tests" / f"ch{chapter}").is_dir()}


def machine() -> str:
    import torch
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores, {mem:.0f} GiB, {platform.machine()}, Python "
            f"{platform.python_version()}, torch {torch.__version__}, "
            f"{'root (full sandbox)' if os.geteuid() == 0 else 'not root'}")


def speed() -> float:
    """CPU seconds of `grader grade`'s calibration workload here (best of three): how fast the
    machine was during this run, to compare runs made on other days (the same machine has
    measured from 0.059 s to 0.152 s)."""
    from grader.calibration import calibrate
    return calibrate().seconds


def report(args, kinds: dict, ways: dict, load: float, check: tuple[float, int], chapters: dict,
           pace: float) -> str:
    base = ways["grader grade"]["wall"]
    lines = [
        "# Grading speed, side by side", "",
        f"Produced by `{' '.join(['python', 'benchmarks/compare.py'] + sys.argv[1:])}` "
        f"(`make bench`) on {time.strftime('%Y-%m-%d')}.", "",
        f"- machine: {machine()}; load average {load:.2f} at the start; `grader grade`'s "
        f"calibration workload {pace:.3f} s of CPU time (best of 3, at the end)",
        f"- cohort: {args.students} submissions of chapter {args.chapter} "
        f"({sum(k == 'solution' for k in kinds.values())} solutions, the rest catalogued mistakes), "
        f"{args.jobs} at a time", "",
        "| way | wall s | submissions / min | peak memory (PSS) | x grader grade |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, w in ways.items():
        peak = f"{w['peak'] / 2**30:.2f} GiB" if w["peak"] else "-"
        lines.append(f"| {name} | {w['wall']:.1f} | {60 * args.students / w['wall']:.0f} | {peak} | "
                     f"{w['wall'] / base:.2f} |")
    same = all(w["scores"] == ways["grader grade"]["scores"] and w.get("scores_agree", True)
               for w in ways.values())
    floor = ways["floor"]
    lines += ["", f"Scores identical across the ways: {'yes' if same else 'NO'}.", "",
              f"The floor runs the same suite in one warm interpreter: "
              f"{floor['per_submission']:.2f} s per submission (median), divided by {args.jobs} cores."]
    if len(floor.get("all", [])) > 1:
        runs = len(floor["all"])
        lines += ["", f"`grader grade` and the floor ran {runs} times each, in turn; the table has the median "
                  "run of each. `grader grade`'s grading phase in its runs: "
                  + ", ".join(f"{t:.2f}" for t in ways["grader grade"]["all"]) + " s; the floor: "
                  + ", ".join(f"{t:.2f}" for t in floor["all"]) + " s."]
        pairs = paired_ratios(ways["grader grade"]["all"], floor["all"])
        lines += ["", "Each run of `grader grade` (its grading phase) against the floor's run beside it: "
                  + ", ".join(f"{r:.3f}x" for r in pairs) + f" (median {statistics.median(pairs):.3f}x)."]
    phases = ways["grader grade"].get("phases")
    if phases:
        start, grading, rest = phases
        lines += ["", f"`grader grade`'s own account of its {base:.1f} s: {start:.1f} s to start (reading "
                  "the submissions, collecting the tests, its zygote importing torch and the grading stack: "
                  "once per cohort, and done before the floor's clock starts), "
                  f"{grading:.2f} s grading (the floor's median run: {floor['wall']:.2f} s, {grading / floor['wall']:.3f}x; "
                  "the two medians are runs made minutes apart, so the ratios of the runs side by side, "
                  "above, are the measure), "
                  f"{rest:.1f} s writing the gradebook and report."]
    lines += ["", "`grader grade`'s peak memory comes from a second run of the same command, which samples "
              "the process tree every 50 ms; the timed run is not sampled (reading the memory maps "
              "slows the processes read).",
              "", f"`{check_label(args.chapter)}`: {check[0]:.2f} s (median of 5, after an untimed run, "
              "with the bytecode Python keeps, as on a student's machine)"
              + (f"; it FAILED (exit {check[1]}) on the solutions." if check[1] else "."), ""]
    if chapters:
        lines += ["Each chapter's full suite on the solutions (`grader check NN --impl solutions`, "
                  "its second run):", "",
                  "| chapter | s |", "| --- | ---: |"]
        lines += [f"| {c} | {s:.1f}{f' FAILED (exit {code})' if code else ''} |"
                  for c, (s, code) in chapters.items()]
    return "\n".join(lines) + "\n", same


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=100)
    parser.add_argument("--chapter", default="05")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--repeats", type=int, default=7,
                        help="runs of `grader grade` and of the floor, in turn (the median is reported)")
    parser.add_argument("--skip-chapters", action="store_true", help="don't time every chapter's suite")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-compare-"))
    try:
        subs = base / "submissions"
        kinds = build(subs, args.chapter, args.students)
        load = os.getloadavg()[0]
        graded, floors = [], []
        for i in range(max(1, args.repeats)):   # in turn: a drift of the machine's speed meets both
            graded.append(way_grader(subs, base / "out", args.chapter, args.jobs, sample=i == 0))
            floors.append(way_floor(subs, args.chapter, args.jobs))
        ways = {"grader grade": median_run(graded, grading_phase)}
        ways["grader grade"]["peak"] = graded[0]["peak"]
        ways["naive (fresh pytest each)"] = way_naive(subs, base / "naive", args.chapter, args.jobs)
        nb = way_nbgrader(subs, base, args.chapter, args.jobs)
        if nb is not None:
            ways["nbgrader autograde"] = nb
        ways["floor"] = median_run(floors, lambda r: r["wall"])
        check = time_check(check_command(args.chapter))
        chapters = {} if args.skip_chapters else time_chapters()
        text, same = report(args, kinds, ways, load, check, chapters, speed())
        Path(args.out).write_text(text, encoding="utf-8")
        print(text)
        failed = check[1] or any(code for _, code in chapters.values())
        return 0 if same and not failed and all(r["code"] == 0 for r in graded) else 1
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
