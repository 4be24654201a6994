"""`grader grade` and `grader merge`: grade a cohort in isolation, in parallel.

The pipeline, one small step each:

    find      grader.submissions  find submissions, read chapter files safely
    choose    here                which chapters to grade, which shard, what is already done
    manifest  grader.manifest     collect the instructor's tests once, without student code
    sandbox   grader.sandbox      fresh working folder, limits, namespaces, unprivileged uid
    run       grader.scheduler    one forked child per (submission, chapter), --jobs at a time
              grader.child        the child's side: sandbox, then pytest with grader.guard
              grader.protocol     the parent's validation of each child's result stream
    score     grader.results      the model: statuses, points, per-task rows
    write     grader.feedback     results.json (Gradescope), feedback.md, log.txt per student
              grader.gradebook    grades.csv and the summary table
    report    grader.htmlreport   report.html with plots

Chapters graded by default: every chapter that has tests in tests/ and whose file
appears in at least one submission of the cohort (all shards see the same cohort, so
they agree). Within that set, a student without the file scores 0 with "chNN_x.py
missing". `--chapters all` grades every chapter with tests; `--chapters 03,05` those.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

from grader import gradebook
from grader.paths import ROOT, SOLUTIONS, chapters_with_tests, datasets_dir, tests_dir
from grader.syllabus import CHAPTERS, normalise_chapter

UNSAFE = ("refusing to grade without the full sandbox: student code would run as you, could read "
          "solutions/ and the hidden tests, rewrite other students' results, reach the network and "
          "outlive the run; run as root (sudo, a container, a CI runner) on Linux, or pass "
          "--unsafe-limited to grade anyway")
EXIT_REGRADE = 3   # some submissions await a regrade (the grader failed, not the student)

EXAMPLES = """\
examples:
  grader grade examples/submissions -o gradebook            the demo cohort
  grader grade subs/ -o out --chapters 05 --jobs 4          one assignment, four workers
  grader grade subs/ -o out-1 --shard 1/3                   one of three CI shards
  grader merge out-1 out-2 out-3 -o gradebook               join the shards

