"""Where things are: the repository, its tests, its data sets. One rule each."""
from __future__ import annotations

import os
from pathlib import Path

from grader.syllabus import CHAPTERS

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
SOLUTIONS = ROOT / "solutions"
EXERCISES = ROOT / "exercises"


def datasets_dir(option: str | os.PathLike | None = None) -> Path:
    """The data folder: the option if given, else $PRACTICE_DATASETS, else datasets/."""
    value = option or os.environ.get("PRACTICE_DATASETS")
    return Path(value).expanduser().resolve() if value else ROOT / "datasets"


def tests_dir(option: str | os.PathLike | None = None) -> Path:
    return Path(option).expanduser().resolve() if option else TESTS


def chapters_with_tests(tests_root: Path) -> list[str]:
    """Chapter numbers whose folder under `tests_root` holds at least one test file."""
    return sorted(p.name[2:] for p in tests_root.glob("ch[0-9][0-9]")
                  if p.is_dir() and p.name[2:] in CHAPTERS and any(p.glob("test_*.py")))
