"""Build the compiled kernels of cycnn.

Every ``cycnn/_*.pyx`` file is a kernel module. Each is compiled twice on x86-64:

* ``cycnn._name``       for any x86-64 CPU (the baseline), and
* ``cycnn._name_avx2``  with AVX2 and FMA, chosen at import time when the CPU has them
  (see ``cycnn/_dispatch.py``).

Cython directives live here and only here. Environment variables:

``CYCNN_DEBUG_CYTHON=1``
    turn bounds and wraparound checks back on, so the test suite can hunt out-of-bounds
    accesses in the kernels.
``CYCNN_MARCH_NATIVE=1``
    add ``-march=native`` to the baseline build (the wheel then runs only on CPUs like
    this one).
``CYCNN_NO_OPENMP=1``
    build without OpenMP even if the compiler supports it.

Every docs page is also written as a Jupyter notebook into ``cycnn/notebooks/`` (package
data, see :func:`write_notebooks`), so that ``cycnn notebooks DIR`` works from any install.
"""

import importlib.util
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent
DEBUG = os.environ.get("CYCNN_DEBUG_CYTHON", "") not in ("", "0")

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "nonecheck": False,
    "embedsignature": True,
}

# Reassociation lets gcc vectorise the sums in the loops; unlike -ffast-math it keeps
# NaN and inf semantics (no -ffinite-math-only), which the NaN tests check.
BASE_FLAGS = ["-O3", "-fassociative-math", "-fno-signed-zeros", "-fno-trapping-math"]
AVX2_FLAGS = ["-mavx2", "-mfma"]


def _compiler_accepts(compiler, flags, source="int main(void) { return 0; }\n"):
    """True when ``compiler`` compiles and links a small program with ``flags``."""
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as fh:
            fh.write(source)
        objs = compiler.compile([src], output_dir=tmp, extra_postargs=flags)
        compiler.link_executable(objs, "probe", output_dir=tmp, extra_postargs=flags)
        return True
    except Exception:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


OPENMP_PROBE = """
#include <omp.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    return omp_get_max_threads() > 0 && n > 0 ? 0 : 1;
}
"""


class BuildExt(build_ext):
    """Add OpenMP where the compiler supports it; drop the AVX2 variants where it can't."""

    def build_extensions(self):
        cc = self.compiler
        use_openmp = os.environ.get("CYCNN_NO_OPENMP", "") in ("", "0") and _compiler_accepts(
            cc, ["-fopenmp"], OPENMP_PROBE
        )
        avx2_ok = _compiler_accepts(cc, AVX2_FLAGS)
        if not use_openmp:
            print("cycnn: compiler has no OpenMP; building serial kernels", file=sys.stderr)
        kept = []
        for ext in self.extensions:
            if ext.name.endswith("_avx2") and not avx2_ok:
                print(f"cycnn: skipping {ext.name} (no AVX2/FMA support)", file=sys.stderr)
                continue
            if use_openmp:
                ext.extra_compile_args.append("-fopenmp")
                ext.extra_link_args.append("-fopenmp")
            kept.append(ext)
        self.extensions = kept
        super().build_extensions()


def _extensions():
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
    native = os.environ.get("CYCNN_MARCH_NATIVE", "") not in ("", "0")
    macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
    exts = []
    for pyx in sorted((HERE / "cycnn").glob("_*.pyx")):
        if pyx.stem.endswith("_avx2"):
            continue
        name = f"cycnn.{pyx.stem}"
        flags = BASE_FLAGS + (["-march=native"] if native else [])
        exts.append(Extension(name, [f"cycnn/{pyx.name}"], extra_compile_args=list(flags),
                              define_macros=macros))
        twin = pyx.with_name(pyx.stem + "_avx2.pyx")
        if x86 and twin.exists():
            exts.append(Extension(f"{name}_avx2", [f"cycnn/{twin.name}"],
                                  extra_compile_args=BASE_FLAGS + AVX2_FLAGS,
                                  define_macros=macros))
    return exts


def write_notebooks():
    """Write every docs page as a notebook into cycnn/notebooks/, which ships as package data.

    The pages in docs/ are the one source: the notebooks are made from them at every
    build, so none is committed and none can go stale. The converter is a standard-library
    module loaded by path, because ``import cycnn`` needs the kernels this file builds. A
    build from an sdist has no docs/ and keeps the notebooks the sdist carries.
    """
    docs = HERE / "docs"
    if not docs.is_dir():
        return
    spec = importlib.util.spec_from_file_location("cycnn_notebooks_at_build",
                                                  HERE / "cycnn" / "_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write_notebooks(HERE / "cycnn" / "notebooks", docs, HERE)


write_notebooks()

setup(
    ext_modules=cythonize(_extensions(), compiler_directives=DIRECTIVES),
    cmdclass={"build_ext": BuildExt},
)
