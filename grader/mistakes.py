"""The mistake catalogue and the correct variants: small edits of a solution.

Each chapter's catalogue lives in `tests/mistakes/chNN.py` as a list `MISTAKES`. The
project's own suite applies each edit to the solution, grades the result and requires
that it loses points in the mistake's task with a failure message that contains
`message` (case-insensitive), through the public tests alone as well as through the whole
suite, and that it loses points in no other task than its own and those in `also`.

`VARIANTS` in the same file are solutions in another style (another layer order,
`nn.Sequential`, functional calls, another accuracy idiom): each must earn full marks.
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
    also: tuple[str, ...] = ()      # other tasks it may lose points in (tasks that use it)
    public: bool = True             # must be caught by the public tests alone

    def apply(self, source: str) -> str:
        for old, new in self.edits:
            count = source.count(old)
            if count != 1:
                raise ValueError(f"mistake {self.name!r}: {old!r} occurs {count} times in the solution "
                                 "(expected exactly once); update the catalogue entry")
            source = source.replace(old, new)
        return source


@dataclass(frozen=True)
class Variant:
    """A correct solution in another style, as edits of the reference: full marks."""
    name: str
    edits: list[tuple[str, str]] = field(default_factory=list)

    apply = Mistake.apply


def _modules(folder: Path):
    for path in sorted(folder.glob("ch[0-9][0-9].py")):
        spec = importlib.util.spec_from_file_location(f"_mistakes_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield path.stem[2:], module


def load_catalogue(folder: Path) -> dict[str, list[Mistake]]:
    """{'05': [Mistake, ...]} from every tests/mistakes/chNN.py."""
    return {chapter: list(module.MISTAKES) for chapter, module in _modules(folder)}


def load_variants(folder: Path) -> dict[str, list[Variant]]:
    """{'05': [Variant, ...]} from the VARIANTS of every tests/mistakes/chNN.py."""
    return {chapter: list(getattr(module, "VARIANTS", [])) for chapter, module in _modules(folder)}
