"""pyfuse3 ``Operations`` over blockstore trees: translation only.

Inode numbers.  A mount is served by servers (``servers.py``): index 0 is the
mounted tree, 1.. are its mount specs (volumes: TreeServer; binds and tmpfs:
HostServer).  The FUSE inode of (server k, local inode i) is ``i`` for k = 0
(so st_ino inside the tree is the tree's own inode number) and
``k << 48 | i`` otherwise; ``_redirect`` maps the directory a spec is
mounted on, (k, i), to the server whose root appears there.  That pair of
tables is the whole translation; no storage logic lives here.

Concurrency.  Requests run as trio tasks.  Calls into a blockstore tree run
inline on the trio thread, which owns the mount's batch
(``committer.Batcher``), so each sees the changes of the uncommitted batch
and no request pays a thread hand-off (see ``committer.py``).  Exception: a data
read that would wait for the disk (``RWF_NOWAIT`` says so) runs its I/O in
a worker thread, so a slow read does not stall other requests: the whole
read in its own read transaction while the mount is clean, else mapped in
the batch here and read there under a read transaction that keeps its
blocks from reuse (``TreeView.read_later``).  Host I/O of bind/tmpfs mounts runs in
trio worker threads (metadata on the trio thread).

Write-behind.  One FUSE write request at a time is in flight per writer,
and before each one the kernel asks for the file's security.capability
xattr (to drop privileges on write), so a writer's requests alternate
getxattr, write, getxattr, write.  A write into an open batch is answered
at once and held back (``_behind``); the writes that continue it (same
handle, next offset) join it, up to ``HOLD_BYTES``, and are stored as one
vectored store call (``TreeView.write_at`` with a list of pieces: one
extent update and no copy for all of them, instead of a store call per
1 MiB request).  A full run is stored right after the reply to the next
getxattr, i.e. while the writer's kernel copies its next request into the
page cache, instead of before the reply.  Every
other request (and a write elsewhere) stores the held writes first
(``_translate``), and so does
every commit (``Batcher.before_commit``: the age bound, fsync, a commit
requested by another process, unmount), so nothing can observe the
difference except error timing: a held write that fails (ENOSPC) fails the
next write, flush (close) or fsync of every handle open on its file, as a
kernel page cache reports writeback errors to each open file (in no-open
mode: the file's next write or fsync), and the kernel's cache of the file
is dropped.  Not held back: appends (with handles), writes
while no batch is open (the first change of a batch, which arms the age
bound) or while commits fail, host files.  ``write_behind=False`` turns it
off.  Why: a writer's requests are serial, so storing a write while the
writer's kernel copies the next one overlaps the two instead of adding
them (figures: docs/BENCHMARKS.md, "FUSE").

Commits (group commit, see ``committer.py``).  Changes join a batch that is
committed at fsync/fsyncdir (the reply waits for it), 50 ms after its first
change, at 128 MiB / 1024 changes, at unmount and when another process asks
(SIGUSR1 from ``Store.commit``/``snapshot``/``export_dir``/``diff`` via
``blockstore.api.writers``: such a commit captures every write that
completed).  Other processes see changes once committed (within 50 ms).

Caches.  The kernel answers what it already knows.  Snapshots never
change: entries and attributes have no practical timeout
(``SNAPSHOT_TIMEOUT``).  A writable tree changes only through this mount,
which the kernel sees (it drops what its own requests change), or behind
it: another process writing the clone, another mount sharing a volume,
the same volume shown at two places of this mount.  The watcher
(``watch.py``) drops the kernel's attributes, entries, pages and
directory listings of what changed within ~0.1 s of the commit (own
commits included when a tree is shown at two places), so trees get long
timeouts (``TREE_TIMEOUT``; ``attr_timeout`` overrides it).  Directory
listings are kept across opens (FOPEN_CACHE_DIR) and file pages too
(``keep_cache``).  When every server is a tree, ``opendir`` answers
ENOSYS, after which the kernel sends no opendir/releasedir at all and
keeps every listing (and ``readdir`` gets the directory's inode as its
handle); ``open`` does the same (see "Open files": a warm read costs no
request).  In a mount that keeps handles (host directories), a handle that
cannot write asks for no FLUSH at close (``noflush``).  Host
directories (bind, tmpfs) change without notice: 1 s timeouts, listings
read at every open, pages dropped at every open.

The kernel's own guess (FUSE "auto_inval_data": drop a file's whole page
cache whenever a size or mtime it fetches differs from the one it had) is
turned off (``enable_auto_inval_data``, patched pyfuse3): in write-through
mode every write makes the kernel refetch the attributes, which carry the
write's new mtime, so under that rule each write would drop every cached
page of the file and the next write would allocate its pages again
(several times the writer's kernel time for an overwrite;
docs/BENCHMARKS.md).  The watcher covers what that rule covered
for trees; for the servers it cannot watch (host dirs) the adapter does
the kernel's comparison itself
(``_note_content``): a regular file whose mtime or size differs from the
last one answered has its pages dropped, as the kernel's rule would.

Open files (no-open mode).  When every server is a tree and all of them can
write or none can, ``open`` and ``create`` answer ENOSYS: the kernel then
sends no OPEN, CREATE, FLUSH or RELEASE for any file of the mount, makes
files with ``mknod`` and keeps their pages (FOPEN_KEEP_CACHE); ``read``,
``write``, ``fsync`` and ``lseek`` get the file's inode as their handle.
What a handle was for:

* which files are open (unlinking or renaming over an open file keeps its
  inode until the last close): the kernel's lookup count of the inode
  instead (``_nlookup``: +1 per entry reply, -n per FORGET).  The kernel
  holds a reference while a file is open, so a file it holds counts as
  open (``TreeView.file_opened``) and its FORGET as the last close
  (``file_closed``, which frees an unlinked file).  Cost: a file the kernel
  merely caches is kept, if unlinked meanwhile, until the kernel forgets it
  (at once for an unlinked inode no one has open).  As with handles, the
  first reference and the last are logged in an open batch (``mark``), so
  a replayed batch sees the files open at each of its changes.
* O_TRUNC: the kernel truncates by ``setattr`` (``enable_atomic_o_trunc``
  off; with it the kernel would drop the truncation of an open it never
  sends).
* O_APPEND: the kernel writes at its own idea of the end of file, which is
  exact for writers of this mount (it serialises them) and fresh for
  changes behind it once the watcher invalidated the attributes.
* errors of a write answered before it was stored: reported to the next
  write or fsync of the file (close reports none, as on a local file
  system), logged if the file is forgotten first.
A mount that serves a host directory keeps handles (a host file is read
through an open host fd), and so does one mixing read-only and writable
trees (only an open can refuse writing into the read-only one).

Errors are turned into errno in one place: ``errno.to_errno``.
"""
from __future__ import annotations

