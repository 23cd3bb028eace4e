"""Fault-injection helpers for tests: named failpoints and a crash-simulating data file.

Nothing here is used by the store unless a test (or tools/stress.py) turns it on;
the only cost in production code is a module-level ``if failpoints.ACTIVE:`` check.
"""
