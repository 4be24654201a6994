"""`grader`: check one chapter, generate stubs, grade a cohort."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from typing import NoReturn

from grader import check
from grader.syllabus import CHAPTERS, normalise_chapter


def chapter_or_exit(text: str) -> str:
    try:
        return normalise_chapter(text)
    except KeyError:
        known = ", ".join(CHAPTERS)
        sys.exit(f"grader: there is no chapter {text!r}; chapters are {known}")


# --------------------------------------------------------------------------- stubs

def cmd_stubs(args: argparse.Namespace) -> int:
    from grader import stubs
    from grader.paths import EXERCISES as exercises, ROOT, SOLUTIONS as solutions

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

# Modules that add their own subcommands (`add_commands(subparsers)`), when present.
COMMAND_MODULES = ("cohort", "release", "ci", "gradescope_zip", "nbgrader")


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
    p.add_argument("--require-gpu", action="store_true",
                   help="first start CUDA in a process made like the one that runs the tests, and "
                        "stop with one line if that fails, instead of skipping the GPU tests")
    p.add_argument("--no-fork", action="store_true",
                   help="run pytest in a fresh Python process, as on Windows and macOS, instead of "
                        "forking this one (also: environment PRACTICE_NO_FORK=1)")
    p.add_argument("--split", action="store_true",
                   help="(Linux) run your code in a process of its own, as grading does, with the "
                        "tests reaching it through a socket")
    p.set_defaults(func=check.cmd_check, exit_at_once=True)

    if importlib.util.find_spec("grader.stubs") is not None:  # not in a student release
        p = sub.add_parser("stubs", help="generate exercises/ from solutions/ (make exercises)",
                           description="Write exercises/ from the marked regions of solutions/.")
        p.add_argument("chapters", nargs="*", help="only these chapters (default: all)")
        p.add_argument("--check", action="store_true", help="only report whether exercises/ is stale")
        p.set_defaults(func=cmd_stubs)

    p = sub.add_parser("list", help="list the chapters (and with --tasks their graded tasks)")
    p.add_argument("--tasks", action="store_true")
    p.set_defaults(func=cmd_list)

    for name in COMMAND_MODULES:
        # A student release ships only what `check` needs: a module that is absent adds no
        # commands, but one that is present and fails to import is an error, not a
        # missing command.
        if importlib.util.find_spec(f"grader.{name}") is not None:
            importlib.import_module(f"grader.{name}").add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command `argv` (default: the command line) and return its exit status.

    From the command line, `check` then ends its process at once (`exit_at_once`): called
    with `argv`, as from a test, every command returns."""
    parser = build_parser()
    args = parser.parse_args(argv)
    code = args.func(args)
    if argv is None and getattr(args, "exit_at_once", False):
        exit_at_once(code)
    return code


def exit_at_once(code: int) -> NoReturn:
    """Flush the output and end the process, skipping the interpreter's teardown.

    `grader check` has loaded torch only to fork the tests from it (or not at all), and has
    nothing left to clean up once the table is printed; tearing down torch's heap object by
    object took 0.2-0.3 s of a 2.7 s `make check ch=05`."""
    from grader.process import flush_output
    flush_output()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
