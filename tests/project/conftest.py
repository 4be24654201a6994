"""The project's own suite runs chapter tests in children forked from this process."""
from __future__ import annotations

import pytest

from chapter_runs import CATALOGUE, CHAPTERS_WITH_TESTS


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "chapter" in metafunc.fixturenames:
        metafunc.parametrize("chapter", CHAPTERS_WITH_TESTS, ids=[f"ch{c}" for c in CHAPTERS_WITH_TESTS])
    if "mistake" in metafunc.fixturenames:
        entries = [(c, m) for c, ms in CATALOGUE.items() for m in ms]
        metafunc.parametrize("mistake", entries,
                             ids=[f"ch{c}-{m.name.replace(' ', '_')}" for c, m in entries])
