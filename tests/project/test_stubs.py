"""exercises/ is generated from solutions/ and must never be stale."""
from __future__ import annotations

import re
import textwrap

import pytest

from grader import stubs
from grader.paths import ROOT


def test_exercises_are_up_to_date():
    stale = stubs.stale(ROOT / "solutions", ROOT / "exercises")
    assert not stale, f"exercises/ is stale, run `make exercises`: {stale}"


def test_solution_region_becomes_todo_and_raise():
    source = textwrap.dedent('''\
        class Net:
            def forward(self, x):
                """Doc."""
                ### BEGIN SOLUTION
                # TODO(ch05.forward): apply the layer.
                #   Then return it.
                return self.linear(x)
                ### END SOLUTION
        ''')
    stub = stubs.make_stub(source)
    assert "return self.linear(x)" not in stub
    assert "# TODO(ch05.forward): apply the layer.\n        #   Then return it.\n" in stub
    assert 'raise NotImplementedError("ch05.forward: Net.forward")' in stub
    assert "BEGIN SOLUTION" not in stub


def test_stub_region_replaces_the_solution():
    source = textwrap.dedent('''\
        def main():
            pass
        ### BEGIN SOLUTION
        # TODO(ch08.guard): guard the entry point.
        if __name__ == "__main__":
            main()
        ### END SOLUTION
        ### BEGIN STUB
        # main()
        ### END STUB
        ''')
    stub = stubs.make_stub(source)
    assert stub.endswith("# TODO(ch08.guard): guard the entry point.\nmain()\n")
    assert "__main__" not in stub and "NotImplementedError" not in stub


@pytest.mark.parametrize("source, problem", [
    ("### BEGIN SOLUTION\nx = 1\n", "without ### END SOLUTION"),
    ("### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n", "must start with a '# TODO(task)"),
    ("### BEGIN SOLUTION\n# TODO(ch99.nope): x\nx = 1\n### END SOLUTION\n", "unknown task"),
    ("x = 1\n### END SOLUTION\n", "unexpected"),
])
def test_malformed_markers_are_reported_with_line(source, problem):
    with pytest.raises(stubs.StubError, match=re.escape(problem)):
        stubs.make_stub(source, "sol.py")


def test_every_stub_raises_and_names_its_task():
    for path in sorted((ROOT / "exercises").glob("ch*.py")):
        text = path.read_text(encoding="utf-8")
        assert "### BEGIN SOLUTION" not in text, path.name
        for line in text.splitlines():
            if "raise NotImplementedError(" in line:
                assert f'"ch{path.name[2:4]}.' in line, f"{path.name}: {line.strip()}"
