"""Build script for mtlfast's compiled parts.

Two kinds of extension are built:

* ``mtlfast._C`` -- the torch extension (pybind11 via ``torch.utils.cpp_extension``) holding the fused
  bi-LSTM and optimiser kernels. The C++ CPU sources in ``csrc/`` and ``csrc/cpu/`` are always compiled;
  the CUDA sources in ``csrc/cuda/`` join only when a CUDA build of torch and ``nvcc`` are both present.
* ``mtlfast.data._fast`` -- Cython helpers for corpus encoding and batch assembly.

Environment switches
--------------------
MTLFAST_CUDA=1 / 0   force the CUDA sources in (fails loudly if impossible) / out.
MTLFAST_NO_X86=1     build only the portable CPU kernels (no x86 intrinsics), as on other architectures.
DEBUG=1              compile with ``-O0 -g``.
MTLFAST_CPU_OPT=-O1  optimisation flag of the C++ (host) sources instead of ``-O3``: a quicker build where only
                     the CUDA kernels matter (tools/gpu_check.sh on a GPU machine); the CUDA device code keeps
                     ptxas's full optimisation either way.
MTLFAST_ONLY=_C|cython  build only one of the two (used during development).

Build with ``pip install --no-build-isolation .`` after ``pip install -r requirements-build.txt`` so that the
extension is compiled against the torch that will run it.
"""

import glob
import os
import shutil
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _env_flag(name):
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    return value.lower() not in ("0", "false", "no", "off")


def _cuda_wanted(torch_cuda_version):
    forced = _env_flag("MTLFAST_CUDA")
    has_nvcc = shutil.which("nvcc") is not None or bool(os.environ.get("CUDA_HOME"))
    possible = torch_cuda_version is not None and has_nvcc
    if forced is True and not possible:
        sys.exit(
            "setup.py: MTLFAST_CUDA=1 but a CUDA build needs torch built with CUDA "
            f"(torch.version.cuda={torch_cuda_version!r}) and nvcc on PATH or CUDA_HOME"
        )
    if forced is False:
        return False
    return possible


def torch_extension():
    try:
        import torch
        from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension
    except ImportError:
        sys.exit(
            "setup.py: torch must be installed before building mtlfast (the extension is compiled against it).\n"
            "  pip install -r requirements-build.txt && pip install --no-build-isolation ."
        )
    debug = bool(_env_flag("DEBUG"))
    opt = ["-O0", "-g"] if debug else [os.environ.get("MTLFAST_CPU_OPT") or "-O3"]
    cxx_flags = opt + ["-std=c++17", "-fopenmp", "-DMTLFAST_WITH_CPU"]
    if _env_flag("MTLFAST_NO_X86"):
        cxx_flags.append("-DMTLFAST_NO_X86")
    # csrc/*.cpp: the module and its bindings; csrc/cpu/*.cpp: the CPU ops, one file per concern (the table in
    # csrc/cpu/bilstm_cpu.cpp), their headers beside them.
    sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")) + glob.glob(os.path.join("csrc", "cpu", "*.cpp")))
    use_cuda = _cuda_wanted(torch.version.cuda)
    if use_cuda:
        # csrc/cuda/*.cu are framework-free kernels; csrc/cuda/*.cpp is their torch glue.
        sources += sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")) + glob.glob(os.path.join("csrc", "cuda", "*.cpp")))
        cxx_flags.append("-DMTLFAST_WITH_CUDA")
        ext = CUDAExtension(
            "mtlfast._C",
            sources,
            include_dirs=[os.path.join(ROOT, "csrc")],
            extra_compile_args={
                "cxx": cxx_flags,
                "nvcc": opt + ["-std=c++17", "-DMTLFAST_WITH_CUDA", "--use_fast_math", "-lineinfo"],
            },
            extra_link_args=["-fopenmp"],
        )
    else:
        ext = CppExtension(
            "mtlfast._C",
            sources,
            include_dirs=[os.path.join(ROOT, "csrc")],
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=["-fopenmp"],
        )
    return ext, BuildExtension.with_options(no_python_abi_suffix=False, use_ninja=shutil.which("ninja") is not None)


def cython_extensions():
    try:
        import numpy
        from Cython.Build import cythonize
    except ImportError:
        sys.exit("setup.py: cython and numpy must be installed first: pip install -r requirements-build.txt")
    from setuptools import Extension

    pyx = sorted(glob.glob(os.path.join("mtlfast", "**", "*.pyx"), recursive=True))
    exts = []
    for path in pyx:
        module = os.path.splitext(path)[0].replace(os.sep, ".")
        exts.append(
            Extension(
                module,
                [path],
                include_dirs=[numpy.get_include()],
                extra_compile_args=["-O3"] if not _env_flag("DEBUG") else ["-O0", "-g"],
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
                language="c++",
            )
        )
    return cythonize(exts, language_level=3, quiet=True) if exts else []


def main():
    only = os.environ.get("MTLFAST_ONLY", "")
    ext_modules = []
    cmdclass = {}
    if only in ("", "_C"):
        ext, build_ext = torch_extension()
        ext_modules.append(ext)
        cmdclass["build_ext"] = build_ext
    if only in ("", "cython"):
        ext_modules += cython_extensions()
    setup(ext_modules=ext_modules, cmdclass=cmdclass)


main()