Re-running skips students whose chapter files and tests are unchanged (--force regrades).
Output: OUT/grades.csv, OUT/report.html, OUT/<student>/{results.json,feedback.md,log.txt}.
Run as root (CI, containers) for full isolation: each job then uses its own unprivileged
uid, and network and instructor folders are hidden from student code.
"""


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "grade", help="grade every submission in a folder, in isolation and in parallel",
        description="Grade every submission under SUBMISSIONS (per student a folder, .zip or .tar.gz "
                    "named by the student id, chapter files under exercises/ or at the top) with the "
                    "full test suite, public and hidden, each in a sandbox. Writes a gradebook to OUT.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("submissions", metavar="SUBMISSIONS", help="folder of submissions")
    p.add_argument("-o", "--out", default="gradebook", metavar="OUT",
                   help="output folder (default: gradebook)")
    add_grade_options(p)
    p.set_defaults(func=cmd_grade)

    p = sub.add_parser(
        "merge", help="join the output folders of shards into one gradebook",
        description="Copy every student of the given output folders into OUT (the newest result "
                    "wins if a student appears twice), then rebuild OUT/grades.csv and report.html.")
    p.add_argument("inputs", nargs="+", metavar="DIR", help="output folders of `grader grade`")
    p.add_argument("-o", "--out", required=True, metavar="OUT", help="merged output folder")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("report", help="rebuild grades.csv and report.html of an output folder",
                       description="Rebuild OUT/grades.csv and OUT/report.html from OUT/*/results.json.")
    p.add_argument("out", metavar="OUT")
    p.set_defaults(func=cmd_report)


def add_grade_options(p: argparse.ArgumentParser) -> None:
    """The options of `grader grade`, shared with the commands that grade through it
    (`grader grade-repo`)."""
    p.add_argument("--chapters", default=None, metavar="LIST",
                   help="chapters to grade, e.g. 03,05, or 'all' (default: those with tests that "
                        "appear in at least one submission)")
    p.add_argument("-j", "--jobs", type=int, default=2, metavar="N",
                   help="submissions graded at the same time (default 2)")
    p.add_argument("--no-pin", dest="pin", action="store_false",
                   help="let the kernel move each submission's processes between the cores (default: "
                        "each job's processes run on one core of their own, when there are at least "
                        "--jobs cores; faster, as a submission's two processes take turns; turn it off on a "
                        "machine whose cores other work keeps busy)")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="CPU seconds per test (default 60, scaled up on a machine slower than the "
                        "reference; see 'calibration' in the output)")
    p.add_argument("--cpu", type=float, default=None, metavar="S",
                   help="CPU seconds per submission, all its chapters (default 300, scaled likewise)")
    p.add_argument("--wall", type=float, default=None, metavar="S",
                   help="wall-clock backstop per submission (default 4 x --cpu); a submission that "
                        "hits a wall-clock backstop is graded again alone before it counts")
    p.add_argument("--memory", type=int, default=2048, metavar="MB",
                   help="memory per process beyond the preloaded libraries (default 2048): address "
                        "space on a CPU-only machine; where CUDA is in use, resident memory, checked "
                        "every 0.2 s (CUDA reserves address space by the gigabyte)")
    p.add_argument("--nproc", type=int, default=128, metavar="N",
                   help="processes and threads per submission (default 128)")
    p.add_argument("--fsize", type=int, default=64, metavar="MB",
                   help="largest file a submission may write (default 64)")
    p.add_argument("--disk", type=int, default=256, metavar="MB",
                   help="size of each private tmpfs a submission writes to: HOME, /tmp, /var/tmp, "
                        "/dev/shm (default 256; with the full sandbox)")
    p.add_argument("--unsafe-limited", action="store_true",
                   help="grade without the full sandbox (not root, or no way to drop privileges): "
                        "limits still apply, but student code runs as you and is not kept from your "
                        "files, the network or other students' results")
    p.add_argument("--force", action="store_true", help="regrade students already graded")
    p.add_argument("--shard", default=None, metavar="K/N",
                   help="grade only the K-th of N slices of the cohort (1-based; a student's "
                        "slice depends only on the id)")
    p.add_argument("--tests", default=None, metavar="DIR",
                   help="tests folder, named tests and holding chNN/ folders (default: the repository's)")
    p.add_argument("--datasets", default=None, metavar="DIR",
                   help="data folder, read-only to students (default: the repository's datasets/)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary table")
    p.add_argument("--require-gpu", action="store_true",
                   help="before grading, start CUDA in a sandboxed grading process under the same "
                        "limits, and stop with one line if that fails (a GPU runner whose GPU set-up "
                        "is broken would otherwise grade on the CPU, without the gpu tests)")


# --------------------------------------------------------------------------- helpers

def _fail(message: str) -> int:
    print(f"grader: {message}", file=sys.stderr)
    return 2


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected K/N, e.g. 1/4") from None
    if not (n >= 1 and 1 <= k <= n):
        raise ValueError(f"--shard {text!r}: need 1 <= K <= N")
    return k, n


def in_shard(student: str, shard: tuple[int, int] | None) -> bool:
    if shard is None:
        return True
    k, n = shard
    digest = int(hashlib.sha256(student.encode("utf-8")).hexdigest()[:16], 16)
    return digest % n == k - 1


def choose_chapters(option: str | None, tested: list[str], subs) -> tuple[list[str], list[str]]:
    """(chapters to grade, notes for the instructor)."""
    notes = []
    present = sorted({c for s in subs for c in s.chapters})
    untested = [c for c in present if c not in tested]
    if untested:
        notes.append("chapter files without tests are not graded: "
                     + ", ".join(f"ch{c}" for c in untested))
    if option is None:
        return [c for c in present if c in tested], notes
    if option.strip().lower() == "all":
        return list(tested), notes
    chosen = []
    for part in option.replace(" ", "").split(","):
        if not part:
            continue
        try:
            c = normalise_chapter(part)
        except KeyError:
            raise ValueError(f"--chapters: there is no chapter {part!r}") from None
        if c not in tested:
            raise ValueError(f"--chapters: chapter {c} has no tests yet "
                             f"(chapters with tests: {', '.join(tested) or 'none'})")
        if c not in chosen:
            chosen.append(c)
    return sorted(chosen), notes


def reference_cache(work_root: Path, isolation: sandbox.Isolation) -> Path | None:
    """The folder where this run's judges share their reference runs
    (`grader.testing.reference`): only where student code runs as another uid, which mode
    0700 keeps out (with a shared uid it could read or forge the expectations). None: no
    sharing, every judge computes its own."""
    if not (isolation.root and isolation.drop_privileges):
        return None
    folder = work_root / "references"
    folder.mkdir(mode=0o700)
    os.chmod(folder, 0o700)
    return folder


def hidden_paths(root: Path, tests_root: Path, submissions: Path, out: Path,
                 keep: list[Path]) -> list[Path]:
    """Folders student code must not see: solutions, the instructor's tests, the demo
    submissions, git history, other students' submissions and the gradebook."""
    candidates = [root / "solutions", root / "tests", tests_root, root / "examples", root / ".git",
                  root / "benchmarks", submissions, out]
    if (submissions.parent / "nbgrader_config.py").is_file():  # nbgrader's submitted/ sits in its
        candidates.append(submissions.parent)                   # course, whose source/ has solutions
    chosen = []
    for p in candidates:
        p = p.resolve()
        if not p.is_dir() or p in chosen or p == Path("/"):
            continue
        if any(k == p or k.is_relative_to(p) for k in keep):
            continue  # hiding it would hide what the tests need
        chosen.append(p)
    return chosen


