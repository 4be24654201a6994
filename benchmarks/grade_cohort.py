"""Benchmark `grader grade`: 100 chapter 05 submissions, --jobs 2.

    python benchmarks/grade_cohort.py [--students 100] [--jobs 2] [--keep DIR]

Builds the cohort in a temporary folder (60 % copies of the solution, the rest spread
over the mistakes in tests/mistakes/ch05.py), grades it with a fresh `grader` process,
times it, grades it again with nothing changed to time a re-run, and once more (--force)
sampling the memory of the whole process tree (the grader and every child it forks) every
50 ms: sampling slows the run down, so it is not the timed one. Prints the wall time, the peak of the summed resident set sizes (RSS, which
counts pages shared copy-on-write with the parent once per process, so it overstates)
and the peak of the summed proportional set sizes (PSS, shared pages split between the
processes sharing them: the memory actually used) and the re-run's time.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grader.mistakes import load_catalogue  # noqa: E402

FILENAME = "ch05_linear_regression.py"


def build(folder: Path, students: int) -> dict[str, str]:
    """Write the cohort; returns student -> what it is."""
    solution = (ROOT / "solutions" / FILENAME).read_text(encoding="utf-8")
    mistakes = load_catalogue(ROOT / "tests" / "mistakes").get("05", [])
    kinds = {}
    for i in range(students):
        student = f"s{i:03d}"
        if mistakes and i % 5 >= 3:  # 40 %: a catalogued mistake
            m = mistakes[i % len(mistakes)]
            text, kinds[student] = m.apply(solution), m.name
        else:
            text, kinds[student] = solution, "solution"
        (folder / student / "exercises").mkdir(parents=True)
        (folder / student / "exercises" / FILENAME).write_text(text, encoding="utf-8")
    return kinds


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(name))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def memory(pids: list[int]) -> tuple[int, int]:
    """(sum of RSS, sum of PSS) in bytes."""
    rss = pss = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
        except OSError:
            pass
    return rss, pss


def run(cmd: list[str], sample: bool = False, **popen) -> tuple[float, int, int, int]:
    """(wall s, peak RSS sum, peak PSS sum, exit code) of one command's process tree.

    With `sample`, the memory of the process tree is read every 50 ms. Reading it is not
    free (the kernel walks every process's page tables, holding their memory locks), so a
    sampled run is slower: time one run unsampled, read the memory in another."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, **popen)
    peak_rss = peak_pss = 0
    if not sample:
        proc.wait()
    while proc.poll() is None:
        rss, pss = memory(tree(proc.pid))
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        time.sleep(0.05)
    return time.perf_counter() - start, peak_rss, peak_pss, proc.returncode


def grade(subs: Path, out: Path, jobs: int, sample: bool = False,
          force: bool = False) -> tuple[float, int, int, int]:
    """`run` of one `grader grade` of the cohort."""
    return run([str(ROOT / ".venv" / "bin" / "grader"), "grade", str(subs), "-o", str(out),
                "--jobs", str(jobs), "-q"] + (["--force"] if force else []), sample)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--keep", default=None, help="keep the cohort and gradebook in this folder")
    args = parser.parse_args()
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="grade-bench-"))
    subs, out = base / "submissions", base / "gradebook"
    shutil.rmtree(subs, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    subs.mkdir(parents=True)
    try:
        kinds = build(subs, args.students)
        load = os.getloadavg()[0]
        wall, _, _, code = grade(subs, out, args.jobs)
        graded = len(list(out.glob("*/results.json")))
        again, _, _, _ = grade(subs, out, args.jobs)
        _, rss, pss, _ = grade(subs, out, args.jobs, sample=True, force=True)
        print(f"cohort: {args.students} submissions of chapter 05 "
              f"({sum(k == 'solution' for k in kinds.values())} solutions, the rest catalogued mistakes)")
        print(f"machine: {os.cpu_count()} cores, load average {load:.2f} at the start")
        print(f"grader grade --jobs {args.jobs}: {wall:.1f} s wall, exit {code}, {graded} graded "
              f"({wall / max(1, graded):.2f} s per submission)")
        print(f"peak memory of the process tree: {rss / 2**30:.2f} GiB RSS summed, "
              f"{pss / 2**30:.2f} GiB PSS summed")
        print(f"re-run with nothing changed: {again:.1f} s")
        return 0 if code == 0 and graded == args.students else 1
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
