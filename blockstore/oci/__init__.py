"""OCI / docker image interop: layers and images in and out.

Public entry points (the CLI calls these):

* ``import_image(store, src, name, parent=None, progress=None, allow_devices=True,
  format="auto")`` -- ``src`` is an OCI layout directory, a tar of one, a
  ``docker save`` tarball (any of them as ``PATH:TAG`` to pick one image;
  archives plain, gzip or zstd), or a single layer tar (a path or a binary
  reader) applied onto snapshot ``parent``; ``format`` "image" or "layer"
  settles an archive that could be either (``sniff``).  Returns the record
  of snapshot ``name``.
* ``export_tar(store, name, out, parent=None)`` -- the whole tree as a
  reproducible tar, or (``parent`` given) the OCI layer that turns
  ``parent`` into ``name``, with whiteouts and opaque markers.
* ``export_image(store, name, out, format="oci"|"docker", tag=None,
  compression="gzip"|"zstd"|"none")`` -- the chain of ``name`` (its lineage)
  as an OCI image layout directory or a ``docker save`` tarball, one layer
  per snapshot: imported layers as the blobs they came from, layers made in
  the store compressed.

Module map: safety (hostile-input rules), compress (magic detection),
tarread (strict streaming tar reader, header limits), sniff (image
archive or layer), layer_in (apply one layer), chain
(one layer -> one snapshot, atomic), sources + image_in (image formats),
layer_out (full and diff tars), image_out (layout / docker archive).
"""
from .api import export_image, export_tar, import_image

__all__ = ["import_image", "export_tar", "export_image"]