def _progress(total: int, quiet: bool):
    if quiet or total == 0:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, unit="sub", desc="grading", file=sys.stderr, dynamic_ncols=True,
                disable=None)


# --------------------------------------------------------------------------- grade

def cmd_grade(args: argparse.Namespace) -> int:
    started = time.monotonic()
    submissions = Path(args.submissions).resolve()
    if not submissions.is_dir():
        return _fail(f"{args.submissions}: no such folder (expected one folder, .zip or .tar.gz per student)")
    if args.jobs < 1:
        return _fail("--jobs must be at least 1")
    try:
        shard = parse_shard(args.shard)
    except ValueError as exc:
        return _fail(str(exc))
    tests_root = tests_dir(args.tests)
    if not tests_root.is_dir():
        return _fail(f"--tests {args.tests}: no such folder")
    if tests_root.name != "tests":
        # graded test ids are tests/chNN/...: the manifests, the sandbox's copy and the
        # judge all name them from the folder
        return _fail(f"--tests {args.tests}: the folder must be named 'tests' (it holds chNN/ "
                     "folders); rename it, or put it in a folder of its own as tests/")
    datasets = datasets_dir(args.datasets)
    out = Path(args.out).resolve()
    if out == submissions or submissions.is_relative_to(out) or out.is_relative_to(submissions):
        return _fail("OUT must not be the submissions folder, inside it, or contain it")

    # Before a single submission or hidden test is read: the clean parent of every process
    # that will run student code.
    from grader.zygote import Zygote
    zygote = Zygote(tests_root, calibrate=args.timeout is None or args.cpu is None)
    try:
        return _grade(args, zygote, started, submissions, shard, tests_root, datasets, out)
    finally:
        zygote.close()


