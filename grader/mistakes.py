"""The mistake catalogue: realistic student errors as small edits of a solution.

Each chapter's catalogue lives in `tests/mistakes/chNN.py` as a list `MISTAKES`. The
project's own suite applies each edit to the solution, grades the result on the
mistake's task and requires that it loses points there with a failure message that
contains `message` (case-insensitive): the message names the mistake.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Mistake:
    name: str
    task: str                       # the task that must lose points, e.g. "ch05.train"
    edits: list[tuple[str, str]] = field(default_factory=list)  # (old, new), old occurs exactly once
    message: str = ""               # must appear in a failure message of that task

    def apply(self, source: str) -> str:
        for old, new in self.edits:
            count = source.count(old)
            if count != 1:
                raise ValueError(f"mistake {self.name!r}: {old!r} occurs {count} times in the solution "
                                 "(expected exactly once); update the catalogue entry")
            source = source.replace(old, new)
        return source


def load_catalogue(folder: Path) -> dict[str, list[Mistake]]:
    """{'05': [Mistake, ...]} from every tests/mistakes/chNN.py."""
    out = {}
    for path in sorted(folder.glob("ch[0-9][0-9].py")):
        spec = importlib.util.spec_from_file_location(f"_mistakes_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        out[path.stem[2:]] = list(module.MISTAKES)
    return out
