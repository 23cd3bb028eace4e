"""A strict, streaming reader of tar archives (one pass, never seeks back).

``tarfile`` in stream mode treats a bad header checksum or a truncated
header after the first member as the end of the archive and stops
silently.  ``Members`` records why the archive ended and refuses every end
but two: an end-of-archive block of zeros, or a clean end of input after
a member's complete data (layers written by older umoci have no
end-of-archive blocks, and not even the padding of the last member).
Memory: one member header at a time (tarfile's member list is cleared as
we go).  Errors are ``InvalidInput`` naming the last entry.

``Info`` is the TarInfo class every archive reader of this package uses
(layers, image archives, the format sniffer): it applies the header limits
of ``safety`` (long names, PAX records, sparse maps, numeric ranges)
before tarfile reads what a header announces, so a header costs bounded
memory and a bad one is refused with the entry named.
"""
from __future__ import annotations

import re
import tarfile
from decimal import Decimal, InvalidOperation

from ..errors import InvalidInput
from . import safety


def note_member(tf, name: str) -> None:
    """Remember ``name`` as the last member read from ``tf`` (errors name it)."""
    tf._bs_last = name


def last_member(tf) -> str | None:
    """The last member ``note_member`` recorded for ``tf``, or None."""
    return getattr(tf, "_bs_last", None)


def set_kind(tf, kind: str) -> None:
    """What ``tf``'s members are called in refusals ("layer entry" by default)."""
    tf._bs_kind = kind


def _where(tf) -> str:
    last = last_member(tf)
    return f"after {safety.show(last)}" if last is not None else "at the start of the archive"


def _refuse_here(tf, why: str) -> InvalidInput:
    """A refusal of the member whose headers are being read (its name is not known yet)."""
    kind = getattr(tf, "_bs_kind", "layer entry")
    return InvalidInput(f"refused {kind} {_where(tf)}: {why}")


def _int(v: bytes, no) -> int:
    if not re.fullmatch(rb"[0-9]{1,20}", v):
        raise no(f"bad number {safety.show(v[:40])} in the sparse map")
    return int(v)


def _pax_time(v: str) -> Decimal | None:
    try:
        d = Decimal(v)
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


def check_member(m: tarfile.TarInfo, kind: str = "layer entry") -> None:
    """The limits of ``safety`` on one parsed member (name, link, ids, times, sizes)."""
    def no(why):
        return safety.refuse(m.name, why, kind)
    if len(m.name.encode("utf-8", "surrogateescape")) > safety.PATH_MAX:
        raise no(f"name longer than {safety.PATH_MAX} bytes")
    if len(m.linkname.encode("utf-8", "surrogateescape")) > safety.PATH_MAX:
        raise no(f"link target longer than {safety.PATH_MAX} bytes")
    for field in ("uid", "gid", "devmajor", "devminor"):
        v = getattr(m, field)
        if not isinstance(v, int) or not 0 <= v <= safety.ID_MAX:
            raise no(f"{field} {v!r} out of range (0..{safety.ID_MAX})")
    for key in ("mtime", "atime"):
        raw = m.pax_headers.get(key)
        if raw is not None:
            t = _pax_time(raw)
            if t is None or abs(t) > safety.TIME_MAX:
                raise no(f"PAX {key} {safety.show(raw[:40])} is not a time in range")
    if not -safety.TIME_MAX <= m.mtime <= safety.TIME_MAX:
        raise no(f"mtime {m.mtime!r} out of range")
    if not isinstance(m.size, int) or m.size < 0 or m.size >= 1 << 63:
        raise no(f"size {m.size!r} out of range")
    if m.sparse is not None:
        if len(m.sparse) > safety.SPARSE_MAX:
            raise no(f"sparse map of more than {safety.SPARSE_MAX} regions")
        end = 0
        for off, n in m.sparse:             # empty regions (GNU tar writes some) are ignored
            if off < 0 or n < 0 or off + n > m.size or (n and off < end):
                raise no(f"sparse region ({off}, {n}) is not inside the file's "
                         f"{m.size} bytes after the region before it")
            end = max(end, off + n)


class Info(tarfile.TarInfo):
    """TarInfo with the header limits of ``safety`` (see the module docstring)."""

    @classmethod
    def fromtarfile(cls, tf):
        depth = getattr(tf, "_bs_depth", 0)
        if depth >= safety.EXT_MAX:
            raise _refuse_here(tf, f"more than {safety.EXT_MAX} extended headers for one entry")
        tf._bs_depth = depth + 1
        try:
            m = super().fromtarfile(tf)
        except tarfile.HeaderError as exc:
            tf._end_reason = exc
            raise
        finally:
            tf._bs_depth = depth
        if depth == 0:
            check_member(m, getattr(tf, "_bs_kind", "layer entry"))
        return m

    def _proc_gnulong(self, tf):
        if self.size > safety.PATH_MAX + 1:                 # the name and its NUL
            which = "name" if self.type == tarfile.GNUTYPE_LONGNAME else "link target"
            raise _refuse_here(tf, f"GNU long {which} of {self.size} bytes "
                               f"(limit {safety.PATH_MAX})")
        return super()._proc_gnulong(tf)

    def _proc_pax(self, tf):
        if self.size > safety.PAX_MAX:
            raise _refuse_here(tf, f"PAX header of {self.size} bytes (limit {safety.PAX_MAX})")
        if self.type == tarfile.XGLTYPE:
            total = getattr(tf, "_bs_global", 0) + self.size
            if total > safety.PAX_MAX:
                raise _refuse_here(tf, f"PAX global headers of {total} bytes in all "
                                   f"(limit {safety.PAX_MAX})")
            tf._bs_global = total
        try:
            return super()._proc_pax(tf)
        except ValueError as exc:                           # int() of a malformed record
            if isinstance(exc, InvalidInput):
                raise
            raise _refuse_here(tf, f"malformed PAX header ({exc})") from None

    def _proc_sparse(self, tf):
        """GNU old sparse ('S'): the extension blocks are counted, not trusted."""
        structs, isextended, origsize = self._sparse_structs
        del self._sparse_structs
        while isextended:
            if len(structs) > safety.SPARSE_MAX:
                raise _refuse_here(tf, f"sparse map of more than {safety.SPARSE_MAX} regions")
            buf = tf.fileobj.read(tarfile.BLOCKSIZE)
            if len(buf) != tarfile.BLOCKSIZE:
                raise _refuse_here(tf, "archive ends inside a sparse header")
            pos = 0
            for _ in range(21):
                try:
                    offset = tarfile.nti(buf[pos:pos + 12])
                    numbytes = tarfile.nti(buf[pos + 12:pos + 24])
                except ValueError:
                    break
                if offset and numbytes:
                    structs.append((offset, numbytes))
                pos += 24
            isextended = bool(buf[504])
        self.sparse = structs
        self.offset_data = tf.fileobj.tell()
        tf.offset = self.offset_data + self._block(self.size)
        self.size = origsize
        return self

    def _proc_gnusparse_01(self, next, pax_headers):
        name = pax_headers.get("GNU.sparse.name", next.name)
        raw = pax_headers["GNU.sparse.map"].split(",")
        if len(raw) > 2 * safety.SPARSE_MAX:
            raise safety.refuse(name, f"sparse map of more than {safety.SPARSE_MAX} regions")
        nums = []
        for x in raw:
            if not re.fullmatch(r"[0-9]{1,20}", x):
                raise safety.refuse(name, f"bad number {safety.show(x[:40])} in the sparse map")
            nums.append(int(x))
        next.sparse = list(zip(nums[::2], nums[1::2]))

    def _proc_gnusparse_10(self, next, pax_headers, tf):
        """GNU sparse 1.0: the map is at the start of the data, one number a line."""
        def no(why):
            return safety.refuse(pax_headers.get("GNU.sparse.name", next.name), why,
                                 getattr(tf, "_bs_kind", "layer entry"))
        buf = tf.fileobj.read(tarfile.BLOCKSIZE)
        if b"\n" not in buf:
            raise no("malformed sparse map")
        first, buf = buf.split(b"\n", 1)
        count = _int(first, no)
        if count > safety.SPARSE_MAX:
            raise no(f"sparse map of {count} regions (limit {safety.SPARSE_MAX})")
        nums = []
        while len(nums) < count * 2:
            if b"\n" not in buf:
                more = tf.fileobj.read(tarfile.BLOCKSIZE)
                if len(more) != tarfile.BLOCKSIZE or len(buf) > 64:
                    raise no("malformed or truncated sparse map")
                buf += more
                continue
            number, buf = buf.split(b"\n", 1)
            nums.append(_int(number, no))
        next.offset_data = tf.fileobj.tell()
        next.sparse = list(zip(nums[::2], nums[1::2]))


