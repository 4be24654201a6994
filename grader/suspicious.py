"""Code that reaches for the grader's internals, flagged for an instructor's review.

Defence in depth, never a verdict: a flag changes no score. It points a person at the
lines of a submission that import or touch what no exercise needs and what attacks on a
grader use: the test machinery (pytest, the grader itself), the interpreter's insides
(frames, `gc`, `inspect`, `ctypes`, `builtins`, `sys.modules`), dynamic code (`exec`,
`eval`, `__import__`), signals, and torch's function and dispatch modes.
"""
from __future__ import annotations

import ast

MODULES = {
    "pytest": "the test framework", "_pytest": "the test framework", "pluggy": "the test framework",
    "grader": "the grader", "gc": "the garbage collector", "inspect": "frame inspection",
    "ctypes": "raw memory access", "signal": "signal handlers", "builtins": "the builtins",
    "importlib": "the import machinery", "torch.overrides": "torch function modes",
    "torch.utils._python_dispatch": "torch dispatch modes",
}
NAMES = {
    "exec": "exec", "eval": "eval", "compile": "compile", "__import__": "__import__",
    "globals": "globals()", "__builtins__": "__builtins__",
}
ATTRIBUTES = {
    "_getframe": "stack frames", "f_back": "stack frames", "f_globals": "stack frames",
    "f_locals": "stack frames", "tb_frame": "stack frames", "gi_frame": "stack frames",
    "modules": "sys.modules",  # only as sys.modules, see below
    "__subclasses__": "class internals", "TorchFunctionMode": "torch function modes",
    "TorchDispatchMode": "torch dispatch modes", "__torch_function__": "torch function overrides",
}
LIMIT = 20   # lines reported per file


def scan(source: bytes | str, filename: str = "") -> list[str]:
    """'ch05_x.py line 3: imports ctypes (raw memory access)', one per finding, in line order."""
    try:
        tree = ast.parse(source, filename or "<submission>")
    except (SyntaxError, ValueError):
        return []
    prefix = f"{filename} " if filename else ""
    found: dict[tuple[int, str], None] = {}

    def add(node: ast.AST, what: str) -> None:
        found.setdefault((getattr(node, "lineno", 0), what), None)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                _module(node, alias.name, add)
        elif isinstance(node, ast.ImportFrom) and node.module:
            _module(node, node.module, add)
            for alias in node.names:
                _module(node, f"{node.module}.{alias.name}", add)
        elif isinstance(node, ast.Name) and node.id in NAMES:
            add(node, f"uses {NAMES[node.id]}")
        elif isinstance(node, ast.Attribute) and node.attr in ATTRIBUTES:
            if node.attr == "modules" and not (isinstance(node.value, ast.Name) and node.value.id == "sys"):
                continue
            add(node, f"uses {ATTRIBUTES[node.attr]} (.{node.attr})")
    lines = [f"{prefix}line {line}: {what}" for line, what in sorted(found)]
    return lines[:LIMIT] + ([f"{prefix}... and {len(lines) - LIMIT} more"] if len(lines) > LIMIT else [])


def _module(node: ast.AST, name: str, add) -> None:
    for module, why in MODULES.items():
        if name == module or name.startswith(module + "."):
            add(node, f"imports {name} ({why})")
            return


def scan_files(files: dict[str, bytes]) -> list[str]:
    return [line for name, data in sorted(files.items()) for line in scan(data, name)]
