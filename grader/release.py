"""`grader release DEST`: the students' repository, written from this one.

A release holds what a student needs to do the exercises and check them: the stubs
(exercises/), the public tests, the data, the part of `grader` that `grader check` imports,
and the files that make it a project (README, pyproject.toml, a Makefile, bootstrap.py for
setting up without make, .gitignore, the GitHub workflows: the public check, and grading with
the hidden tests from the course's private grading repository, for GitHub Classroom). Everything else stays here: the
solutions, the hidden tests, the mistake catalogue, the project's own suite, the examples.

Three safeguards:

* What leaves is listed, never filtered: files are picked by name, and a grader module ships
  only when the check command imports it.
* A leak scan, before anything is written and again at the end over what DEST holds: no line
  of a solution region, no hidden test's name and no hidden test's source line may appear in
  any released file. A line that the release publishes anyway (a TODO comment of a stub, a
  line of a public test, such as `@pytest.mark.points(2)`) is public by construction and
  not a secret.
* A manifest (`.release.json`) records the sha256 of every released file. Releasing again
  into DEST adds chapters and updates tests and tools, but an exercise file that differs
  from what the previous release wrote is a student's work and is kept.
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import json
import re
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from grader import stubs
from grader.paths import ROOT, chapters_with_tests
from grader.syllabus import CHAPTERS

MANIFEST = ".release.json"
MANIFEST_FORMAT = 1
# grader/student/: template file -> its place in the release
TEMPLATES = {
    "README.md": "README.md",
    "Makefile": "Makefile",
    "bootstrap.py": "bootstrap.py",
    "pyproject.toml": "pyproject.toml",
    "gitignore": ".gitignore",
    "check.yml": ".github/workflows/check.yml",
    "grade.yml": ".github/workflows/grade.yml",   # grading with the hidden tests, for Classroom
}
CHAPTERS_MARK = "<!-- chapters -->"
# Where the released package's imports start: the command line, and the pytest plugin that
# pyproject.toml loads.
GRADER_ROOTS = ("__init__", "__main__", "cli", "plugin", "notebook")
MIN_SECRET = 20          # shorter lines (`return x`, `optimizer.step()`) are not evidence
SKIPPED_NAMES = {"__pycache__", ".DS_Store"}


class ReleaseError(Exception):
    """The release cannot be made as asked; the message is one line for the instructor."""


# --------------------------------------------------------------------------- what ships

def grader_modules(grader_dir: Path, extra_roots: Iterable[str] = ()) -> list[str]:
    """The grader modules the student's copy needs: the roots and everything they import at
    module level, followed transitively. Imports inside functions serve commands that
    students do not have (`grader stubs`), and `if TYPE_CHECKING:` imports never run."""
    todo = list(GRADER_ROOTS) + list(extra_roots)
    found: set[str] = set()
    while todo:
        name = todo.pop()
        if name in found:
            continue
        path = grader_dir / f"{name}.py"
        if not path.is_file():
            raise ReleaseError(f"grader/{name}.py is imported by the check command but does not exist")
        found.add(name)
        todo += _grader_imports(path.read_text(encoding="utf-8"), grader_dir)
    return sorted(found)


def _grader_imports(source: str, grader_dir: Path, everywhere: bool = False) -> list[str]:
    """Names of grader modules that `source` imports when it is imported (`everywhere`: in
    functions too)."""
    tree = ast.parse(source)
    names = []
    for node in ast.walk(tree) if everywhere else _import_time_nodes(tree.body):
        if isinstance(node, ast.Import):
            names += [a.name.split(".")[1] for a in node.names if a.name.startswith("grader.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "grader":  # `from grader import check`: a module, or a name in __init__
                names += [a.name for a in node.names if (grader_dir / f"{a.name}.py").is_file()]
            elif node.module.startswith("grader."):
                names.append(node.module.split(".")[1])
    return names


def _import_time_nodes(body: list[ast.stmt]) -> Iterable[ast.stmt]:
    """Statements that run on import: the module's and its classes' bodies, into `if`, `try`
    and `with` blocks, but not into functions or `if TYPE_CHECKING:`."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from _import_time_nodes(node.orelse)
            continue
        yield node
        for name in ("body", "orelse", "finalbody"):
            yield from _import_time_nodes(getattr(node, name, None) or [])
        for handler in getattr(node, "handlers", None) or []:
            yield from _import_time_nodes(handler.body)


