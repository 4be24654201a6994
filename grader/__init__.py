"""PyTorch Practice's grader: `grader check`, stub generation and cohort grading."""

__version__ = "0.1.0"
