# cffi_modules is refused inside pyproject.toml; everything else lives there.
from setuptools import setup
setup(cffi_modules=["blockstore/native/build.py:ffibuilder"])
