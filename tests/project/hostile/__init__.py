"""Fixtures for the cohort grader's own tests: hostile submissions and a warm way to run it."""
