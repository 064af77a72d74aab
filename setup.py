"""Builds the native extension ``router.native._native`` from ``native/``.

Project metadata lives in pyproject.toml; this file only declares the
extension. ``pip install -e .`` builds the .so in place under router/native/;
``pip install .`` puts it in the wheel. Without a compiler the package still
works, on the pure-Python twin (see router/native/__init__.py).
"""

import sys
from glob import glob

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

# Relative paths: setuptools requires them for sources, and they keep the
# build reproducible wherever the tree is checked out.
SOURCES = [*sorted(glob("native/src/*.cpp")), "native/bindings.cpp"]
HEADERS = sorted(glob("native/include/meshgate/*.h"))

# Pybind11Extension already adds -fvisibility=hidden and -g0 on GCC/Clang.
COMPILE_ARGS = [] if sys.platform == "win32" else ["-O3", "-fvisibility=hidden"]

setup(
    ext_modules=[
        Pybind11Extension(
            "router.native._native",
            SOURCES,
            include_dirs=["native/include"],
            depends=HEADERS,
            cxx_std=17,
            extra_compile_args=COMPILE_ARGS,
        )
    ],
    cmdclass={"build_ext": build_ext},
)