import errno
import functools
import itertools
import logging
import os
import stat
from bisect import bisect_right

import pyfuse3
import trio

from ..api.mounts import HostDir, ReadOnlyView
from .committer import Batcher
from .errno import to_errno
from .servers import HostServer, TreeServer
from .watch import Watcher, quietly

log = logging.getLogger("blockstore.fuse")

SHIFT = 48
LOCAL = (1 << SHIFT) - 1
# Entry/attribute timeouts (seconds).  A snapshot never changes: the kernel
# keeps what it learnt for as long as it likes (about 136 years).  A tree that can
# change is invalidated on every path that changes it behind the kernel (own
# requests by the kernel itself, other writers by the watcher), so the
# timeout only bounds what the watcher's documented race can leave stale.
# Host directories change without notice: the kernel asks again after 1 s.
SNAPSHOT_TIMEOUT = float(1 << 32)
TREE_TIMEOUT = 3600.0
HOST_TIMEOUT = 1.0
# Entries kept for reuse (Adapter._entries): ~400 bytes each with their stat.
ENTRIES_KEPT = 16384


# Requests that need not wait for the write held back (see "Write-behind"):
# a write does not change extended attributes.
_NO_DRAIN = frozenset({"getxattr", "write"})      # write: stores them itself

# Held back writes are stored in one store call once they hold this much: one
# catalog, inode and extent update per HOLD_BYTES instead of per request; the
# bytes wait in memory at most until the batch's commit (50 ms).
HOLD_BYTES = 8 << 20


class _Held:
    """Writes answered but not stored yet: ``pieces`` at ``off`` of handle ``fh``."""

    __slots__ = ("fh", "h", "off", "pieces", "n")

    def __init__(self, fh, h, off, buf):
        self.fh, self.h, self.off, self.pieces, self.n = fh, h, off, [buf], len(buf)


def _translate(fn):
    """Run an operation; any exception becomes a FUSEError with its errno.
    First the write held back is stored, except for ``_NO_DRAIN`` requests."""
    drains = fn.__name__ not in _NO_DRAIN

    @functools.wraps(fn)
    async def op(self, *args):
        try:
            if drains and self._behind is not None:
                self._drain()
            return await fn(self, *args)
        except pyfuse3.FUSEError:
            raise
        except BaseException as exc:           # noqa: BLE001 -- every error is answered
            if isinstance(exc, (KeyboardInterrupt, SystemExit, trio.Cancelled)):
                raise
            raise pyfuse3.FUSEError(to_errno(exc)) from None
    return op


