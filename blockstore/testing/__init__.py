"""Fault-injection helpers for tests: a crash-simulating data file (crashfs.py).

Nothing here is imported by the store: a test hands ``crashfs.CrashDataFile``
to ``Trees.open(..., data_file=...)``.  The named failpoints it arms live in
the product (``blockstore/failpoints.py``); their cost there is a
module-level ``if failpoints.ACTIVE:`` check.
"""
