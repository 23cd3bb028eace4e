"""blockstore: a userspace copy-on-write snapshot store for file trees.

See DESIGN.md for the layering: native -> pool -> txn -> btree -> fs ->
catalog -> api -> interfaces. Public exports are added by the api layer.
"""

__version__ = "0.1.0"
