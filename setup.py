"""The compiled extensions, built where a C compiler is found: the record hash (``bigshuf._hashing``),
record finding and gathering (``bigshuf._records``), sliced writes (``bigshuf._sliced``) and the
watch that turns a shortened mapped input's SIGBUS into zeros (``bigshuf._mapguard``); without them
``core.fingerprint``, ``core.records`` and ``storage.sliced`` do the same with NumPy, Arrow and Python,
more slowly, and pass 1 reads its inputs rather than copying them out of mappings."""

from setuptools import Extension, setup


def _compiled(name: str) -> Extension:
    return Extension(f"bigshuf.{name}", [f"src/bigshuf/{name}.c"], optional=True, extra_compile_args=["-O3"])


setup(ext_modules=[_compiled("_hashing"), _compiled("_records"), _compiled("_sliced"), _compiled("_mapguard")])
