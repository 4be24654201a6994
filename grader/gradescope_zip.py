"""`grader gradescope DEST.zip`: the Gradescope autograder. `grader gradescope-run`: its run.

The zip holds the grading bundle (`grader.ci.grading_files`: the grader, the chosen
chapters' tests with the hidden ones, the data sets; never solutions), `gradescope.json`
(what the zip was built for) and Gradescope's two scripts:

* `setup.sh`, run once as root when Gradescope builds the image: a venv at
  /autograder/venv with the pinned torch and torchvision (PyTorch's CPU build by default:
  Gradescope has no GPU) and the grader's other dependencies;
* `run_autograder`, run for each submission as root from /autograder: `grader
  gradescope-run`, which grades /autograder/submission with `grader grade`'s pipeline and
  writes /autograder/results/results.json.

Inside Gradescope's container the grader is root but has no CAP_SYS_ADMIN, so there are no
namespaces: no network namespace, no mount namespace to hide folders, no private /tmp. What
remains is the separate unprivileged uid per job (setuid needs only CAP_SETUID/CAP_SETGID,
which the container has), the limits, and file permissions. So before grading, the run:

* makes the hidden tests (source/tests), submission_metadata.json (which holds earlier
  results) and the results folder root-only, and the interpreter, grader and data readable;
* probes the isolation (`sandbox.probe_isolation`) and prints what it has;
* grades only when student code will run under its own uid (`drop_privileges`): without the
  mount namespace that needs every file the child imports to be readable by other users,
  which the step above arranges. If it still cannot, it writes no results and exits 2:
  Gradescope shows "the autograder failed" and the instructor regrades once it is fixed.
  It never falls back to running student code as root (`--unsafe-limited` is not used).

Limits are fitted to Gradescope's container: the wall-clock backstop per submission is
(timeout - STARTUP_RESERVE) / 2, because a submission that hits it is graded again alone
before the limit counts, and both runs must end before Gradescope's own timeout (10 minutes
by default) kills the container with no results at all. The memory per process is the
container's memory (read from its cgroup, else the size the zip was built for, 768 MB by
default) less WARM_RESERVE_MB for the grader and its warm parent process.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import stat
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from grader.paths import ROOT

CONFIG = "gradescope.json"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
DEFAULT_TIMEOUT_MIN = 10        # Gradescope's default autograder timeout
DEFAULT_CONTAINER_MB = 768      # Gradescope's default container memory
STARTUP_RESERVE = 120           # s: start-up (torch imported at half a CPU), collection, writing
WARM_RESERVE_MB = 448           # the grader and its warm parent (torch CPU build, pytest): estimated
MIN_MEMORY_MB = 256
DEPENDENCY_RE = re.compile(r'^\s*"([A-Za-z0-9_.\-]+[^"]*)"', re.MULTILINE)

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, while it builds the autograder image: a Python venv at
# /autograder/venv with {torch_text} and the grader's dependencies. The grader itself
# is not installed: run_autograder imports it from /autograder/source.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if ! command -v python3 >/dev/null || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    apt-get update
    apt-get install -y --no-install-recommends python3 python3-venv python3-pip
fi
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10) and "setup: the grader needs Python 3.10 or newer: choose a newer base image in the autograder settings")'
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install --quiet --upgrade pip
/autograder/venv/bin/pip install --quiet {index}{pins}
/autograder/venv/bin/pip install --quiet {deps}
chmod -R a+rX /autograder/venv
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission, as root, from /autograder: grade
# /autograder/submission into /autograder/results/results.json. AUTOGRADER_ROOT (a folder laid
# out like /autograder) and GRADER_PYTHON let it run elsewhere, e.g. to try the zip locally.
set -euo pipefail
root="${AUTOGRADER_ROOT:-/autograder}"
python="${GRADER_PYTHON:-$root/venv/bin/python}"
cd "$root/source"
export PYTHONPATH="$root/source"
exec "$python" -m grader gradescope-run --root "$root"
"""


# --------------------------------------------------------------------------- building the zip

def dependencies(source: Path) -> tuple[list[str], list[str]]:
    """(torch and torchvision pins, every other dependency) from pyproject.toml: its
    `dependencies` and, where the grading ones are an extra, its `grade` extra."""
    text = (source / "pyproject.toml").read_text(encoding="utf-8")
    deps = []
    for key in ("dependencies = [", "grade = ["):
        if key in text:
            deps += DEPENDENCY_RE.findall(text.split(key, 1)[1].split("]", 1)[0])
    pins = [d for d in deps if re.match(r"(torch|torchvision)==", d)]
    if len(pins) != 2:
        raise ValueError("pyproject.toml should pin torch and torchvision with ==")
    return pins, [d for d in deps if d not in pins]