def imports_of_tests(files: Mapping[str, bytes], grader_dir: Path) -> list[str]:
    """Grader modules the released tests import, wherever in the file (none today; a public
    test may use helpers)."""
    roots = []
    for rel, data in files.items():
        if rel.startswith("tests/") and rel.endswith(".py"):
            roots += _grader_imports(data.decode("utf-8"), grader_dir, everywhere=True)
    return roots


def chapter_files(source: Path, chapter: str) -> dict[str, bytes]:
    """One chapter's stub and public tests (every file of tests/chNN but test_hidden*)."""
    files = {}
    module = CHAPTERS[chapter].filename
    files[f"exercises/{module}"] = (source / "exercises" / module).read_bytes()
    folder = source / "tests" / f"ch{chapter}"
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and not _skipped(rel) and not path.name.startswith("test_hidden"):
            files[f"tests/ch{chapter}/{rel.as_posix()}"] = path.read_bytes()
    return files


def _skipped(rel: Path) -> bool:
    return any(part in SKIPPED_NAMES or part.endswith(".pyc") for part in rel.parts)


def dataset_files(source: Path) -> dict[str, bytes]:
    """datasets/ as bundled: not the full downloads of `make data` (datasets/full/)."""
    folder = source / "datasets"
    files = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and not _skipped(rel) and rel.parts[0] != "full":
            files[f"datasets/{rel.as_posix()}"] = path.read_bytes()
    return files


def template_files(source: Path, chapters: list[str]) -> dict[str, bytes]:
    """The student project's own files, from grader/student/ (the README lists the chapters)."""
    files = {}
    for name, target in TEMPLATES.items():
        text = (source / "grader" / "student" / name).read_text(encoding="utf-8")
        if name == "README.md":
            text = text.replace(CHAPTERS_MARK, chapters_table(chapters))
        files[target] = text.encode("utf-8")
    return files


def chapters_table(chapters: list[str]) -> str:
    rows = ["| chapter | file | topic |", "| --- | --- | --- |"]
    rows += [f"| {c} | `exercises/{CHAPTERS[c].filename}` | {CHAPTERS[c].title} |" for c in chapters]
    return "\n".join(rows)


def planned_files(source: Path, chapters: list[str]) -> dict[str, bytes]:
    """Every file of the release (but the manifest), keyed by its path in DEST."""
    files: dict[str, bytes] = {"tests/__init__.py": (source / "tests" / "__init__.py").read_bytes()}
    for chapter in chapters:
        files.update(chapter_files(source, chapter))
    files.update(dataset_files(source))
    grader_dir = source / "grader"
    for name in grader_modules(grader_dir, imports_of_tests(files, grader_dir)):
        files[f"grader/{name}.py"] = (grader_dir / f"{name}.py").read_bytes()
    files.update(template_files(source, chapters))
    return files


# --------------------------------------------------------------------------- the leak scan

@dataclass
class Secrets:
    lines: dict[str, str] = field(default_factory=dict)   # stripped line -> where it comes from
    names: dict[str, str] = field(default_factory=dict)   # hidden test name -> its file


def solution_region_lines(text: str) -> list[tuple[int, str]]:
    """(line number, stripped line) of every line between the solution markers."""
    found, inside = [], False
    for number, line in enumerate(text.splitlines(), 1):
        marker = line.strip()
        if marker == stubs.BEGIN_SOLUTION:
            inside = True
        elif marker == stubs.END_SOLUTION:
            inside = False
        elif inside:
            found.append((number, marker))
    return found


HIDDEN_TEST_RE = re.compile(r"^\s*(?:async\s+)?def\s+(test\w*)\s*\(", re.MULTILINE)


# An import line says which libraries a hidden test uses, nothing about what it checks; the
# grader's own modules (published with `grader check`) share such lines.
IMPORT_LINE_RE = re.compile(r"^(from\s+[\w.]+\s+)?import\s+[\w., ()]+$")


