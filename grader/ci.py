"""Grading in CI: one student's repository (`grader grade-repo`), and the grading bundle
(`grader bundle`) that a CI job or Gradescope grades with.

`grader grade-repo PATH --tests DIR` is what the student grading workflow (grader/student/
grade.yml, shipped by `grader release`) runs on every push: it takes the chapter files of the
student's checkout, and only those, and grades them with `grader grade`'s pipeline (the
sandbox, the limits, the hidden tests from DIR, which come from the instructor's private
repository and never from the student's). Beside OUT/<student>/{results.json,feedback.md} it
writes a markdown summary (a per-chapter points table and the device) for the job's summary
page, and with `--classroom` prints the result GitHub Classroom's autograding reporter reads.

The reporter (classroom-resources/autograding-grading-reporter) takes, per runner step, an
environment variable `<STEP ID>_RESULTS` holding base64-encoded JSON:

    {"version": 1, "status": "pass" | "fail" | "error", "max_score": N,
     "tests": [{"name", "status", "score", "message", "test_code", "filename", "line_no",
                "execution_time"}, ...]}

It adds up `tests[].score` against `max_score` and writes "Points X/Y" into the check run of
the job `run-autograding-tests` of the workflow "Autograding Tests", where Classroom reads it.

`grader bundle DEST` writes what a grading machine needs and nothing more: the grader, every
chapter's tests (hidden included), the data sets and pyproject.toml; never solutions/. It is
the content of the private repository the student workflow checks out, and of the
Gradescope autograder zip (`grader gradescope`).
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from grader.paths import ROOT, chapters_with_tests

CLASSROOM_VERSION = 1
CLASSROOM_MESSAGE = 300        # characters of a failure message in the Classroom result
CLASSROOM_LIMIT = 96 << 10     # bytes of the encoded result: it travels in one environment variable
BUNDLE_MARK = ".grading-bundle.json"


# --------------------------------------------------------------------------- grade-repo

def add_commands(sub: argparse._SubParsersAction) -> None:
    from grader import cohort

    p = sub.add_parser(
        "grade-repo", help="grade one student's repository with the full suite (the CI workflow's step)",
        description="Grade the chapter files of one student's repository (a checkout at PATH) with "
                    "the full test suite, public and hidden, in the sandbox of `grader grade`. "
                    "Only chNN_*.py files are taken from PATH; the tests come from --tests.",
        epilog="example (the student grading workflow):\n"
               "  grader grade-repo student --tests grading/tests -o graded \\\n"
               "      --summary \"$GITHUB_STEP_SUMMARY\" --classroom",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("repo", metavar="PATH", help="the student's repository")
    p.add_argument("-o", "--out", default="graded", metavar="OUT",
                   help="output folder: OUT/<student>/results.json, feedback.md (default: graded)")
    p.add_argument("--student", default=None, metavar="ID",
                   help="the student's id (default: the repository name in $GITHUB_REPOSITORY, "
                        "else PATH's folder name)")
    p.add_argument("--summary", default=None, metavar="FILE",
                   help="append a markdown summary to FILE: points per chapter, the device "
                        "(e.g. \"$GITHUB_STEP_SUMMARY\")")
    p.add_argument("--classroom", action="store_true",
                   help="print on stdout only GitHub Classroom's result (base64 JSON, the input of "
                        "the autograding reporter); everything else goes to stderr")
    cohort.add_grade_options(p)
    p.set_defaults(func=cmd_grade_repo)
    add_bundle_command(sub)


def default_student(repo: Path) -> str:
    """The repository's name on GitHub (a Classroom repository is named after the student),
    else the folder's."""
    slug = os.environ.get("GITHUB_REPOSITORY", "")
    return slug.rsplit("/", 1)[-1] if slug else repo.name


@contextlib.contextmanager
def staged(repo: Path, student: str) -> Iterator[Path]:
    """A private submissions folder holding one student: the chapter files of `repo`,
    read as `grader grade` reads a submission (nothing else of the checkout)."""
    from grader import submissions

    sub = submissions.read(submissions.Submission(student=student, source=repo))
    with tempfile.TemporaryDirectory(prefix="grade-repo-") as tmp:
        folder = Path(tmp) / "submissions" / student / "exercises"
        folder.mkdir(parents=True)
        for name, data in sub.files.items():
            (folder / name).write_bytes(data)
        yield folder.parent.parent