class _Regions:
    """The stored data regions of a sparse member, read in order (the stream
    cannot seek, and tarfile's sparse reader wants to)."""

    def __init__(self, tf, m):
        self.f = tf.fileobj
        self.f.seek(m.offset_data)           # forward: we are right after the header

    def read(self, n: int) -> bytes:
        b = self.f.read(n)
        if len(b) != n:
            raise tarfile.ReadError("unexpected end of data")
        return b


class Members:
    """Iterate ``(TarInfo, reader or None)``; the reader is valid until the next step."""

    def __init__(self, stream, what: str = "layer"):
        self.what = what
        self.last = None
        self.tf = None
        self.stream = stream

    def _open(self):
        try:
            tf = tarfile.TarFile.__new__(tarfile.TarFile)
            tf._end_reason = None
            # tarfile.open(mode="r|") without the class attribute problem: construct by hand.
            tf._bs_kind = "layer entry"
            stream = tarfile._Stream(None, "r", "tar", self.stream, tarfile.RECORDSIZE)
            try:
                tarfile.TarFile.__init__(tf, None, "r", stream, tarinfo=Info,
                                         errorlevel=2)
            except BaseException:
                stream.close()
                raise
            tf._stream = True
            return tf
        except tarfile.ReadError as exc:
            reason = getattr(tf, "_end_reason", None)
            if isinstance(reason, tarfile.EmptyHeaderError) or str(exc) == "empty file":
                return None                     # zero bytes: an empty layer
            raise InvalidInput(f"{self.what}: not a tar archive or damaged first header "
                               f"({exc})") from None

    def _cut(self) -> str | None:
        return safety.cut(self.last) if self.last else None

    def _where(self) -> str:
        return f"after entry {safety.show(self.last)}" if self.last else "at the first entry"

    def __iter__(self):
        self.tf = tf = self._open()
        if tf is None:
            return
        data_end = 0
        while True:
            try:
                m = tf.next()
            except tarfile.ReadError as exc:
                if str(exc) == "unexpected end of data" and tf.fileobj.pos >= data_end:
                    return      # all data there, only the padding and end blocks missing
                raise InvalidInput(f"{self.what}: damaged or truncated archive {self._where()}: "
                                   f"{exc}", path=self._cut()) from None
            tf.members.clear()
            if m is None:
                self._check_end(tf)
                return
            self.last = tf._bs_last = m.name
            stored = sum(n for _, n in m.sparse) if m.sparse is not None else m.size
            data_end = m.offset_data + (stored if m.isreg() else 0)
            if not m.isreg():
                data = None
            elif m.sparse is not None:
                data = _Regions(tf, m)
            else:
                data = tf.extractfile(m)
            yield m, data

    def _check_end(self, tf) -> None:
        r = tf._end_reason
        if r is None or isinstance(r, (tarfile.EOFHeaderError, tarfile.EmptyHeaderError)):
            return
        if isinstance(r, tarfile.TruncatedHeaderError):
            raise InvalidInput(f"{self.what}: truncated archive {self._where()}",
                               path=self._cut())
        raise InvalidInput(f"{self.what}: bad tar header {self._where()} ({r})",
                           path=self._cut())