def _blocking(fn, *args, **kw):
    return trio.to_thread.run_sync(functools.partial(fn, *args, **kw))


class Handle:
    """One open file: its server, local inode, the server's handle (a host fd or None)."""

    __slots__ = ("k", "ino", "srv", "write", "append", "srv_handle")

    def __init__(self, k, ino, srv, write, append):
        self.k, self.ino, self.srv, self.write, self.append = k, ino, srv, write, append
        self.srv_handle = None


class Adapter(pyfuse3.Operations):
    supports_dot_lookup = False
    enable_writeback_cache = False
    enable_acl = False
    enable_auto_inval_data = False          # see "Caches"

    def __init__(self, store, tfs, *, readonly: bool = False,
                 attr_timeout: float | None = None,
                 batcher: Batcher | None = None, write_behind: bool = True,
                 no_open: bool | None = None):
        super().__init__()
        self.store = store
        # The group-commit batch; its run() task must be started with the server.
        self.batcher = batcher if batcher is not None else Batcher(
            store, save_state=self._save_open_state, restore_state=self._restore_open_state)
        self.batcher.before_commit = self._drain
        # Write-behind: the writes answered but not stored yet (_Held); the
        # errors of such writes by file handle; the nursery that runs a drain after a
        # reply (set by the daemon: without it nothing is held back).
        self.write_behind = write_behind
        self._behind: _Held | None = None
        self._failed: dict[int, BaseException] = {}
        self.nursery = None
        self.tfs = tfs
        self.readonly = readonly or tfs.readonly
        tree_timeout = TREE_TIMEOUT if attr_timeout is None else float(attr_timeout)
        self.servers: list = [TreeServer(tfs, self.readonly)]
        self._redirect: dict[tuple[int, int], int] = {}
        self._fh = itertools.count(1)
        self._handles: dict[int, Handle] = {}
        self._dirs: dict[int, list] = {}
        self._attach_mounts()
        # Trees that can change underneath (not snapshots): the kernel's caches of them
        # are invalidated by the watcher (its run() task is started with the server).
        watched: dict[str, list[int]] = {}
        for k, s in enumerate(self.servers):
            if isinstance(s, TreeServer) and not s.tfs.readonly:
                watched.setdefault(s.tfs.name, []).append(k)
        self.watcher = Watcher(store, watched, self._join) if watched else None
        # Servers whose pages, listings, entries and attributes the kernel keeps
        # (see "Caches"): every blockstore tree.  Host directories keep the
        # kernel's rule (short timeouts, pages dropped at open).
        self._keep_cache = {k for k, s in enumerate(self.servers) if isinstance(s, TreeServer)}
        self.timeouts = [(SNAPSHOT_TIMEOUT if s.tfs.readonly else tree_timeout)
                         if isinstance(s, TreeServer) else min(HOST_TIMEOUT, tree_timeout)
                         for s in self.servers]
        # (mtime_ns, size) last answered for regular files of the other servers.
        self._content: dict[int, tuple[int, int]] = {}
        # The last entry built per FUSE inode of a blockstore tree, with the stat it
        # came from: a stat remembered by the read view (TreeView._stats) gives the
        # same object again, and its entry is reused (held, so never a reused id).
        self._entries: dict[int, tuple[object, pyfuse3.EntryAttributes]] = {}
        # No opendir (see "Caches"): when every server is a tree, opendir answers
        # ENOSYS and the kernel keeps every listing without asking; readdir then
        # gets the directory's inode as its handle.
        self.no_opendir = all(isinstance(s, TreeServer) for s in self.servers)
        # No open either (see "Open files") when every server is a tree and all of
        # them can write or none can (a read-only volume in a writable tree must
        # refuse an open for writing, which only an open request can).
        can_no_open = self.no_opendir and len({s.readonly for s in self.servers}) == 1
        self.no_open = can_no_open if no_open is None else bool(no_open) and can_no_open
        # open(O_TRUNC) then reaches setattr (patched pyfuse3; the kernel would
        # drop the truncation of an atomic O_TRUNC open that open never sees).
        self.enable_atomic_o_trunc = not self.no_open
        # No-open mode, writable trees: the kernel's lookup count per FUSE inode of
        # a regular file; a file the kernel holds is open for unlink and rename.
        self._nlookup: dict[int, int] | None = (
            {} if self.no_open and not self.servers[0].readonly else None)
        self._listings: dict[int, list] = {}        # no-opendir: dir inode -> listing
        # Symlink targets in the kernel's page cache: a tree's symlink never
        # changes its target (host paths can: only without host servers).
        self.enable_cache_symlinks = self.no_opendir
        if self.watcher is not None and all(len(ks) == 1 for ks in watched.values()):
            # Own commits need no invalidation: the kernel saw each change.  A
            # tree shown at two places is the exception: a change made through
            # one place is news at the other, so the watcher diffs own commits too.
            self.batcher.on_commit = self.watcher.own_commit

    # -- translation tables ------------------------------------------------------------
    def _attach_mounts(self) -> None:
        """One server per mount spec, attached at its target (parents before children)."""
        for spec in sorted(self.tfs.mounts.specs, key=lambda m: len(m["target"])):
            srv, _ = self.tfs.mounts.route(spec["target"])
            ro = self.readonly or bool(spec.get("readonly"))
            if isinstance(srv, HostDir):                        # bind, tmpfs
                server = HostServer(srv.root, ro or srv.readonly)
            elif isinstance(srv, ReadOnlyView):                 # a volume mounted read-only
                server = TreeServer(srv.inner, True)
            else:
                server = TreeServer(srv, ro)
            k, ino = 0, 1
            try:
                for part in spec["target"].strip("/").split("/"):
                    st = self.servers[k].lookup(ino, os.fsencode(part))
                    k, ino = self._follow(k, st.st_ino)
            except OSError as exc:
                log.warning("mount point %s is not in the tree (%s); not attached", spec["target"], exc)
                continue
            self.servers.append(server)
            self._redirect[(k, ino)] = len(self.servers) - 1

    def _follow(self, k: int, ino: int) -> tuple[int, int]:
        m = self._redirect.get((k, ino))
        return (m, self.servers[m].root()) if m is not None else (k, ino)

    def served_trees(self) -> list[str]:
        """Names of the blockstore trees this mount serves (the tree and its volumes)."""
        return [s.tfs.name for s in self.servers if isinstance(s, TreeServer)]

    def writable_trees(self) -> list[str]:
        """Names of the blockstore trees this mount may change (for writer registration)."""
        return [s.tfs.name for s in self.servers if isinstance(s, TreeServer) and not s.readonly]

    def _save_open_state(self):
        return [(s, s.open_state()) for s in self.servers if isinstance(s, TreeServer)]

    def _restore_open_state(self, state) -> None:
        for srv, st in state or ():
            srv.set_open_state(st)

    # -- where calls run ---------------------------------------------------------------------
    async def _read(self, fn, *args):
        """A listing by server method ``fn``: inline for trees, a worker thread
        for host dirs.  (Metadata reads call the server inline.)"""
        if fn.__self__.inline:
            return fn(*args)
        return await _blocking(fn, *args)

    async def _change(self, fn, *args, nbytes: int = 0, redo=None, **kw):
        """A change by server method ``fn``: one step of the batch for trees, a
        worker thread for host dirs."""
        if fn.__self__.inline:
            return await self.batcher.write(fn, *args, nbytes=nbytes, redo=redo, **kw)
        return await _blocking(fn, *args, **kw)

    def _split(self, fino: int) -> tuple[int, int, object]:
        k = fino >> SHIFT
        try:
            return k, fino & LOCAL, self.servers[k]
        except IndexError:
            raise pyfuse3.FUSEError(errno.ESTALE) from None

    @staticmethod
    def _join(k: int, ino: int) -> int:
        return ino if k == 0 else (k << SHIFT) | ino

    async def _entry_of(self, k: int, st) -> pyfuse3.EntryAttributes:
        k2, ino = self._follow(k, st.st_ino)
        if k2 != k:                         # a mount point: show the mounted root
            k, st = k2, self.servers[k2].getattr(ino)
        return self._entry(k, ino, st)

    def _entry(self, k: int, ino: int, st) -> pyfuse3.EntryAttributes:
        fino = self._join(k, ino)
        keep = k in self._keep_cache
        if keep:
            hit = self._entries.get(fino)
            if hit is not None and hit[0] is st:
                return hit[1]
        e = pyfuse3.EntryAttributes()
        e.st_ino = fino
        e.generation = 0
        e.entry_timeout = e.attr_timeout = self.timeouts[k]
        e.st_mode = st.st_mode
        e.st_nlink = st.st_nlink
        e.st_uid = st.st_uid
        e.st_gid = st.st_gid
        e.st_rdev = st.st_rdev
        e.st_size = st.st_size
        e.st_blksize = 1 << 20
        e.st_blocks = st.st_blocks
        e.st_atime_ns = st.st_atime_ns
        e.st_mtime_ns = st.st_mtime_ns
        e.st_ctime_ns = st.st_ctime_ns
        if keep:
            if len(self._entries) >= ENTRIES_KEPT:
                self._entries.clear()
            self._entries[fino] = (st, e)
        elif stat.S_ISREG(st.st_mode):
            self._note_content(e.st_ino, st)
        return e

    def _note_content(self, fino: int, st) -> None:
        """What auto_inval_data did, for a file the watcher does not cover: its
        pages are dropped when its mtime or size changed since the last answer
        (own writes through the mount included, as the kernel did)."""
        now = (st.st_mtime_ns, st.st_size)
        before = self._content.get(fino)
        self._content[fino] = now
        if before is not None and before != now:
            self._invalidate_soon(fino)

    def _invalidate_soon(self, fino: int) -> None:
        """Drop the kernel's pages of FUSE inode ``fino`` from a worker thread
        (an invalidation may wait for a request in flight, such as the one
        being answered); nothing without a nursery (handler-level tests)."""
        if self.nursery is not None:
            self.nursery.start_soon(functools.partial(
                trio.to_thread.run_sync, quietly, pyfuse3.invalidate_inode, fino, False))

    def _same_server(self, a: int, b: int) -> None:
        if a != b:
            raise pyfuse3.FUSEError(errno.EXDEV)

    async def _not_mount_point(self, k: int, dir_ino: int, name: bytes) -> None:
        """EBUSY for removing or renaming the directory a spec is mounted on."""
        if not self._redirect:
            return
        try:
            st = self.servers[k].lookup(dir_ino, name)
        except OSError:
            return
        if (k, st.st_ino) in self._redirect:
            raise pyfuse3.FUSEError(errno.EBUSY)

    # -- metadata ------------------------------------------------------------------------
    @_translate
    async def lookup(self, parent_inode, name, ctx=None):
        k, d, srv = self._split(parent_inode)
        try:
            st = srv.lookup(d, name)
        except FileNotFoundError:
            if k not in self._keep_cache:
                raise
            # A negative entry the kernel keeps (inode 0 with a timeout): a
            # program probing for absent files asks once; a name created behind
            # the kernel is dropped by the watcher (invalidate_entry).
            e = pyfuse3.EntryAttributes()
            e.st_ino = 0
            e.entry_timeout = self.timeouts[k]
            return e
        return self._looked_up(await self._entry_of(k, st))

    @_translate
    async def getattr(self, inode, ctx=None):
        k, i, srv = self._split(inode)
        return await self._entry_of(k, srv.getattr(i))

    @_translate
    async def setattr(self, inode, attr, fields, fh, ctx):
        k, i, srv = self._split(inode)
        kw = {}
        if fields.update_size:
            kw["size"] = attr.st_size
        if fields.update_mode:
            kw["mode"] = attr.st_mode
        if fields.update_uid:
            kw["uid"] = attr.st_uid
        if fields.update_gid:
            kw["gid"] = attr.st_gid
        if fields.update_atime:
            kw["atime"] = attr.st_atime_ns
        if fields.update_mtime:
            kw["mtime"] = attr.st_mtime_ns
        st = await self._change(srv.setattr, i, **kw)
        return await self._entry_of(k, st)

    @_translate
    async def readlink(self, inode, ctx):
        k, i, srv = self._split(inode)
        return srv.readlink(i)

    @_translate
    async def opendir(self, inode, ctx):
        if self.no_opendir:
            raise pyfuse3.FUSEError(errno.ENOSYS)
        k, _, _ = self._split(inode)
        fh = next(self._fh)
        self._dirs[fh] = [inode, None]
        # Trees: the kernel keeps the listing (FOPEN_CACHE_DIR) across opens until
        # it changes (its own changes, or the watcher's invalidate_inode).
        cache = k in self._keep_cache
        return pyfuse3.FileInfo(fh=fh, keep_cache=cache, cache_readdir=cache)

    @_translate
    async def readdir(self, fh, start_id, token):
        """Entries after offset start_id.  The listing is read once per open
        directory (at offset 0) and served from memory afterwards, so a large
        directory costs O(entries) per opendir, not per reply buffer."""
        if self.no_opendir:                 # fh is the directory's inode
            if len(self._listings) > 1024:      # listings abandoned part-way
                self._listings.clear()
            state = self._listings.setdefault(fh, [fh, None])
        else:
            state = self._dirs[fh]
        inode, listing = state
        k, d, srv = self._split(inode)
        if listing is None or start_id == 0:
            # A continuation without the listing (no-opendir mode drops it at the
            # end; the kernel then asks once more past the last entry) reads only
            # the entries after its offset: one seek, not the whole directory.
            listing = await self._read(srv.readdir, d, start_id)
            state[1] = listing
        pos = bisect_right(listing, start_id, key=lambda e: e[0])
        rest = listing[pos:]
        # The stats of up to a reply's worth of entries per call.
        for i in range(0, len(rest), 256):
            chunk = rest[i:i + 256]
            stats = await self._read(srv.lookup_many, d, [name for _, name in chunk])
            for (idx, name), st in zip(chunk, stats):
                if st is None:
                    continue                # removed since the listing was read
                e = await self._entry_of(k, st)
                if not pyfuse3.readdir_reply(token, name, e, idx):
                    return
                self._looked_up(e)          # readdirplus: the kernel holds the entry
        if self.no_opendir:
            self._listings.pop(fh, None)    # the end was reached

    @_translate
    async def releasedir(self, fh):
        self._dirs.pop(fh, None)

    @_translate
    async def fsyncdir(self, fh, datasync):
        inode = fh if self.no_opendir else self._dirs[fh][0]
        if isinstance(self._split(inode)[2], TreeServer):
            self.batcher.sync()

    @_translate
    async def statfs(self, ctx):
        df = self.store.df()
        host = os.statvfs(self.store.path)
        bs = df.block_size
        avail = df.free_bytes + host.f_bavail * host.f_frsize
        s = pyfuse3.StatvfsData()
        s.f_bsize = bs
        s.f_frsize = bs
        s.f_blocks = (df.used_bytes + df.pending_bytes + avail) // bs
        s.f_bfree = avail // bs
        s.f_bavail = avail // bs
        s.f_files = 1 << 48
        s.f_ffree = (1 << 48) - df.trees
        s.f_favail = s.f_ffree
        s.f_namemax = 255
        return s

    async def access(self, inode, mode, ctx):
        return True        # default_permissions: the kernel checks mode bits itself

    # -- namespace -------------------------------------------------------------------------
    async def _create(self, parent_inode, name, mode, ctx, rdev=0):
        k, d, srv = self._split(parent_inode)
        st = await self._change(srv.create, d, name, mode, ctx.uid, ctx.gid, rdev)
        return k, st

    @_translate
    async def mknod(self, parent_inode, name, mode, rdev, ctx):
        k, st = await self._create(parent_inode, name, mode, ctx, rdev)
        return self._looked_up(await self._entry_of(k, st))

    @_translate
    async def mkdir(self, parent_inode, name, mode, ctx):
        k, st = await self._create(parent_inode, name, stat.S_IFDIR | (mode & 0o7777), ctx)
        return await self._entry_of(k, st)

    @_translate
    async def symlink(self, parent_inode, name, target, ctx):
        k, d, srv = self._split(parent_inode)
        st = await self._change(srv.symlink, d, name, target, ctx.uid, ctx.gid)
        return await self._entry_of(k, st)

    @_translate
    async def link(self, inode, new_parent_inode, new_name, ctx):
        k, i, srv = self._split(inode)
        k2, d, _ = self._split(new_parent_inode)
        self._same_server(k, k2)
        st = await self._change(srv.link, i, d, new_name)
        return self._looked_up(await self._entry_of(k, st))

    @_translate
    async def unlink(self, parent_inode, name, ctx):
        k, d, srv = self._split(parent_inode)
        await self._change(srv.unlink, d, name)

    @_translate
    async def rmdir(self, parent_inode, name, ctx):
        k, d, srv = self._split(parent_inode)
        await self._not_mount_point(k, d, name)
        await self._change(srv.rmdir, d, name)

    @_translate
    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        k, sd, srv = self._split(parent_inode_old)
        k2, dd, _ = self._split(parent_inode_new)
        self._same_server(k, k2)
        await self._not_mount_point(k, sd, name_old)
        await self._not_mount_point(k, dd, name_new)
        await self._change(srv.rename, sd, name_old, dd, name_new, flags)

    # -- files -----------------------------------------------------------------------------
    def _new_handle(self, inode, flags) -> tuple[int, Handle]:
        k, i, srv = self._split(inode)
        acc = flags & os.O_ACCMODE
        return k, Handle(k, i, srv, acc != os.O_RDONLY, bool(flags & os.O_APPEND))

    def _file_info(self, fh: int) -> pyfuse3.FileInfo:
        """Pages kept across opens for trees; no FLUSH at the close of a handle
        that cannot write (flush only reports write errors)."""
        h = self._handles[fh]
        return pyfuse3.FileInfo(fh=fh, keep_cache=h.k in self._keep_cache, noflush=not h.write)

    def _handle(self, fh) -> Handle:
        """The open file ``fh``; in no-open mode ``fh`` is the file's inode."""
        if self.no_open:
            k, i, srv = self._split(fh)
            return Handle(k, i, srv, False, False)
        return self._handles[fh]

    @_translate
    async def open(self, inode, flags, ctx):
        if self.no_open:
            raise pyfuse3.FUSEError(errno.ENOSYS)
        k, h = self._new_handle(inode, flags)
        if h.write and self.servers[k].readonly:
            raise pyfuse3.FUSEError(errno.EROFS)
        srvh = await self._open_file(h)
        h.srv_handle = srvh
        fh = next(self._fh)
        self._handles[fh] = h
        if flags & os.O_TRUNC and h.write:
            await self._change(h.srv.setattr, h.ino, size=0)
        return self._file_info(fh)

    @_translate
    async def create(self, parent_inode, name, mode, flags, ctx):
        if self.no_open:
            # The kernel then makes files with mknod and opens them without a
            # request: no handle, hence no FLUSH or RELEASE at their close.
            raise pyfuse3.FUSEError(errno.ENOSYS)
        k, st = await self._create(parent_inode, name, stat.S_IFREG | (mode & 0o7777), ctx)
        e = await self._entry_of(k, st)
        _, h = self._new_handle(e.st_ino, flags)
        h.srv_handle = await self._open_file(h)
        fh = next(self._fh)
        self._handles[fh] = h
        return self._file_info(fh), e

    async def _open_file(self, h: Handle):
        if isinstance(h.srv, TreeServer):
            return self.batcher.mark(h.srv.open, h.ino, h.write)
        return await _blocking(h.srv.open, h.ino, h.write)

    @_translate
    async def read(self, fh, off, size):
        h = self._handle(fh)
        if not isinstance(h.srv, TreeServer):
            return await _blocking(h.srv.read, h.ino, h.srv_handle, off, size)
        try:
            return h.srv.read(h.ino, h.srv_handle, off, size, cached_only=True)
        except BlockingIOError:
            pass
        if self.batcher.clean:
            # Nothing uncommitted, so a fresh read transaction on a worker sees
            # what the batch would; changes made meanwhile are concurrent with
            # this read (either view is a valid answer).
            return await _blocking(h.srv.read, h.ino, h.srv_handle, off, size)
        # Uncommitted changes: map the read in the batch here, do the I/O there.
        return await _blocking(h.srv.read_later(h.ino, h.srv_handle, off, size))

    @_translate
    async def write(self, fh, off, buf):
        held = self._behind
        if held is not None:
            if (held.fh == fh and off == held.off + held.n and held.n + len(buf) <= HOLD_BYTES
                    and fh not in self._failed):
                held.pieces.append(buf)         # continues the held run: stored with it
                held.n += len(buf)
                return len(buf)
            self._drain()
        h = self._handle(fh)
        self._raise_failed(fh)
        if h.append:       # size and write in one step: no other change in between
            return await self._change(h.srv.append, h.ino, h.srv_handle, buf, nbytes=len(buf))
        if (self.write_behind and self.nursery is not None and isinstance(h.srv, TreeServer)
                and not h.srv.readonly and not self.batcher.clean and not self.batcher.failing):
            self._behind = _Held(fh, h, off, buf)   # stored once full, or before anything else
            return len(buf)
        return await self._change(h.srv.write, h.ino, h.srv_handle, off, buf, nbytes=len(buf))

    def _drain(self) -> None:
        """Store the write held back, if any (into the open batch); its error is
        kept for its file handle (``_raise_failed``).  Never raises."""
        held, self._behind = self._behind, None
        if held is None:
            return
        fh, h, off = held.fh, held.h, held.off
        data = held.pieces if len(held.pieces) > 1 else held.pieces[0]
        try:
            self.batcher.write_now(h.srv.write, h.ino, h.srv_handle, off, data, nbytes=held.n)
        except Exception as exc:                   # noqa: BLE001 -- answered later
            log.warning("write of %d bytes at %d (answered already) failed: %s; "
                        "reported to the file's next write, flush or fsync", held.n, off, exc)
            # Every open handle of the file learns it once (as Linux reports a
            # writeback error to each open file description).
            for other, oh in self._handles.items():
                if oh.k == h.k and oh.ino == h.ino:
                    self._failed[other] = exc
            self._failed[fh] = exc
            self._invalidate_soon(self._join(h.k, h.ino))   # the kernel's cache took it

    async def _drain_soon(self) -> None:
        held = self._behind
        if held is not None and held.n >= HOLD_BYTES:     # not drained meanwhile
            self._drain()

    def _raise_failed(self, fh) -> None:
        exc = self._failed.pop(fh, None)
        if exc is not None:
            raise exc

    @_translate
    async def lseek(self, fh, off, whence):
        """SEEK_DATA / SEEK_HOLE (the kernel handles the other whences itself).
        Served only with the patched pyfuse3 (third_party/pyfuse3); without it
        the kernel answers "all data" for every file."""
        h = self._handle(fh)
        if isinstance(h.srv, TreeServer):
            return h.srv.seek(h.ino, h.srv_handle, off, whence)
        return await _blocking(h.srv.seek, h.ino, h.srv_handle, off, whence)

    @_translate
    async def flush(self, fh):
        # close does not commit: fsync does (or the 50 ms bound); it reports the
        # failure of a write answered before it was stored.
        if self.no_open:
            # ENOSYS makes the kernel stop sending FLUSH at every close (no-open
            # mode has no handle that could ask for noflush); write errors go
            # to the file's next write or fsync instead (see "Open files").
            raise pyfuse3.FUSEError(errno.ENOSYS)
        self._raise_failed(fh)

    @_translate
    async def fsync(self, fh, datasync):
        h = self._handle(fh)
        self._raise_failed(fh)
        if isinstance(h.srv, HostServer):
            await _blocking(h.srv.fsync, h.srv_handle)
        else:
            self.batcher.sync()

    @_translate
    async def release(self, fh):
        h = self._handles.pop(fh)
        exc = self._failed.pop(fh, None)
        if exc is not None:     # no flush came (the kernel skips it for some closes)
            log.error("a write answered before it was stored failed and was never reported: %s", exc)
        if isinstance(h.srv, TreeServer):
            # May free an inode unlinked while open.
            self.batcher.mark(h.srv.release, h.ino, h.srv_handle)
        else:
            await _blocking(h.srv.release, h.ino, h.srv_handle)

    # -- extended attributes -----------------------------------------------------------------
    @_translate
    async def getxattr(self, inode, name, ctx):
        k, i, srv = self._split(inode)
        held = self._behind
        if held is not None and held.n >= HOLD_BYTES and self.nursery is not None:
            self.nursery.start_soon(self._drain_soon)      # runs after this reply
        return srv.getxattr(i, name)

    @_translate
    async def listxattr(self, inode, ctx):
        k, i, srv = self._split(inode)
        return srv.listxattr(i)

    @_translate
    async def setxattr(self, inode, name, value, ctx):
        k, i, srv = self._split(inode)
        await self._change(srv.setxattr, i, name, value)

    @_translate
    async def removexattr(self, inode, name, ctx):
        k, i, srv = self._split(inode)
        # A change that fails aborts the batch and replays it (committer.py), a cost
        # of the batch's length: the common failure, no such attribute (cp -a removes
        # every directory's default ACL), is answered by a read first.
        srv.getxattr(i, name)
        await self._change(srv.removexattr, i, name)

    async def forget(self, inode_list):
        # Per-inode state: ``_content`` (a forgotten inode has no pages) and, in
        # no-open mode, the lookup counts (see "Open files").
        if self._behind is not None:
            self._drain()                   # before its file can be freed
        for fino, n in inode_list:
            self._content.pop(fino, None)
            if self._nlookup is not None and fino in self._nlookup:
                left = self._nlookup[fino] - n
                if left > 0:
                    self._nlookup[fino] = left
                else:
                    del self._nlookup[fino]
                    self._closed(fino)

    # -- open files in no-open mode ----------------------------------------------------------
    def _looked_up(self, e: pyfuse3.EntryAttributes) -> pyfuse3.EntryAttributes:
        """Count an entry reply: the kernel holds one more reference to the inode
        (no-open mode, regular files).  The first makes the file open for the tree."""
        nl = self._nlookup
        if nl is not None and stat.S_ISREG(e.st_mode):
            fino = e.st_ino
            n = nl.get(fino, 0)
            nl[fino] = n + 1
            if n == 0:
                k, i, srv = self._split(fino)
                # Logged in an open batch: a replay must see which files were
                # open at each of its changes (a write into an unlinked file).
                self.batcher.mark(srv.open, i, False)
        return e

    def _closed(self, fino: int) -> None:
        """The kernel forgot a file (its last reference: no open file, no cached
        inode): one user fewer for the tree, which frees it if it was unlinked."""
        exc = self._failed.pop(fino, None)
        if exc is not None:
            log.error("a write answered before it was stored failed and was never "
                      "reported: %s", exc)
        k, i, srv = self._split(fino)
        try:
            self.batcher.mark(srv.release, i, None)
        except Exception:                   # noqa: BLE001 -- forget has no reply
            log.exception("releasing inode %d", i)
