"""The compiled extensions, built where a C compiler is found: the record hash (``bigshuf._hashing``)
and record finding and gathering (``bigshuf._records``); without them ``core.fingerprint`` and
``core.records`` compute the same results with NumPy and Arrow, more slowly."""

from setuptools import Extension, setup


def _compiled(name: str) -> Extension:
    return Extension(f"bigshuf.{name}", [f"src/bigshuf/{name}.c"], optional=True, extra_compile_args=["-O3"])


setup(ext_modules=[_compiled("_hashing"), _compiled("_records")])
