"""Chapter 03 probes: run beside the student's code, return plain data to the tests.

A probe is a function `name(impl, *args)`; `impl` is the student's chapter module. It
returns numbers, strings, tensors, lists or dicts and never holds an expected value: the
test compares. This file ships with the public tests.

Chapter 03's functions take lists of floats and return floats, lists and tuples, all of
which come back to the tests as plain data through `impl` itself, so no test needs code
running beside the student's: there are no probes. The file's presence makes the chapter
judged (the tests run in a process apart from the student's code).
"""
