"""Gradescope's `results.json` format, as a JSON Schema.

Written from Gradescope's autograder specification
(https://gradescope-autograders.readthedocs.io/en/latest/specs/): a top-level object
with an optional `score` (required unless every test has one), `execution_time`
(seconds), `output` (text for the whole submission), `output_format`,
`test_output_format`, `test_name_format`, `visibility`, `stdout_visibility`,
`extra_data` (anything) and `tests[]`; each test with `score`, `max_score`, `status`
("passed"/"failed", shown instead of being inferred from the score), `name`,
`name_format`, `number`, `output`, `output_format`, `tags`, `visibility`, and its own
`extra_data`. Leaderboard entries have `name`, `value` and optionally `order`.

`grader grade` writes one such file per student; the project's tests validate every
file it writes against RESULTS_SCHEMA.
"""
from __future__ import annotations

VISIBILITY = ["hidden", "after_due_date", "after_published", "visible"]
FORMATS = ["text", "html", "simple_format", "md", "ansi"]

_TEST = {
    "type": "object",
    "properties": {
        "score": {"type": "number"},
        "max_score": {"type": "number", "minimum": 0},
        "status": {"enum": ["passed", "failed"]},
        "name": {"type": "string"},
        "name_format": {"enum": FORMATS},
        "number": {"type": "string"},
        "output": {"type": "string"},
        "output_format": {"enum": FORMATS},
        "tags": {"type": "array", "items": {"type": "string"}},
        "visibility": {"enum": VISIBILITY},
        "extra_data": {},
    },
    "additionalProperties": False,
}

RESULTS_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Gradescope autograder results.json",
    "type": "object",
    "properties": {
        "score": {"type": "number"},
        "execution_time": {"type": "number", "minimum": 0},
        "output": {"type": "string"},
        "output_format": {"enum": FORMATS},
        "test_output_format": {"enum": FORMATS},
        "test_name_format": {"enum": FORMATS},
        "visibility": {"enum": VISIBILITY},
        "stdout_visibility": {"enum": VISIBILITY},
        "extra_data": {},
        "tests": {"type": "array", "items": _TEST},
        "leaderboard": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "value": {"type": ["number", "string"]},
                               "order": {"enum": ["asc", "desc"]}},
                "required": ["name", "value"],
                "additionalProperties": False,
            },
        },
    },
    "anyOf": [
        {"required": ["score"]},
        {"required": ["tests"], "properties": {"tests": {"items": {"required": ["score"]}}}},
    ],
    "additionalProperties": False,
}
