"""Generate the student stubs in exercises/ from the reference solutions.

A solution marks what students write with nbgrader's markers:

    def forward(self, x):
        ### BEGIN SOLUTION
        # TODO(ch05.forward): pass x through self.linear and return it.
        return self.linear(x)
        ### END SOLUTION

The stub keeps the region's leading comment lines (the first is `# TODO(task): ...`) and replaces the
rest with `raise NotImplementedError("<task>: <function>")`.

Where the stub must hold different code rather than nothing, a STUB region follows the
solution region directly, written as comments in the solution (so the solution runs):

    ### BEGIN SOLUTION
    if __name__ == "__main__":
        main()
    ### END SOLUTION
    ### BEGIN STUB
    # main()
    ### END STUB

Its lines, with the leading `# ` removed, replace the solution region in the stub.
"""
from __future__ import annotations

import re
from pathlib import Path

from grader.syllabus import ALL_TASKS

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
BEGIN_STUB = "### BEGIN STUB"
END_STUB = "### END STUB"
TODO_RE = re.compile(r"^\s*# TODO\(([\w.]+)\):")
DEF_RE = re.compile(r"^(\s*)(?:async\s+)?(def|class)\s+(\w+)")


class StubError(ValueError):
    """A solution file's markers are malformed."""


def _marker(line: str) -> str:
    return line.strip()


def _enclosing_name(lines: list[str], index: int) -> str:
    """Qualified name of the def/class enclosing line `index` ('LinearModel.forward')."""
    indent = len(lines[index]) - len(lines[index].lstrip())
    names = []
    for line in reversed(lines[:index]):
        m = DEF_RE.match(line)
        if m and len(m.group(1)) < indent:
            names.append(m.group(3))
            indent = len(m.group(1))
            if indent == 0:
                break
    return ".".join(reversed(names)) or "module level"


def make_stub(source: str, filename: str = "<solution>") -> str:
    """The exercise text for one solution file."""
    lines = source.splitlines(keepends=True)
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if _marker(line) == BEGIN_SOLUTION:
            indent = line[: len(line) - len(line.lstrip())]
            j = i + 1
            while j < len(lines) and _marker(lines[j]) != END_SOLUTION:
                if _marker(lines[j]) in (BEGIN_SOLUTION, BEGIN_STUB, END_STUB):
                    raise StubError(f"{filename}:{j + 1}: {_marker(lines[j])} inside a solution region")
                j += 1
            if j == len(lines):
                raise StubError(f"{filename}:{i + 1}: {BEGIN_SOLUTION} without {END_SOLUTION}")
            body = lines[i + 1: j]
            todos = []  # the region's leading comment lines: the TODO the student reads
            for b in body:
                if not b.strip().startswith("#"):
                    break
                todos.append(b)
            if todos and not TODO_RE.match(todos[0]):
                todos = []
            if not todos:
                raise StubError(f"{filename}:{i + 1}: a solution region must start with a "
                                f"'# TODO(task): ...' comment")
            task = TODO_RE.match(todos[0]).group(1)
            if task not in ALL_TASKS:
                raise StubError(f"{filename}:{i + 1}: TODO names unknown task {task!r}")
            k = j + 1
            if k < len(lines) and _marker(lines[k]) == BEGIN_STUB:
                m = k + 1
                while m < len(lines) and _marker(lines[m]) != END_STUB:
                    m += 1
                if m == len(lines):
                    raise StubError(f"{filename}:{k + 1}: {BEGIN_STUB} without {END_STUB}")
                out.extend(todos)
                out.extend(_uncomment(b, filename, n) for n, b in enumerate(lines[k + 1: m], k + 2))
                i = m + 1
                continue
            name = _enclosing_name(lines, i)
            out.extend(todos)
            out.append(f'{indent}raise NotImplementedError("{task}: {name}")\n')
            i = j + 1
            continue
        if _marker(line) in (END_SOLUTION, BEGIN_STUB, END_STUB):
            raise StubError(f"{filename}:{i + 1}: unexpected {_marker(line)}")
        out.append(line)
        i += 1
    return "".join(out)


def _uncomment(line: str, filename: str, lineno: int) -> str:
    stripped = line.lstrip()
    indent = line[: len(line) - len(stripped)]
    if stripped.startswith("# "):
        return indent + stripped[2:]
    if stripped.rstrip("\n") == "#":
        return "\n"
    if not stripped.strip():
        return line
    raise StubError(f"{filename}:{lineno}: lines of a STUB region must be comments ('# code')")


def generate(solutions: Path, exercises: Path, chapters: list[str] | None = None) -> dict[Path, str]:
    """Every exercise file's intended text, keyed by its path under `exercises`.

    `chapters` (e.g. ["05"]) limits it to those chapters' files.
    """
    files = {}
    for src in sorted(solutions.glob("ch*.py")):
        if chapters and src.name[2:4] not in chapters:
            continue
        files[exercises / src.name] = make_stub(src.read_text(encoding="utf-8"), str(src))
    return files


def stale(solutions: Path, exercises: Path) -> list[str]:
    """Names of exercise files that differ from what `generate` would write (or are extra)."""
    wanted = generate(solutions, exercises)
    problems = [p.name for p, text in wanted.items()
                if not p.is_file() or p.read_text(encoding="utf-8") != text]
    extra = [p.name for p in exercises.glob("ch*.py") if p not in wanted]
    return sorted(problems + [f"{n} (no solution)" for n in extra])


def write(solutions: Path, exercises: Path, chapters: list[str] | None = None) -> list[Path]:
    exercises.mkdir(parents=True, exist_ok=True)
    changed = []
    for path, text in generate(solutions, exercises, chapters).items():
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed
