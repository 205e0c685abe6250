"""The compiled record hash (``bigshuf._hashing``), built where a C compiler is found; without it
``core.fingerprint`` computes the same values with NumPy, more slowly."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("bigshuf._hashing", ["src/bigshuf/_hashing.c"], optional=True, extra_compile_args=["-O3"])])
