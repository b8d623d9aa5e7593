"""The CPU sources build without x86 code, as they must on other architectures (aarch64, ppc64le, ...).

``-DMTLFAST_NO_X86`` (setup.py: ``MTLFAST_NO_X86=1``) turns off every x86 path in ``csrc/`` (``cpu/isa.h``), as
a non-x86 compiler does. Two checks, against the installed torch's headers and with g++ (skipped without it):

* preprocessing: with the macro, no line that comes from ``csrc/`` holds an x86 intrinsic, vector type, target
  attribute, CPU probe or ``#include`` of an x86 intrinsic header (torch's own headers may: they guard
  themselves);
* compilation: every ``csrc/*.cpp`` and ``csrc/cpu/*.cpp`` passes ``g++ -fsyntax-only -Wall -Werror`` with the
  macro, so the portable path is complete code, not only free of x86 tokens.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CSRC = ROOT / "csrc"
SOURCES = sorted(CSRC.glob("*.cpp")) + sorted((CSRC / "cpu").glob("*.cpp"))

X86_TOKENS = re.compile(r"\b_mm\d*_\w+|\b__m(?:128|256|512)\w*|\b__mmask\d+|__builtin_cpu_(?:supports|init)"
                        r"|target\(\"[^\"]*(?:avx|sse|fma|amx)|^\s*#\s*include\s*[<\"][^>\"]*intrin\.h")
X86_HEADERS = re.compile(r"/(?:imm|x86|[a-z0-9]+)intrin\.h$")
MARKER = re.compile(r'^# (\d+) "([^"]+)"((?: \d)*)$')


def _compiler_args() -> list[str]:
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ not on PATH")
    try:
        from torch.utils.cpp_extension import include_paths
    except Exception as exc:  # pragma: no cover
        pytest.skip(f"torch.utils.cpp_extension unavailable: {exc}")
    args = [gxx, "-std=c++17", "-fopenmp", "-DMTLFAST_NO_X86", "-DMTLFAST_WITH_CPU", "-DTORCH_EXTENSION_NAME=_C",
            "-DTORCH_API_INCLUDE_EXTENSION_H", f"-I{CSRC}"]
    for inc in [*include_paths(), sysconfig.get_paths()["include"]]:
        args += ["-isystem", str(inc)]
    return args


@functools.lru_cache(maxsize=None)
def _ours(path: str) -> bool:
    return Path(path).resolve().is_relative_to(CSRC)


def _x86_in_preprocessed(text: str) -> list[str]:
    """Lines from csrc/ with x86 code, and x86 intrinsic headers included by a csrc/ file."""
    found, stack = [], []
    current, line_no = "", 0
    for line in text.splitlines():
        m = MARKER.match(line)
        if m:
            number, path, flags = int(m.group(1)), m.group(2), m.group(3).split()
            if "1" in flags:  # entering an included file: who includes it?
                if X86_HEADERS.search(path) and _ours(current):
                    found.append(f"{current}:{line_no - 1} includes {path}")
                stack.append(current)
            elif "2" in flags and stack:
                stack.pop()
            current, line_no = path, number
            continue
        if line and _ours(current) and X86_TOKENS.search(line):
            found.append(f"{current}:{line_no}: {line.strip()[:120]}")
        line_no += 1
    return found


def test_x86_detection_sees_a_violation():
    """The scanner itself: an intrinsic and an intrinsic-header include from csrc/ are both reported."""
    fake = str(CSRC / "cpu" / "fake.cpp")
    text = (f'# 1 "{fake}"\n#include <immintrin.h>\n'
            f'# 1 "/usr/lib/gcc/x86_64-linux-gnu/12/include/immintrin.h" 1 3 4\nint x;\n'
            f'# 3 "{fake}" 2\n__m512 v = _mm512_setzero_ps();\nint portable = 0;\n')
    found = _x86_in_preprocessed(text)
    assert any("includes" in f and "immintrin.h" in f for f in found), found
    assert any("#include <immintrin.h>" in f for f in found), found
    assert any("_mm512_setzero_ps" in f for f in found), found
    assert not any("portable" in f for f in found)


def test_sources_hold_no_x86_code_without_x86():
    args = _compiler_args()

    def preprocess(src: Path) -> list[str]:
        # -dI keeps the #include directives in the output: a header torch included first is not entered again,
        # but the directive that was not compiled out still shows.
        proc = subprocess.run(args + ["-E", "-dI", str(src)], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{src.name}: preprocessing failed:\n{proc.stderr[-4000:]}"
        return _x86_in_preprocessed(proc.stdout)

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        found = [f for fs in pool.map(preprocess, SOURCES) for f in fs]
    assert not found, "x86 code left outside `#if MTLFAST_X86`:\n" + "\n".join(found[:40])


@pytest.mark.slow
def test_portable_build_compiles():
    args = _compiler_args() + ["-fsyntax-only", "-Wall", "-Werror"]

    def check(src: Path) -> str | None:
        proc = subprocess.run(args + [str(src)], capture_output=True, text=True, timeout=600)
        return None if proc.returncode == 0 else f"{src.relative_to(ROOT)}:\n{proc.stderr[-4000:]}"

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        errors = [e for e in pool.map(check, SOURCES) if e]
    assert not errors, "the portable build (-DMTLFAST_NO_X86) does not compile:\n" + "\n".join(errors)
