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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "xdist_group(name): run these tests in one pytest-xdist worker")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        # A project test may grade a whole chapter or cohort: the per-test limit of chapter
        # tests (pyproject's `timeout`) is too short for that.
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(900))
        # Cohort-grader tests check that no sandbox uid has processes left; two graders running
        # side by side in different workers would see each other's.
        if item.path.name.startswith("test_grade"):
            item.add_marker(pytest.mark.xdist_group("cohort-grader"))
