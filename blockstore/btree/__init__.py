"""Persistent copy-on-write B+tree over LMDB (Rodeh; Linux dm-persistent-data).

node    -- node encoding, checksum, size limits
values  -- leaf value tags: which values own pool blocks
store   -- node storage, refcounts, shadowing, incremental freeing (GC queue)
tree    -- lookup / iterate / insert / delete / share / release
diff    -- difference of two roots, skipping shared subtrees by node id
"""
