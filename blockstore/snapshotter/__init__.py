"""blockstore as a containerd proxy snapshotter (an interface, layer 8).

containerd drives storage plugins over gRPC on a unix socket; this package
serves that API from a store: committed snapshots are store snapshots,
active snapshots are clones, views are clones mounted read-only, and each
active or view snapshot is a FUSE mount handed to containerd as a bind
mount.  ``server.py`` (gRPC, error codes), ``service.py`` (semantics),
``records.py`` (names and labels), ``filters.py`` (List filters),
``fusemounts.py`` (the mounts), ``staging.py`` (unpacks written to a
plain directory and imported as a layer), ``register.py`` (telling
containerd which layers the store holds), ``proto/`` (the wire contract);
its directories come from ``blockstore.private_files``.  Start it with
``blockstore snapshotter serve --address SOCK``; docs/CONTAINERD.md.
"""