def collect_secrets(source: Path) -> Secrets:
    """What must never leave: solution regions and hidden tests (lines of MIN_SECRET
    characters or more, stripped, and test names), minus what the release publishes anyway."""
    secrets = Secrets()
    for path in sorted((source / "solutions").glob("ch*.py")):
        for number, line in solution_region_lines(path.read_text(encoding="utf-8")):
            if len(line) >= MIN_SECRET:
                secrets.lines.setdefault(line, f"solutions/{path.name}:{number}")
    for path in sorted((source / "tests").glob("ch[0-9][0-9]/test_hidden*.py")):
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(source).as_posix()
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if len(line) >= MIN_SECRET and not IMPORT_LINE_RE.match(line):
                secrets.lines.setdefault(line, f"{rel}:{number}")
        for name in HIDDEN_TEST_RE.findall(text):
            secrets.names.setdefault(name, rel)
    candidates = LeakScanner(Secrets(lines=dict(secrets.lines)))
    for text in public_texts(source):
        for line in text.splitlines():
            for found in candidates.lines_in(line):
                secrets.lines.pop(found, None)
    return secrets


def public_texts(source: Path) -> list[str]:
    """The stubs (as generated from every solution) and every public test file: published by
    design, whichever chapters this release holds. A candidate secret found in them, such as
    a TODO comment's line or `raise AssertionError(`, is public."""
    texts = list(stubs.generate(source / "solutions", source / "exercises").values())
    for path in sorted((source / "tests").glob("ch[0-9][0-9]/*.py")):
        if not path.name.startswith("test_hidden"):
            texts.append(path.read_text(encoding="utf-8"))
    return texts


class LeakScanner:
    """Finds secrets inside any line, not only as whole lines: a hidden test's line quoted in a
    docstring or a message is still a leak. Every secret is indexed by its first MIN_SECRET
    characters, so each position of a line costs one dictionary lookup."""

    def __init__(self, secrets: Secrets) -> None:
        self.secrets = secrets
        self.by_prefix: dict[str, list[str]] = defaultdict(list)
        for line in secrets.lines:
            self.by_prefix[line[:MIN_SECRET]].append(line)
        names = sorted(secrets.names, key=len, reverse=True)
        self.names_re = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b") if names else None

    def scan(self, rel: str, data: bytes) -> list[str]:
        """One line per leak: `path:line: what leaked (from where)`."""
        text = data.decode("utf-8", "replace")
        leaks = []
        for number, line in enumerate(text.splitlines(), 1):
            for found in self.lines_in(line):
                leaks.append(f"{rel}:{number}: a line of {self.secrets.lines[found]}: {found[:80]}")
            if self.names_re is not None:
                for match in self.names_re.finditer(line):
                    name = match.group(1)
                    leaks.append(f"{rel}:{number}: the hidden test name {name} "
                                 f"(from {self.secrets.names[name]})")
        return leaks

    def lines_in(self, line: str) -> set[str]:
        """The secret lines that `line` contains."""
        found = set()
        for start in range(len(line) - MIN_SECRET + 1):
            for secret in self.by_prefix.get(line[start:start + MIN_SECRET], ()):
                if line.startswith(secret, start):
                    found.add(secret)
        return found

    def scan_all(self, files: Mapping[str, bytes]) -> list[str]:
        return [leak for rel in sorted(files) for leak in self.scan(rel, files[rel])]


# --------------------------------------------------------------------------- writing DEST