def cmd_grade_repo(args: argparse.Namespace) -> int:
    from grader import cohort
    from grader.submissions import safe_id

    repo = Path(args.repo).resolve()
    if not repo.is_dir():
        print(f"grader: {args.repo}: no such folder (the student's repository)", file=sys.stderr)
        return 2
    student = safe_id(args.student or default_student(repo))
    out = Path(args.out).resolve()
    with staged(repo, student) as subs:
        grade_args = argparse.Namespace(**{**vars(args), "submissions": str(subs), "out": str(out),
                                           "shard": None})
        with contextlib.redirect_stdout(sys.stderr) if args.classroom else contextlib.nullcontext():
            code = cohort.cmd_grade(grade_args)
    record = _load(out / student / "results.json")
    if code not in (0, cohort.EXIT_REGRADE) or record is None:   # nothing graded: report nothing
        return code or 2
    if args.summary:
        with open(args.summary, "a", encoding="utf-8") as f:
            f.write(summary_markdown(record) + "\n")
    if args.classroom:
        result = classroom_result(record)
        if result:  # nothing while awaiting a regrade: the reporter step then records no points
            print(result)
    return code


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def summary_markdown(record: dict) -> str:
    """The job summary: points per chapter (a table), the total, the device, the isolation."""
    extra = record["extra_data"]
    lines = [f"## Grade: {record['score']:g} / {extra.get('max_score', 0):g} points", "",
             "| chapter | topic | points | status |", "| --- | --- | ---: | --- |"]
    for c, ch in sorted(extra.get("chapters", {}).items()):
        status = ch.get("status", "")
        why = f": {_cell(ch['reason'])}" if ch.get("reason") and status != "graded" else ""
        lines.append(f"| ch{c} | {_cell(ch.get('title', ''))} | {ch['score']:g} / {ch['max_score']:g} "
                     f"| {status}{why} |")
    lines.append(f"| **total** | | **{record['score']:g} / {extra.get('max_score', 0):g}** | |")
    limits = extra.get("limits") or {}
    lines += ["", f"Device: **{extra.get('device', 'none')}**"
              + (f" ({limits['gpu_check']})" if limits.get("gpu_check") else "")
              + f"; isolation: {extra.get('isolation', '')}.",
              "Per task and test, with what to fix: feedback.md in this run's artifact."]
    if extra.get("regrade"):
        lines.append(f"**Not graded because of a failure of the grader's own** (chapters "
                     f"{', '.join(extra['regrade'])}): run the workflow again.")
    return "\n".join(lines)


def _cell(text: str) -> str:
    """Text for one markdown table cell: one line, no column breaks."""
    return " ".join(str(text).split()).replace("|", "\\|")[:200]


def classroom_result(record: dict) -> str:
    """GitHub Classroom's result for the autograding reporter: base64 of its JSON; "" while the
    record awaits a regrade (the grader failed, not the student), so no score is reported."""
    if record.get("extra_data", {}).get("regrade"):
        return ""
    data = classroom_json(record)
    encoded = base64.b64encode(json.dumps(data).encode()).decode()
    if len(encoded) > CLASSROOM_LIMIT:  # keep the scores, drop the messages
        for test in data["tests"]:
            test["message"] = ""
        encoded = base64.b64encode(json.dumps(data).encode()).decode()
    return encoded


def classroom_json(record: dict) -> dict:
    """The reporter's input: one entry per test that counts here, with its points."""
    tests = []
    for t in record.get("tests", []):
        if "status" not in t:   # a GPU test on a machine without one: counts for no one
            continue
        passed = t["status"] == "passed"
        tests.append({"name": t["name"], "status": "pass" if passed else "fail",
                      "score": t["score"], "message": "" if passed else t.get("output", "")[:CLASSROOM_MESSAGE],
                      "test_code": "", "filename": "", "line_no": 0, "execution_time": ""})
    extra = record.get("extra_data", {})
    total = extra.get("max_score", sum(t.get("max_score", 0) for t in record.get("tests", [])))
    status = "error" if extra.get("regrade") else "pass" if record.get("score") == total else "fail"
    return {"version": CLASSROOM_VERSION, "status": status, "max_score": total, "tests": tests}


# --------------------------------------------------------------------------- bundle

def grading_files(source: Path, chapters: list[str]) -> dict[str, bytes]:
    """What grading needs, keyed by path: grader/ (but the authoring modules), tests/ of
    `chapters` (hidden included), datasets/ as bundled, pyproject.toml. Never solutions/, the
    stubs or the project's own tests."""
    files: dict[str, bytes] = {}

    def add_tree(folder: Path, prefix: str, skip=lambda rel: False) -> None:
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder)
            if path.is_file() and not any(p == "__pycache__" or p.startswith(".") for p in rel.parts) \
                    and path.suffix != ".pyc" and not skip(rel):
                files[f"{prefix}/{rel.as_posix()}"] = path.read_bytes()

    authoring = authoring_modules(source / "grader")
    add_tree(source / "grader", "grader", skip=lambda rel: rel.suffix == ".py" and len(rel.parts) == 1
             and rel.stem in authoring)
    files["tests/__init__.py"] = (source / "tests" / "__init__.py").read_bytes()
    for c in chapters:
        add_tree(source / "tests" / f"ch{c}", f"tests/ch{c}")
    add_tree(source / "datasets", "datasets", skip=lambda rel: rel.parts[0] == "full")
    files["pyproject.toml"] = (source / "pyproject.toml").read_bytes()
    return files


