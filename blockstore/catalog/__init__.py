"""Layer 6, catalog: named trees and what keeps them whole.

One API for the layers above (``blockstore.api.Store`` and its helpers):

* table.py   -- ``TreeRecord`` and the catalog database (get, put, add,
  delete, rename, records, dependents), pins of roots held by readers, the
  staging entries of imports in progress;
* links.py   -- the reverse index (children, volume mounters, import
  working clones), kept in step by every put and delete;
* trees.py   -- ``Trees``: one store's environment and the tree operations
  (create, snapshot, clone, remove, rename, labels, list, gc, check);
* gc.py      -- ``collect``: free what removed trees owned, release and
  trim pending blocks;
* check.py   -- ``check``: the invariants of nodes, blocks, catalog and
  index (the filesystem's are ``fs.check``'s), and their repair.
"""
from .table import (CARRIED_LEGACY, CARRIED_PREFIX, CATALOG, KINDS, PINS, STAGING, TreeRecord,
                      add, add_pin, add_staging, carried_labels, check_name, count, dead_pins,
                      delete, dependents, exists, get, get_raw, pins, put, records, remove_pin,
                      remove_staging, rename, staging_entries, staging_owner)
from .links import IMPORTING_LABEL, importing
from .trees import REMOVE_GC_BUDGET, Trees, drop
from .check import CheckReport, Problem, check, count_runs
from .gc import collect

__all__ = [
    "CARRIED_LEGACY", "CARRIED_PREFIX", "CATALOG", "IMPORTING_LABEL", "KINDS", "PINS",
    "REMOVE_GC_BUDGET", "STAGING", "CheckReport", "Problem", "TreeRecord", "Trees", "add",
    "add_pin", "add_staging", "carried_labels", "check", "check_name", "collect", "count",
    "count_runs", "dead_pins", "delete", "drop", "dependents", "exists", "get", "get_raw", "importing",
    "pins", "put", "records", "remove_pin", "remove_staging", "rename", "staging_entries",
    "staging_owner",
]
