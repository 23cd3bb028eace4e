"""One remote as the tier sees it: its objects, manifests and block index."""
from __future__ import annotations

import concurrent.futures as cf
import itertools
import time

from .. import errors
from ..api import remotes
from . import layout
from .objects import ObjectStore

# gc deletes an object no manifest reaches only once it is older than this
# (docs/REMOTE-FORMAT.md §5); a push trusts unreachable packs only while they
# are younger than half of it, and must finish within that half.
GRACE_SECONDS = 48 * 3600.0


class Remote:
    def __init__(self, store_path: str, name: str | None, *, timeout: float = 10.0):
        self.name, cfg = remotes.get(store_path, name)
        bucket, prefix = remotes.parse_url(cfg["url"])
        self.url = cfg["url"]
        self.objects = ObjectStore(bucket, prefix, cfg.get("endpoint"), timeout=timeout)
        self._index: dict[bytes, tuple[str, int, int]] | None = None
        self.listed: set[str] = set()      # packs/ keys seen by the last load_index
        self.trusted: set[str] = set()     # index keys a push may rely on (load_index for_push)

    # -- manifests -----------------------------------------------------------
    def snapshot_names(self) -> list[str]:
        return sorted(layout.name_of_manifest_key(o.key) for o in self.objects.list("snapshots/")
                      if o.key.endswith(".json"))

    def manifest(self, name: str) -> dict | None:
        try:
            return layout.decode_manifest(self.objects.get(layout.manifest_key(name)), name)
        except errors.NotFound:
            return None

    def manifests(self) -> dict[str, dict]:
        names = self.snapshot_names()
        with cf.ThreadPoolExecutor(8) as ex:
            got = list(ex.map(self.manifest, names))
        return {n: m for n, m in zip(names, got) if m is not None}

    # -- blocks --------------------------------------------------------------
    def load_index(self, *, for_push: bool = False, grace: float = GRACE_SECONDS
                   ) -> dict[bytes, tuple[str, int, int]]:
        """SHA-256 -> (pack hash, offset, length) over the remote's pack indexes.
        ``for_push``: only packs some manifest reaches, or younger than grace/2
        (an older unreachable pack may be deleted by a gc at any moment)."""
        listed = self.objects.list("packs/")
        self.listed = {o.key for o in listed}
        idx = [o for o in listed if o.key.endswith(".idx")]
        if for_push:
            reach = set()
            for m in self.manifests().values():
                reach.update(m["packs"])
            now = time.time()
            idx = [o for o in idx if o.key[6:-4] in reach or now - o.mtime < grace / 2]
            self.trusted = {o.key for o in idx}
        # the bundles (one per push) hold most indexes: a pack's index is taken from
        # a bundle only while the pack's own index is listed (its pack whole and not
        # being deleted: gc deletes the index first), else it is GET on its own
        want = {o.key[6:-4] for o in idx}
        covered: dict[str, bytes] = {}
        with cf.ThreadPoolExecutor(8) as ex:
            bundles = [o for o in self.objects.list("indexes/") if o.key.endswith(".idxs")]
            for got in ex.map(self.bundle_indexes, bundles):
                for h, raw in got.items():
                    if h in want:
                        covered.setdefault(h, raw)
            rest = [o for o in idx if o.key[6:-4] not in covered]
            fetched = dict(zip((o.key for o in rest),
                               ex.map(lambda o: self.objects.get(o.key), rest)))
        out: dict[bytes, tuple[str, int, int]] = {}
        # a block in several packs maps to the first listed: packs are added last
        # first, so an earlier pack's entry overwrites a later one's (dict.update
        # at C speed instead of a setdefault per entry)
        for o in reversed(idx):
            data = covered.get(o.key[6:-4]) or fetched[o.key]
            _, _, ds, offs, lens = layout.decode_index_columns(data)
            out.update(zip(ds, zip(itertools.repeat(o.key[6:-4]), offs, lens)))
        if not for_push:
            self._index = out
        return out

    def bundle_indexes(self, o) -> dict[str, bytes]:
        """The indexes bundle ``o`` holds; none when it is gone meanwhile (gc)."""
        try:
            return layout.decode_bundle(self.objects.get(o.key))
        except errors.NotFound:
            return {}

    _loaded_at = 0.0

    def locate(self, digest: bytes) -> tuple[str, int, int] | None:
        """Where a block is; a miss reloads the indexes (packs pushed since), at
        most once a second."""
        if self._index is None or (digest not in self._index
                                   and time.monotonic() - self._loaded_at > 1.0):
            self.load_index()
            self._loaded_at = time.monotonic()
        return self._index.get(digest)
