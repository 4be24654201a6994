"""`grader`: check one chapter, generate stubs, grade a cohort."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grader.syllabus import CHAPTERS, normalise_chapter


def chapter_or_exit(text: str) -> str:
    try:
        return normalise_chapter(text)
    except KeyError:
        known = ", ".join(CHAPTERS)
        sys.exit(f"grader: there is no chapter {text!r}; chapters are {known}")


# --------------------------------------------------------------------------- check

def cmd_check(args: argparse.Namespace) -> int:
    from grader.plugin import ROOT
    from grader.report import format_check
    from grader.runner import chapter_test_args, run_pytest, warm_up

    chapter = chapter_or_exit(args.chapter)
    tests_dir = Path(args.tests).resolve() if args.tests else ROOT / "tests"
    if not (tests_dir / f"ch{chapter}").is_dir():
        ready = sorted(p.name[2:] for p in tests_dir.glob("ch[0-9][0-9]") if p.is_dir())
        sys.exit(f"grader: chapter {chapter} has no tests yet in {tests_dir}; "
                 f"chapters with tests: {', '.join(ready) or 'none'}")
    impl = args.impl
    if impl not in ("exercises", "solutions"):
        impl = str(Path(impl).resolve())
        if not Path(impl).is_dir():
            sys.exit(f"grader: --impl {args.impl}: no such folder")
    warm_up(vision=False)
    extra = ["--datasets", args.datasets] if args.datasets else []
    outcome = run_pytest(chapter_test_args(chapter, impl, tests_dir=tests_dir, tasks=args.task,
                                           public_only=args.public, extra=extra),
                         timeout=args.timeout)
    print(format_check(CHAPTERS[chapter], outcome, verbose=args.verbose))
    results = outcome.results
    ran = [t for t in results.tests if t.outcome != "skipped"]
    ok = (not outcome.error and not results.collection_errors and ran
          and all(t.outcome == "passed" for t in ran))
    return 0 if ok else 1


# --------------------------------------------------------------------------- stubs

def cmd_stubs(args: argparse.Namespace) -> int:
    from grader import stubs
    from grader.plugin import ROOT

    solutions, exercises = ROOT / "solutions", ROOT / "exercises"
    try:
        if args.check:
            bad = stubs.stale(solutions, exercises)
            if bad:
                print("exercises/ is stale (run `make exercises`): " + ", ".join(bad))
                return 1
            print("exercises/ is up to date")
            return 0
        chapters = [chapter_or_exit(c) for c in args.chapters]
        changed = stubs.write(solutions, exercises, chapters or None)
    except stubs.StubError as exc:
        print(f"grader: {exc}", file=sys.stderr)
        return 2
    for path in changed:
        print(f"wrote {path.relative_to(ROOT)}")
    if not changed:
        print("exercises/ already up to date")
    return 0


# --------------------------------------------------------------------------- list

def cmd_list(args: argparse.Namespace) -> int:
    for number, chapter in CHAPTERS.items():
        print(f"{number}  {chapter.module:34s} {chapter.title}")
        if args.tasks:
            print("      tasks: " + ", ".join(chapter.task_ids()))
    return 0


# --------------------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grader", description="PyTorch Practice: check a chapter, generate stubs, grade a cohort.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check", help="run one chapter's tests and print points per task",
                       description="Run one chapter's tests against your code and print, per task, "
                                   "the points earned and what is wrong. Exit 0 only when all pass.")
    p.add_argument("chapter", help="chapter number, e.g. 05")
    p.add_argument("--impl", default="exercises",
                   help="exercises (default), solutions, or a folder holding chNN_*.py files")
    p.add_argument("--task", action="append", default=[], help="only this task, e.g. ch05.forward")
    p.add_argument("--public", action="store_true", help="run only the public tests")
    p.add_argument("--tests", default=None, help="tests folder (default: the repository's tests/)")
    p.add_argument("--datasets", default=None, help="data folder (default: the repository's datasets/)")
    p.add_argument("--timeout", type=float, default=600, help="wall-clock limit in seconds (default 600)")
    p.add_argument("-v", "--verbose", action="store_true", help="show tracebacks of failures")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("stubs", help="generate exercises/ from solutions/ (make exercises)",
                       description="Write exercises/ from the marked regions of solutions/.")
    p.add_argument("chapters", nargs="*", help="only these chapters (default: all)")
    p.add_argument("--check", action="store_true", help="only report whether exercises/ is stale")
    p.set_defaults(func=cmd_stubs)

    p = sub.add_parser("list", help="list the chapters (and with --tasks their graded tasks)")
    p.add_argument("--tasks", action="store_true")
    p.set_defaults(func=cmd_list)

    try:
        from grader import cohort
    except ImportError:
        cohort = None
    if cohort is not None:
        cohort.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
