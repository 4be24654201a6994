"""Chapter 02 probes: run beside the student's code, return plain data to the tests.

Chapter 02's functions take tensors and return tensors or Python floats, which come back to
the tests as plain values: the tests call them through `impl` and need no probe. The file
makes the chapter a judged one (the student's code runs in a process of its own) and is the
place for any probe a later test needs. This file ships with the public tests.
"""
