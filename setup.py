"""Builds the compiled core: every ``src/tokenmill/**/_*.pyx`` becomes an extension module.

All build requirements are declared in pyproject.toml; ``pip install .`` needs nothing else
than Python and a C compiler.
"""
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

SRC = Path("src")


def extensions():
    exts = []
    for pyx in sorted(SRC.glob("tokenmill/**/_*.pyx")):
        module = ".".join(pyx.relative_to(SRC).with_suffix("").parts)
        exts.append(
            Extension(
                module,
                [str(pyx)],
                extra_compile_args=["-O3"],
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            )
        )
    return cythonize(
        exts,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
        },
    )


setup(ext_modules=extensions())