AUTHORING = ("stubs", "release")   # they write stubs and releases from solutions/: not grading


def authoring_modules(grader_dir: Path) -> set[str]:
    """Grader modules that exist to write stubs and releases from the solutions (and every
    module that imports one of them when it is imported): grading never needs them, and their
    docstrings quote solution lines."""
    from grader.release import _grader_imports

    imports = {p.stem: set(_grader_imports(p.read_text(encoding="utf-8"), grader_dir))
               for p in grader_dir.glob("*.py")}
    found = set(AUTHORING)
    while True:
        more = {name for name, used in imports.items() if used & found} - found
        if not more:
            return found
        found |= more


def choose(option: str | None, source: Path = ROOT) -> list[str]:
    """--chapters for a bundle: every chapter with tests, or those listed."""
    ready = chapters_with_tests(source / "tests")
    if not option or option.strip().lower() == "all":
        return ready
    from grader.syllabus import normalise_chapter
    chosen = []
    for part in filter(None, option.replace(" ", "").split(",")):
        try:
            c = normalise_chapter(part)
        except KeyError:
            raise ValueError(f"--chapters: there is no chapter {part!r}") from None
        if c not in ready:
            raise ValueError(f"--chapters: chapter {c} has no tests (ready: {', '.join(ready)})")
        chosen.append(c)
    return sorted(set(chosen))


BUNDLE_README = """# Grading bundle

Written by `grader bundle` from the course repository: the grader, every chapter's tests
(hidden ones included), the data sets. No solutions. Keep this repository private: the student
grading workflow checks it out with a read-only token. Chapters: {chapters}.

    python grader/student/bootstrap.py --root . [--torch cpu]
    .venv/bin/grader grade-repo PATH --tests tests
"""


def write_bundle(dest: Path, chapters: list[str], source: Path = ROOT) -> list[str]:
    """Write the grading bundle into DEST (new, empty or an earlier bundle); returns the
    files written. Files of an earlier bundle that this one no longer has are removed."""
    dest = dest.expanduser().resolve()
    if dest == source or source in dest.parents:
        raise ValueError(f"{dest} is inside the repository: write the bundle outside it")
    mark = dest / BUNDLE_MARK
    if dest.is_dir() and not mark.is_file() and any(p.name != ".git" for p in dest.iterdir()):
        raise ValueError(f"{dest} is not empty and holds no earlier bundle: choose a new or empty folder")
    files = grading_files(source, chapters)
    files["README.md"] = BUNDLE_README.format(chapters=", ".join(chapters)).encode()
    old = json.loads(mark.read_text(encoding="utf-8"))["files"] if mark.is_file() else []
    for rel in old:
        if rel not in files and (dest / rel).is_file():
            (dest / rel).unlink()
    for rel, data in sorted(files.items()):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)
    mark.write_text(json.dumps({"chapters": chapters, "files": sorted(files)}, indent=1) + "\n",
                    encoding="utf-8")
    return sorted(files)


def cmd_bundle(args: argparse.Namespace) -> int:
    try:
        chapters = choose(args.chapters)
        written = write_bundle(Path(args.dest), chapters)
    except (ValueError, OSError) as exc:
        print(f"grader bundle: {exc}", file=sys.stderr)
        return 1
    print(f"wrote the grading bundle for chapters {', '.join(chapters)} into {Path(args.dest).resolve()}: "
          f"{len(written)} files, nothing of solutions/")
    if args.git:
        from grader.release import ReleaseError, git_commit
        try:
            print(f"git: commit {git_commit(Path(args.dest).resolve(), chapters)}")
        except ReleaseError as exc:
            print(f"grader bundle: {exc}", file=sys.stderr)
            return 1
    return 0


def add_bundle_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bundle", help="write what grading needs (grader, all tests, data; no solutions) into DEST",
        description="Write the grading bundle into DEST: grader/, every chapter's tests (public and "
                    "hidden), datasets/ and pyproject.toml, never solutions/. Push it to a private "
                    "repository for the student grading workflow to check out.")
    p.add_argument("dest", metavar="DEST", help="a folder outside this repository")
    p.add_argument("--chapters", default=None, metavar="LIST", help="chapters (default: all with tests)")
    p.add_argument("--git", action="store_true", help="make DEST a git repository and commit")
    p.set_defaults(func=cmd_bundle)
