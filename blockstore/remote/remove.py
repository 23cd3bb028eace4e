"""remote rm-snapshot: delete one snapshot's manifest from a remote.

The snapshot disappears from ``remote ls`` and from pulls at once; its packs
and tree object become unreachable unless another manifest names them, and
``remote gc`` deletes them after the grace period (docs/REMOTE-FORMAT.md §5).
A snapshot that another manifest's chain names (a child pushed on top of
it) is refused (Busy): remove the children first.  Nothing local changes.
"""
from __future__ import annotations

from .. import errors
from . import layout
from .client import Remote


def remove_snapshot(store_path: str, name: str, remote: str | None = None) -> dict:
    rm = Remote(store_path, remote)
    manifests = rm.manifests()
    m = manifests.get(name)
    if m is None:
        raise errors.NotFound(f"remote {rm.name!r} has no snapshot {name!r}")
    deps = sorted(n for n, o in manifests.items() if n != name and name in o["chain"])
    if deps:
        raise errors.Busy(f"remote snapshot {name!r} has dependents on remote {rm.name!r} "
                          f"({', '.join(deps[:5])}{', ...' if len(deps) > 5 else ''}); "
                          f"remove them first")
    rm.objects.delete(layout.manifest_key(name))
    return {"remote": rm.name, "removed": name, "tree": m["tree"], "packs": len(m["packs"])}
