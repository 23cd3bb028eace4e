"""Remotes of a store: where snapshots are pushed to and pulled from.

The configuration lives in ``STORE/remotes.json`` (mode 0600, replaced
atomically): ``{"NAME": {"url": "s3://BUCKET/PREFIX", "endpoint": URL or
null}}``.  Credentials are never stored: the remote tier reads the usual
AWS variables and files.  The remote tier itself (``blockstore/remote/``)
sits above the API; it registers here (``register_tier``) when the package
is imported, so ``Store.push``/``pull`` and the block fetcher of lazily
pulled snapshots reach it without the API importing upward.
"""
from __future__ import annotations

import os
import re

from ..errors import AlreadyExists, InvalidInput, NotFound, Unsupported

FILE = "remotes.json"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
_URL = re.compile(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(.*))?")

_tier = None


def register_tier(tier) -> None:
    """Called once by blockstore.remote: an object with push/pull/fill/gc and
    ``fetcher_for(store)``."""
    global _tier
    _tier = tier


def tier():
    if _tier is None:
        raise Unsupported("remote support is not installed (pip install 'blockstore[remote]')")
    return _tier


def install_fetcher(store) -> None:
    """At open: the remote tier's block fetcher for absent blocks, if the tier is
    there and the pool has none yet (one pool per store per process).  It is
    made on its first use (``_FetcherOnUse``): most opens never read an absent
    block, and the tier's client modules cost milliseconds to import."""
    if _tier is not None and store.env.pool.fetcher is None:
        store.set_block_fetcher(_FetcherOnUse(_tier, store))


class _FetcherOnUse:
    """The tier's fetcher (pool/lazy.py's BlockFetcher), made when first used."""

    def __init__(self, tier_, store):
        self._tier, self._store, self._made = tier_, store, None

    def _fetcher(self):
        if self._made is None:
            self._made = self._tier.fetcher_for(self._store)
        return self._made

    def fetch(self, wants):
        return self._fetcher().fetch(wants)

    def __getattr__(self, name):          # timeout and anything else the pool asks
        return getattr(self._fetcher(), name)


def parse_url(url: str) -> tuple[str, str]:
    """s3://BUCKET[/PREFIX] -> (bucket, prefix without slashes at the ends)."""
    m = _URL.fullmatch(url or "")
    if not m:
        raise InvalidInput(f"remote URL {url!r} is not s3://BUCKET/PREFIX (bucket: 3-63 "
                           f"characters of a-z 0-9 . -)")
    return m.group(1), (m.group(2) or "").strip("/")


def load(store_path: str) -> dict:
    try:
        with open(os.path.join(store_path, FILE), encoding="utf-8") as f:
            import json
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise InvalidInput(f"{FILE} is not valid JSON: {exc}", path=store_path) from None
    return data if isinstance(data, dict) else {}


def _save(store_path: str, data: dict) -> None:
    path = os.path.join(store_path, FILE)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            import json
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def add(store_path: str, name: str, url: str, endpoint: str | None = None) -> dict:
    if not _NAME.fullmatch(name or ""):
        raise InvalidInput(f"invalid remote name {name!r}: 1-64 of letters, digits and ._-")
    parse_url(url)
    if endpoint is not None and not re.fullmatch(r"https?://[^\s/]+(/.*)?", endpoint):
        raise InvalidInput(f"endpoint {endpoint!r} is not an http(s) URL")
    data = load(store_path)
    if name in data:
        raise AlreadyExists(f"a remote named {name!r} already exists (blockstore remote rm it first)")
    data[name] = {"url": url, "endpoint": endpoint}
    _save(store_path, data)
    return data[name]


def remove(store_path: str, name: str) -> None:
    data = load(store_path)
    if name not in data:
        raise NotFound(f"no remote named {name!r}")
    del data[name]
    _save(store_path, data)


def get(store_path: str, name: str | None) -> tuple[str, dict]:
    """(name, config) of remote ``name``, or of the only remote when None."""
    data = load(store_path)
    if name is None:
        if len(data) != 1:
            raise InvalidInput("name the remote (--remote NAME): "
                               + ("none is set up (blockstore remote add)" if not data
                                  else f"there are {len(data)}"))
        name = next(iter(data))
    if name not in data:
        raise NotFound(f"no remote named {name!r} (blockstore remote ls)")
    return name, data[name]