def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Manifest:
    chapters: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)   # path in DEST -> sha256 as released

    @classmethod
    def read(cls, dest: Path) -> "Manifest":
        path = dest / MANIFEST
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(sorted(data["chapters"]), dict(data["files"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ReleaseError(f"{path} is not a release manifest ({exc}); remove it to release afresh")

    def write(self, dest: Path) -> None:
        data = {"format": MANIFEST_FORMAT, "chapters": self.chapters, "files": dict(sorted(self.files.items()))}
        (dest / MANIFEST).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


@dataclass
class Report:
    dest: Path
    chapters: list[str]
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)        # students' exercise files left alone
    removed: list[str] = field(default_factory=list)
    scanned: int = 0
    commit: str = ""


def apply(dest: Path, files: Mapping[str, bytes], previous: Manifest,
          chapters: list[str]) -> tuple[Report, Manifest]:
    """Write `files` into DEST, keeping every exercise file a student has changed."""
    report = Report(dest, chapters)
    manifest = Manifest(chapters)
    for rel, data in sorted(files.items()):
        path = dest / rel
        wanted = sha256(data)
        current = sha256(path.read_bytes()) if path.is_file() else None
        if students_work(rel, current, wanted, previous):
            report.kept.append(rel)
            manifest.files[rel] = previous.files.get(rel, wanted)
            continue
        if current == wanted:
            report.unchanged.append(rel)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            report.written.append(rel)
        manifest.files[rel] = wanted
    for rel, old in sorted(previous.files.items()):
        path = dest / rel
        if rel not in files and not rel.startswith("exercises/") and path.is_file() \
                and sha256(path.read_bytes()) == old:
            path.unlink()    # a tool file this release no longer needs
            report.removed.append(rel)
    return report, manifest


def students_work(rel: str, current: str | None, wanted: str, previous: Manifest) -> bool:
    """An exercise file that is neither what this release writes nor what the previous one
    wrote (nor, without a record, absent) was edited by a student."""
    return (rel.startswith("exercises/") and current is not None and current != wanted
            and current != previous.files.get(rel))


def check_dest(dest: Path, source: Path) -> None:
    """Refuse a DEST that would mix the release into this repository or into an unrelated folder."""
    if dest == source or source in dest.parents:
        raise ReleaseError(f"{dest} is inside the repository {source}: release into a folder outside it")
    if dest.exists() and not dest.is_dir():
        raise ReleaseError(f"{dest} is a file, not a folder")
    if dest.is_dir() and not (dest / MANIFEST).is_file():
        others = [p.name for p in dest.iterdir() if not p.name.startswith(".")]
        if others:
            raise ReleaseError(f"{dest} is not empty and holds no earlier release ({MANIFEST}): "
                               "choose a new or empty folder")


def release_chapters(requested: list[str] | None, previous: Manifest, source: Path) -> list[str]:
    """The chapters DEST will hold: what it has, plus those asked for (all by default)."""
    ready = chapters_with_tests(source / "tests")
    wanted = ready if requested is None else requested
    missing = [c for c in wanted if not (source / "tests" / f"ch{c}" / "test_public.py").is_file()]
    if missing:
        raise ReleaseError(f"chapter(s) {', '.join(missing)} have no public tests yet; "
                           f"chapters ready: {', '.join(ready) or 'none'}")
    return sorted(set(previous.chapters) | set(wanted))


def check_stubs_fresh(source: Path, chapters: list[str]) -> None:
    stale = [name for name in stubs.stale(source / "solutions", source / "exercises")
             if name[2:4] in chapters]
    if stale:
        raise ReleaseError(f"exercises/ is stale, run `make exercises` first: {', '.join(stale)}")


def git_commit(dest: Path, chapters: list[str]) -> str:
    """Make DEST a git repository (if it is not one yet) and commit the release."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=dest, capture_output=True, text=True)

    if not (dest / ".git").exists():
        run = git("init", "-q")
        if run.returncode:
            raise ReleaseError(f"git init failed in {dest}: {run.stderr.strip()}")
        git("symbolic-ref", "HEAD", "refs/heads/main")
    git("add", "-A")
    has_commit = git("rev-parse", "-q", "--verify", "HEAD").returncode == 0
    if has_commit and git("diff", "--cached", "--quiet").returncode == 0:
        return git("rev-parse", "--short", "HEAD").stdout.strip()   # nothing new to commit
    identity = [] if git("config", "user.email").stdout.strip() else \
        ["-c", "user.name=Course staff", "-c", "user.email=course-staff@example.invalid"]
    message = f"PyTorch Practice: chapters {', '.join(chapters)}"
    run = git(*identity, "-c", "commit.gpgsign=false", "commit", "-q", "-m", message)
    if run.returncode:
        raise ReleaseError(f"git commit failed in {dest}: {(run.stderr or run.stdout).strip()}")
    return git("rev-parse", "--short", "HEAD").stdout.strip()


def release(dest: Path, chapters: list[str] | None = None, *, git: bool = False,
            source: Path = ROOT) -> Report:
    """Write (or update) the student repository in `dest`. Raises ReleaseError, and writes
    nothing, when something is wrong before writing; raises it after writing when the final
    scan of DEST finds a leak."""
    dest = Path(dest).expanduser().resolve()
    source = Path(source).resolve()
    check_dest(dest, source)
    previous = Manifest.read(dest)
    chosen = release_chapters(chapters, previous, source)
    check_stubs_fresh(source, chosen)
    files = planned_files(source, chosen)
    scanner = LeakScanner(collect_secrets(source))
    leaks = scanner.scan_all(files)
    if leaks:
        raise ReleaseError(_leak_message(leaks, "nothing was written"))
    dest.mkdir(parents=True, exist_ok=True)
    report, manifest = apply(dest, files, previous, chosen)
    manifest.write(dest)
    released = {rel: (dest / rel).read_bytes() for rel in manifest.files if rel not in report.kept}
    released[MANIFEST] = (dest / MANIFEST).read_bytes()
    leaks = scanner.scan_all(released)   # the end: what DEST now holds, as written
    report.scanned = len(released)
    if leaks:
        raise ReleaseError(_leak_message(leaks, f"remove {dest} before releasing again"))
    if git:
        report.commit = git_commit(dest, chosen)
    return report


def _leak_message(leaks: list[str], after: str) -> str:
    shown = leaks[:20] + ([f"... and {len(leaks) - 20} more"] if len(leaks) > 20 else [])
    return f"the leak scan found {len(leaks)} leak(s); {after}:\n  " + "\n  ".join(shown)


# --------------------------------------------------------------------------- the command

EXAMPLES = """\
examples:
  grader release ../practice-student                  every chapter with tests
  grader release ../practice-student --chapters 01,02 the first two weeks
  grader release ../practice-student --chapters 03    later: adds chapter 03, updates tests
                                                      and tools, keeps students' edits
  grader release ../practice-template --git           one commit, ready to push as a
                                                      GitHub Classroom template
  make release dest=../practice-student [chapters=01,02] [git=1]
"""


def parse_chapters(text: str | None) -> list[str] | None:
    if text is None:
        return None
    from grader.cli import chapter_or_exit
    return sorted({chapter_or_exit(part) for part in text.split(",") if part.strip()})


def cmd_release(args: argparse.Namespace) -> int:
    try:
        report = release(Path(args.dest), parse_chapters(args.chapters), git=args.git)
    except ReleaseError as exc:
        print(f"grader release: {exc}", file=sys.stderr)
        return 1
    print(f"released chapters {', '.join(report.chapters)} into {report.dest}: "
          f"{len(report.written)} file(s) written, {len(report.unchanged)} unchanged")
    for rel in report.kept:
        print(f"  kept {rel}: it differs from the last release (a student's work)")
    for rel in report.removed:
        print(f"  removed {rel}: no longer part of the release")
    print(f"leak scan: {report.scanned} file(s), nothing of solutions/ or the hidden tests")
    if report.commit:
        print(f"git: commit {report.commit} in {report.dest}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "release", help="write the student repository: stubs, public tests, data, check",
        description="Write the student repository into DEST: exercises/ (the stubs), the public "
                    "tests, datasets/, the part of grader that `grader check` needs, README, "
                    "pyproject.toml, Makefile, bootstrap.py, .gitignore and two GitHub workflows "
                    "(the public check; grading with the hidden tests, skipped until set up). "
                    "No solutions and no hidden tests: a leak scan checks every file and fails, "
                    "naming file and line, if one slipped through. Releasing again into DEST adds "
                    "chapters and updates tests and tools, never overwriting an exercise file a "
                    "student has changed.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dest", metavar="DEST", help="the student repository's folder (outside this one)")
    p.add_argument("--chapters", default=None, metavar="01,02,...",
                   help="release these chapters (default: every chapter with tests); chapters "
                        "released into DEST before stay")
    p.add_argument("--git", action="store_true",
                   help="make DEST a git repository and commit the release")
    p.set_defaults(func=cmd_release)