def _grade(args, zygote, started: float, submissions: Path, shard, tests_root: Path, datasets: Path,
           out: Path) -> int:
    from grader import accounting, feedback, manifest, sandbox, submissions as found
    from grader.calibration import Calibration
    from grader.redact import Redactor

    # find
    subs, skipped = found.discover(submissions)
    if not subs:
        return _fail(f"no submissions in {submissions}: expected one folder, .zip or .tar.gz per "
                     "student, named by the student id")
    for sub in subs:
        found.read(sub)

    # choose
    tested = chapters_with_tests(tests_root)
    try:
        chapters, notes = choose_chapters(args.chapters, tested, subs)
    except ValueError as exc:
        return _fail(str(exc))
    if not chapters:
        return _fail(f"no chapter to grade: no submission holds a chapter file with tests "
                     f"(chapters with tests: {', '.join(tested) or 'none'}); use --chapters")
    mine = [s for s in subs if in_shard(s.student, shard)]

    limits = sandbox.Limits(memory_mb=args.memory, nproc=args.nproc, fsize_mb=args.fsize, disk_mb=args.disk)
    isolation = sandbox.probe_isolation()
    if not isolation.drop_privileges and not args.unsafe_limited:
        return _fail(UNSAFE)
    uids = sandbox.UidPool()
    root_of_work = sandbox.WorkRoot()
    work_root = root_of_work.path
    previous_term = signal.signal(signal.SIGTERM, _interrupt)  # a cancelled CI job cleans up too
    try:
        from grader.process import slot_cpus
        from grader.scheduler import Scheduler, Settings

        hashes = {c: manifest.tests_hash(tests_root / f"ch{c}") for c in chapters}
        todo, current = [], 0
        for sub in mine:
            want = manifest.fingerprint(sub.file_hashes(), hashes)
            if not args.force and not sub.error and manifest.is_current(out, sub.student, want):
                current += 1
            else:
                todo.append(sub)
        keep = [k.resolve() for k in (work_root, datasets, ROOT / "grader", Path(sys.prefix),
                                      Path(sys.base_prefix), Path(os.__file__).parent)]
        calibration = gpu_report = None
        require_gpu = getattr(args, "require_gpu", False)
        if todo or require_gpu:
            uids.acquire(2 * args.jobs)  # two per slot: `grader.scheduler.Scheduler`
            from grader.htmlreport import preload
            warm = zygote.warm_up(_needs_vision(chapters, tests_root), meanwhile=preload)
            if warm.get("calibration"):
                calibration = Calibration(**warm["calibration"])
                limits = limits.scaled(calibration.factor)
        limits = replace(limits, **{k: v for k, v in (("test_cpu", args.timeout), ("cpu", args.cpu),
                                                      ("wall", args.wall)) if v is not None})
        if require_gpu:  # before a single test runs, in a child made like the grading ones
            gpu_report = _probe_gpu(zygote, replace(limits, gpu=True), isolation, work_root, uids.uids[0],
                                    hidden_paths(ROOT, tests_root, submissions, out, keep), datasets,
                                    tests_root)
            if not gpu_report.ok:
                return _fail(f"--require-gpu: {gpu_report.error}")
        out.mkdir(parents=True, exist_ok=True)
        feedback.clean_leftovers(out)
        hide = hidden_paths(ROOT, tests_root, submissions, out, keep)
        if todo:
            manifests, errors = manifest.collect_manifests(
                chapters, tests_root, hashes, lambda a, fd: zygote.fork("collect", {"args": a}, [fd]))
        else:
            manifests, errors = {}, {}
        if any(m.device == "cuda" for m in manifests.values()):
            limits = replace(limits, gpu=True)   # CUDA needs address space: see grader.memwatch
        for c, err in errors.items():
            if args.chapters is not None:
                return _fail(f"chapter {c}'s tests cannot be collected: {err}")
            notes.append(f"ch{c} skipped: its tests cannot be collected ({err})")
        chapters = [c for c in chapters if c in manifests]
        if todo and not chapters:
            return _fail("no chapter's tests could be collected")

        settings = Settings(limits=limits, isolation=isolation, work_root=work_root,
                            datasets=datasets, tests_root=tests_root, hide=hide,
                            chapters=chapters, manifests=manifests, zygote=zygote,
                            reference_cache=reference_cache(work_root, isolation),
                            cpus=slot_cpus(args.jobs) if args.pin else ())
        if not args.quiet:
            shard_text = f", shard {shard[0]}/{shard[1]}" if shard else ""
            print(f"grading {len(todo)} of {len(subs)} submissions{shard_text} "
                  f"({current} unchanged since last graded) for "
                  f"{', '.join('ch' + c for c in chapters)} with {args.jobs} job(s)"
                  f"{_pinned_text(settings.cpus)}\n"
                  f"isolation: {isolation.summary()}\n"
                  f"limits: {limits.test_cpu:g} s CPU per test, {limits.cpu:g} s CPU per submission, "
                  f"wall-clock backstops {limits.test_wall:g} s per test and {limits.wall_backstop:g} s "
                  f"per submission, {_memory_text(limits)}"
                  + (f"\n{calibration.describe()}" if calibration else "")
                  + (f"\ngpu: {gpu_report.describe()}" if gpu_report else ""),
                  file=sys.stderr)
            for line in skipped + notes:
                print(f"note: {line}", file=sys.stderr)
        limit_info = {**limits.describe(), "calibration": calibration.__dict__ if calibration else None,
                      "gpu_check": gpu_report.describe() if gpu_report else None}
        redact = Redactor(line for m in manifests.values() for line in m.hidden_lines)
        replaced = accounting.Remover()   # a student's earlier feedback folder, deleted beside grading
        bar = _progress(len(todo), args.quiet)

        def on_done(result) -> None:
            feedback.write_student(out, result, redact, limit_info, discard=replaced.remove)
            if bar is not None:
                bar.set_postfix_str(f"{result.submission.student[:20]} {result.score:g}/{result.max_score:g}")
                bar.update(1)

        ready = time.monotonic()
        try:
            if todo:
                Scheduler(settings, uids.uids, args.jobs).grade(todo, on_done)
        finally:
            replaced.close()   # earlier feedback folders: gone before the gradebook is made
            if bar is not None:
                bar.close()
        graded = time.monotonic()
    except KeyboardInterrupt:
        if out.is_dir():
            _rebuild(out)
        print("\ninterrupted: the students graded so far are saved; run the same command "
              "again to finish the cohort", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        root_of_work.remove()
        uids.release()

    records = _rebuild(out)
    if not args.quiet:
        print(gradebook.summary_table(records))
        end = time.monotonic()
        print(f"\n{len(todo)} graded, {current} unchanged, in {end - started:.1f} s "
              f"({ready - started:.2f} s to start, {graded - ready:.2f} s grading, "
              f"{end - graded:.2f} s gradebook and report); "
              f"gradebook in {out}/grades.csv, report in {out}/report.html")
        # `read_phases` reads this line back (make bench)
    waiting = [r["extra_data"]["student"] for r in records if gradebook.needs_regrade(r)]
    if waiting:
        print(f"grader: {len(waiting)} submission(s) could not be graded because of a failure of the "
              f"grader's own ({', '.join(waiting[:5])}{', ...' if len(waiting) > 5 else ''}); no score "
              "was written for them; run the same command again to grade them", file=sys.stderr)
        return EXIT_REGRADE
    return 0


def _probe_gpu(zygote, limits, isolation, work_root: Path, uid: int, hide: list[Path], datasets: Path,
               tests_root: Path):
    """--require-gpu: start CUDA in a sandboxed child of the zygote (see grader.gpu)."""
    from grader import gpu, sandbox

    ws = sandbox.Workspace(work_root / "gpu-check", uid, uid).create({})
    try:
        return gpu.probe_sandboxed(zygote, ws, limits, isolation, hide, datasets, tests_root)
    finally:
        ws.destroy()


def _pinned_text(cpus: tuple[int, ...]) -> str:
    if not cpus:
        return ""
    return f", each on a core of its own (CPU {', '.join(map(str, cpus))})"


def _memory_text(limits) -> str:
    if limits.gpu:
        return f"{limits.memory_mb} MB of resident memory per process (CUDA in use: a watchdog, not RLIMIT_AS)"
    return f"{limits.memory_mb} MB of address space per process"


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


_PHASES = re.compile(r"in ([\d.]+) s \(([\d.]+) s to start, ([\d.]+) s grading, "
                     r"([\d.]+) s gradebook and report\)")


def read_phases(said: str) -> tuple[float, float, float, float] | None:
    """(total, to start, grading, gradebook and report) seconds from what `grader grade`
    printed, or None."""
    found = _PHASES.search(said)
    return tuple(float(x) for x in found.groups()) if found else None  # type: ignore[return-value]


def _needs_vision(chapters: list[str], tests_root: Path) -> bool:
    """Whether the zygote should import torchvision (seconds, as it pulls in torch's compiler
    stack): only when a graded chapter's tests or reference solution mention it."""
    files = [p for c in chapters for p in (tests_root / f"ch{c}").glob("*.py")]
    files += [SOLUTIONS / CHAPTERS[c].filename for c in chapters]
    return any(p.is_file() and "torchvision" in p.read_text(encoding="utf-8", errors="replace")
               for p in files)


def _rebuild(out: Path) -> list[dict]:
    from grader.htmlreport import write_report

    records = gradebook.load_all(out)
    gradebook.write_grades_csv(out, records)
    write_report(out, records)
    return records


# --------------------------------------------------------------------------- merge, report

def cmd_merge(args: argparse.Namespace) -> int:
    from grader.feedback import clean_leftovers, replace_dir

    out = Path(args.out).resolve()
    inputs = [Path(p).resolve() for p in args.inputs]
    for p in inputs:
        if not p.is_dir():
            return _fail(f"{p}: no such output folder")
    out.mkdir(parents=True, exist_ok=True)
    clean_leftovers(out)
    best: dict[str, tuple[int, Path]] = {}
    duplicates = 0
    for folder in inputs:
        for path in sorted(folder.glob("*/results.json")):
            if path.parent.name.startswith("."):
                continue
            try:
                stamp = int(json.loads(path.read_text(encoding="utf-8"))["extra_data"].get("graded_at_ns", 0))
            except (OSError, ValueError, KeyError, TypeError):
                print(f"note: {path} is not a results.json of grader grade; skipped", file=sys.stderr)
                continue
            student = path.parent.name
            if student in best:
                duplicates += 1
                if stamp <= best[student][0]:
                    continue
            best[student] = (stamp, path.parent)
    copied = 0
    for student, (_, source) in sorted(best.items()):
        if source.parent == out:
            continue
        tmp = out / f".tmp-{student}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source, tmp)
        replace_dir(tmp, out / student)
        copied += 1
    records = _rebuild(out)
    print(f"merged {len(best)} students from {len(inputs)} folders ({copied} copied, "
          f"{duplicates} duplicates resolved by the newest result) into {out}")
    print(gradebook.summary_table(records))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    if not out.is_dir():
        return _fail(f"{args.out}: no such output folder")
    records = _rebuild(out)
    print(gradebook.summary_table(records))
    return 0
