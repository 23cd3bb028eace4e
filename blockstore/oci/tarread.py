"""A strict, streaming reader of tar archives (one pass, never seeks back).

``tarfile`` in stream mode treats a bad header checksum or a truncated
header after the first member as the end of the archive and stops
silently.  ``Members`` records why the archive ended and refuses every end
but two: an end-of-archive block of zeros, or a clean end of input after
a member's complete data (layers written by older umoci have no
end-of-archive blocks, and not even the padding of the last member).  Memory: one member header at a time (tarfile's member list is
cleared as we go).  Errors are ``InvalidInput`` naming the last entry.
"""
from __future__ import annotations

import tarfile

from ..errors import InvalidInput


class _Info(tarfile.TarInfo):
    @classmethod
    def fromtarfile(cls, tf):
        try:
            return super().fromtarfile(tf)
        except tarfile.HeaderError as exc:
            tf._end_reason = exc
            raise


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
            stream = tarfile._Stream(None, "r", "tar", self.stream, tarfile.RECORDSIZE)
            try:
                tarfile.TarFile.__init__(tf, None, "r", stream, tarinfo=_Info,
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

    def _where(self) -> str:
        return f"after entry {self.last!r}" if self.last else "at the first entry"

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
                                   f"{exc}", path=self.last) from None
            tf.members.clear()
            if m is None:
                self._check_end(tf)
                return
            self.last = m.name
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
                               path=self.last)
        raise InvalidInput(f"{self.what}: bad tar header {self._where()} ({r})", path=self.last)