def setup_script(source: Path, torch_build: str) -> str:
    pins, deps = dependencies(source)
    cpu = torch_build == "cpu"
    return SETUP_SH.format(
        torch_text=f"PyTorch's {'CPU-only' if cpu else 'default (PyPI, CUDA)'} build ({' '.join(pins)})",
        index=f"--index-url {CPU_INDEX} " if cpu else "",
        pins=" ".join(pins), deps=" ".join(f"'{d}'" for d in deps))


def zip_files(chapters: list[str], torch_build: str, timeout_min: float, container_mb: int,
              source: Path = ROOT) -> dict[str, bytes]:
    from grader import ci

    files = ci.grading_files(source, chapters)
    config = {"chapters": chapters, "torch": torch_build, "timeout_s": round(timeout_min * 60),
              "container_mb": container_mb, "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    files[CONFIG] = (json.dumps(config, indent=1) + "\n").encode()
    files["setup.sh"] = setup_script(source, torch_build).encode()
    files["run_autograder"] = RUN_AUTOGRADER.encode()
    return files


def write_zip(dest: Path, files: dict[str, bytes]) -> None:
    """The files at the zip's root (Gradescope looks for setup.sh and run_autograder there),
    the scripts executable."""
    tmp = dest.with_name(dest.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for rel, data in sorted(files.items()):
            info = zipfile.ZipInfo(rel, date_time=(2020, 1, 1, 0, 0, 0))
            mode = 0o755 if rel in ("setup.sh", "run_autograder") else 0o644
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    os.replace(tmp, dest)


def cmd_gradescope(args: argparse.Namespace) -> int:
    from grader import ci

    dest = Path(args.dest).expanduser().resolve()
    if dest.suffix != ".zip":
        return _fail("DEST must end in .zip")
    try:
        chapters = ci.choose(args.chapters)
        files = zip_files(chapters, args.torch, args.timeout_minutes, args.container_memory)
    except (ValueError, OSError) as exc:
        return _fail(str(exc))
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_zip(dest, files)
    print(f"wrote {dest}: the autograder for chapters {', '.join(chapters)} ({len(files)} files, "
          f"PyTorch's {args.torch} build, nothing of solutions/); limits for a {args.timeout_minutes:g}-minute "
          f"timeout: {wall_budget(args.timeout_minutes * 60):g} s wall clock per submission, "
          f"{memory_budget(args.container_memory)} MB per process in a {args.container_memory} MB container")
    return 0


# --------------------------------------------------------------------------- running in the container

def wall_budget(timeout_s: float) -> float:
    """Wall-clock backstop per submission: twice it (the first run and the run alone after a
    backstop) plus the start-up must end before Gradescope's timeout."""
    return max(60.0, (timeout_s - STARTUP_RESERVE) / 2)


def memory_budget(container_mb: int) -> int:
    return max(MIN_MEMORY_MB, container_mb - WARM_RESERVE_MB)


def container_memory_mb(default: int) -> int:
    """The container's memory limit (cgroup v2, then v1), else `default`."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < (1 << 50):
            return int(text) >> 20
    return default


def lock_down(root: Path) -> list[str]:
    """Permissions that keep student code (another uid, no mount namespace) from the hidden
    tests, the metadata and the results, and let it read what it imports. Returns notes."""
    if os.geteuid() != 0:
        return ["not root: permissions left as they are"]
    source = root / "source"
    for folder in (root, source):
        os.chmod(folder, os.stat(folder).st_mode | 0o011)      # traversable, not listable by others
    for tree in (source / "grader", source / "datasets"):
        _readable_tree(tree)
    os.chmod(source / "tests", 0o700)
    metadata = root / "submission_metadata.json"
    if metadata.exists():
        os.chmod(metadata, 0o600)
    results = root / "results"
    results.mkdir(exist_ok=True)
    os.chown(results, 0, 0)
    os.chmod(results, 0o755)
    return ["hidden tests, submission_metadata.json and results/ writable or readable by root only; "
            "grader/ and datasets/ readable"]


def _readable_tree(tree: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(tree):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(Path(dirpath) / name, 0o644)


def grade_arguments(subs: Path, out: Path, wall: float, memory: int) -> argparse.Namespace:
    """`grader grade`'s options for one submission in Gradescope's container."""
    from grader import cohort

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("submissions")
    parser.add_argument("-o", "--out")
    cohort.add_grade_options(parser)
    return parser.parse_args([str(subs), "-o", str(out), "--chapters", "all", "--jobs", "1",
                              "--wall", f"{wall:g}", "--memory", str(memory), "--force"])


def cmd_gradescope_run(args: argparse.Namespace) -> int:
    root = Path(args.root or os.environ.get("AUTOGRADER_ROOT") or "/autograder").resolve()
    source = root / "source"
    if ROOT != source.resolve():
        return _fail(f"the grader was imported from {ROOT}, not from {source}: run "
                     "run_autograder, which puts the autograder's source first on PYTHONPATH")
    config = json.loads((source / CONFIG).read_text(encoding="utf-8"))
    for note in lock_down(root):
        print(f"permissions: {note}")
    from grader import sandbox
    isolation = sandbox.probe_isolation()
    print(f"isolation: {isolation.summary()}")
    if not isolation.drop_privileges:
        return _fail("refusing to grade: student code would run as root here ("
                     + ("; ".join(isolation.notes) or "no way to switch to another uid")
                     + "); no results written, so Gradescope reports a failed autograder: fix the "
                       "image (see the README: Gradescope) and regrade")
    container = container_memory_mb(int(config.get("container_mb", DEFAULT_CONTAINER_MB)))
    wall = wall_budget(float(config.get("timeout_s", DEFAULT_TIMEOUT_MIN * 60)))
    memory = memory_budget(container)
    print(f"limits for Gradescope: {wall:g} s wall clock per submission (timeout "
          f"{config.get('timeout_s')} s), {memory} MB per process ({container} MB container)")
    return _grade_submission(root, wall, memory)


def _grade_submission(root: Path, wall: float, memory: int) -> int:
    from grader import cohort, submissions

    student = "submission"
    sub = submissions.read(submissions.Submission(student=student, source=root / "submission"))
    with tempfile.TemporaryDirectory(prefix="gradescope-") as tmp:
        folder = Path(tmp) / "submissions" / student / "exercises"
        folder.mkdir(parents=True)
        for name, data in sub.files.items():
            (folder / name).write_bytes(data)
        out = Path(tmp) / "out"
        code = cohort.cmd_grade(grade_arguments(folder.parent.parent, out, wall, memory))
        record_path = out / student / "results.json"
        if code != 0 or not record_path.is_file():
            return _fail(f"grading did not finish (exit {code}); no results written, so Gradescope "
                         "reports a failed autograder: regrade after reading the output above")
        record = json.loads(record_path.read_text(encoding="utf-8"))
    record["extra_data"]["gradescope"] = _metadata_facts(root / "submission_metadata.json")
    write_results(root / "results" / "results.json", record)
    print(f"score {record['score']:g} / {record['extra_data'].get('max_score', 0):g} written to "
          f"{root / 'results' / 'results.json'}")
    return 0


def _metadata_facts(path: Path) -> dict:
    from grader.gradescope import submission_facts

    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"note": f"{path.name} missing or unreadable"}
    return submission_facts(metadata if isinstance(metadata, dict) else {})


def write_results(path: Path, record: dict) -> None:
    """Atomically: Gradescope reads the file after run_autograder exits."""
    from grader.feedback import strict_json

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(strict_json(record), indent=1, ensure_ascii=False, allow_nan=False),
                   encoding="utf-8")
    os.replace(tmp, path)


def _fail(message: str) -> int:
    print(f"grader: {message}", file=sys.stderr)
    return 2


# --------------------------------------------------------------------------- commands

def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gradescope", help="build the Gradescope autograder zip (setup.sh, run_autograder, tests)",
        description="Write DEST.zip for a Gradescope programming assignment: setup.sh (a venv with "
                    "the pinned PyTorch, the CPU build by default), run_autograder (grades "
                    "/autograder/submission with the hidden tests into results.json), the grader, "
                    "the chosen chapters' tests and the data. No solutions.",
        epilog="example: grader gradescope week05.zip --chapters 05\n"
               "upload the zip under Configure Autograder; keep the timeout and memory settings "
               "the zip was built for (--timeout-minutes, --container-memory)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dest", metavar="DEST.zip")
    p.add_argument("--chapters", default=None, metavar="LIST",
                   help="the assignment's chapters, e.g. 05 (default: every chapter with tests); a "
                        "submission without one of their files scores 0 for it")
    p.add_argument("--torch", choices=["cpu", "default"], default="cpu",
                   help="PyTorch build setup.sh installs: cpu (default; Gradescope has no GPU) or "
                        "default (PyPI's, with CUDA: gigabytes larger)")
    p.add_argument("--timeout-minutes", type=float, default=DEFAULT_TIMEOUT_MIN, metavar="M",
                   help="the assignment's autograder timeout on Gradescope (default 10); the grader "
                        "keeps its own limits below it")
    p.add_argument("--container-memory", type=int, default=DEFAULT_CONTAINER_MB, metavar="MB",
                   help="the container's memory on Gradescope (default 768), used when the container "
                        "does not say")
    p.set_defaults(func=cmd_gradescope)

    p = sub.add_parser(
        "gradescope-run", help="(in Gradescope's container) grade /autograder/submission",
        description="What run_autograder runs: grade ROOT/submission with ROOT/source's tests into "
                    "ROOT/results/results.json, within Gradescope's container.")
    p.add_argument("--root", default=None, metavar="DIR",
                   help="a folder laid out like /autograder (default: $AUTOGRADER_ROOT, else /autograder)")
    p.set_defaults(func=cmd_gradescope_run)
