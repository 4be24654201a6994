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
file it writes against RESULTS_SCHEMA. Below the schema: what the autograder
(`grader gradescope-run`) keeps of /autograder/submission_metadata.json
(https://gradescope-autograders.readthedocs.io/en/latest/submission_metadata/), lateness
included, for the instructor.
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


# --------------------------------------------------------------------------- submission metadata

def _when(text):
    """A timestamp of submission_metadata.json (ISO 8601 with an offset), or None."""
    from datetime import datetime

    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def lateness(metadata: dict) -> dict:
    """How late the submission is, from /autograder/submission_metadata.json: for the
    instructor (results' extra_data), never a deduction. A due date of the student's own (an
    extension, where Gradescope lists one under the user) wins over the assignment's."""
    assignment = metadata.get("assignment") or {}
    users = metadata.get("users") or []
    own = (users[0].get("assignment") or {}) if users and isinstance(users[0], dict) else {}
    source = "user" if own.get("due_date") else "assignment"
    dates = own if source == "user" else assignment
    submitted, due, late_due = (_when(metadata.get("created_at")), _when(dates.get("due_date")),
                                _when(dates.get("late_due_date")))
    seconds = (submitted - due).total_seconds() if submitted and due else None
    return {
        "submitted_at": metadata.get("created_at"),
        "due_date": dates.get("due_date"),
        "late_due_date": dates.get("late_due_date"),
        "due_date_from": source,
        "late": None if seconds is None else seconds > 0,
        "seconds_late": None if seconds is None else max(0, round(seconds)),
        "after_late_due_date": (submitted > late_due) if submitted and late_due else None,
    }


def submission_facts(metadata: dict) -> dict:
    """What results.json keeps of the metadata: ids, the assignment's title, the lateness."""
    assignment = metadata.get("assignment") or {}
    return {
        "submission_id": metadata.get("id"),
        "assignment": assignment.get("title"),
        "assignment_id": assignment.get("id"),
        "user_ids": [u.get("id") for u in metadata.get("users") or [] if isinstance(u, dict)],
        "lateness": lateness(metadata),
    }
