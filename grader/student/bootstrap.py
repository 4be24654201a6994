"""Set up the course's Python environment in .venv: `python bootstrap.py [--torch cpu]`.

`make setup` runs this; without make, run it yourself. It behaves the same on Windows, macOS
and Linux: it checks the Python version, creates .venv with the Python that runs it, and
installs the course (PyTorch, pytest and the grader) into it. `--torch cpu` installs PyTorch's
CPU-only build, from PyTorch's own index, instead of the default build from PyPI.

Any Python from 3.6 on runs it as far as the version check, so an old Python gets a one-line
answer instead of an error from pip.
"""
import sys

NEEDED = (3, 10)

if sys.version_info < NEEDED:
    sys.exit("setup: the course needs Python %d.%d or newer, and this is %s (%s). Install a newer "
             "Python (https://www.python.org/downloads/; on macOS also `brew install python@3.12`), "
             "then run setup again with it, e.g. `make setup PYTHON=python3.12` or "
             "`python3.12 bootstrap.py`." % (NEEDED[0], NEEDED[1], sys.version.split()[0], sys.executable))

import argparse  # noqa: E402 - after the version check, on purpose
import os  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import urllib.request  # noqa: E402
from pathlib import Path  # noqa: E402

# PyTorch's index of CPU-only wheels (PRACTICE_TORCH_CPU_INDEX: a mirror of it)
CPU_INDEX = os.environ.get("PRACTICE_TORCH_CPU_INDEX", "https://download.pytorch.org/whl/cpu").rstrip("/")
PROBE_TIMEOUT = 10  # seconds
STAMP = ".installed"  # in .venv: the PyTorch build installed; make compares it with pyproject.toml


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def torch_pins(root: Path) -> list:
    """torch and torchvision exactly as pyproject.toml pins them, so both builds agree."""
    text = (root / "pyproject.toml").read_text(encoding="utf-8")
    pins = re.findall(r'"((?:torch|torchvision)==[^"]+)"', text)
    if len(pins) != 2:
        sys.exit("setup: pyproject.toml should pin torch and torchvision with ==")
    return pins


def probe(url: str) -> None:
    """Fail in one line, within seconds, when PyTorch's index cannot be reached."""
    try:
        with urllib.request.urlopen(url + "/torch/", timeout=PROBE_TIMEOUT) as response:
            response.read(1)
    except Exception as exc:  # noqa: BLE001 - every failure means the same here
        reason = getattr(exc, "reason", None) or exc
        sys.exit(f"setup: PyTorch's CPU wheel index {url} cannot be reached ({reason}); connect "
                 "to the internet, or run setup without TORCH=cpu to install the default build "
                 "from PyPI")


def run(what: str, *command: str) -> None:
    """Run a command; when it fails, one line after its own output."""
    if subprocess.call(list(command)) != 0:
        sys.exit(f"setup: {what} failed (see above)")


def installed_build(venv: Path) -> str | None:
    """The PyTorch build a finished setup recorded ("default" for a stamp without one)."""
    stamp = venv / STAMP
    if not stamp.is_file() or not venv_python(venv).exists():
        return None
    return stamp.read_text(encoding="utf-8").strip() or "default"


def up_to_date(root: Path, venv: Path, build: str) -> bool:
    stamp = venv / STAMP
    return (installed_build(venv) == build
            and stamp.stat().st_mtime >= (root / "pyproject.toml").stat().st_mtime)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--torch", default="", choices=["default", "cpu", ""],
                        help="the PyTorch build: default (PyPI's) or cpu (CPU only, smaller); "
                             "without it, the build installed before, else default")
    parser.add_argument("--extras", default="", help="optional dependencies to add, e.g. dev")
    parser.add_argument("--root", default=str(Path(__file__).resolve().parent),
                        help="the project folder, with pyproject.toml (default: this file's)")
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    venv = root / ".venv"
    before = installed_build(venv)
    build = args.torch or before or "default"
    if up_to_date(root, venv, build):
        print(f"setup: .venv is up to date (the {build} build of PyTorch)")
        return 0
    if build == "cpu":
        probe(CPU_INDEX)
    python = str(venv_python(venv))
    if not venv_python(venv).exists():
        print(f"setup: creating .venv with Python {sys.version.split()[0]}")
        run("creating .venv", sys.executable, "-m", "venv", str(venv))
    (venv / STAMP).unlink(missing_ok=True)   # until this install has finished
    run("upgrading pip", python, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    if before and before != build:
        # pip would take the installed build as satisfying the pinned version: remove it first
        print(f"setup: replacing the {before} build of PyTorch with the {build} one (to reclaim "
              "the space the old one used, delete .venv and set up again)")
        run("removing the other build", python, "-m", "pip", "uninstall", "--quiet", "--yes",
            "torch", "torchvision")
    if build == "cpu":
        pins = torch_pins(root)
        print(f"setup: installing PyTorch's CPU build ({' '.join(pins)}) from {CPU_INDEX}")
        run("installing PyTorch's CPU build", python, "-m", "pip", "install", "--quiet",
            "--index-url", CPU_INDEX, *pins)
    target = f"{root}[{args.extras}]" if args.extras else str(root)
    print("setup: installing the course and its dependencies (the first time takes minutes)")
    run("installing the course", python, "-m", "pip", "install", "--quiet", "-e", target)
    (venv / STAMP).write_text(build + "\n", encoding="utf-8")
    print("setup: done; check a chapter with `make check ch=01` or "
          f"`{venv_python(venv).relative_to(root)} -m grader check 01`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
