"""mtlfast.ops.dispatch: one kernel-build choice for every CPU op, and its environment override.

The compiled ops record which build each of their calls ran (``_C.last_cpu_kernel_paths()``); these tests force a
build through ``MTLFAST_CPU_PATH`` in a fresh process and check that the bi-LSTM (forward and backward) and the
Adadelta ops (dense and rows) all ran it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mtlfast.ops import dispatch

needs_c = pytest.mark.skipif(not dispatch.has_c(), reason=f"mtlfast._C not built: {dispatch.backends()['error']}")

_PROBE = r"""
import json, torch
from mtlfast import ops
from mtlfast.ops import dispatch
C = dispatch.require_c()
seen = {"active": ops.cpu_kernel_path()}
g = torch.Generator().manual_seed(0)
K, B, T, E, H = 1, 3, 4, 5, 6
x = torch.randn(K, B, T, E, generator=g, requires_grad=True)
w = [torch.randn(K, 2, 4 * H, E, generator=g, requires_grad=True),
     torch.randn(K, 2, 4 * H, H, generator=g, requires_grad=True), torch.randn(K, 2, 4 * H, generator=g)]
ops.bilstm(x, torch.tensor([[4, 2, 3]]), *w, backend="cpu").sum().backward()
seen["bilstm"] = C.last_cpu_kernel_paths()["bilstm"]
p = torch.randn(40)
ops.adadelta_([p], [torch.randn(40)], [torch.zeros(40)], [torch.zeros(40)], backend="c")
seen["adadelta"] = C.last_cpu_kernel_paths()["adadelta"]
t = torch.randn(2, 7, 3)
ops.embedding_rows_update_(t, torch.zeros_like(t), torch.zeros_like(t), torch.zeros(2, 7, dtype=torch.long),
                           torch.tensor([[1, 2, 1], [0, -1, 6]]), torch.randn(2, 3, 3), 1)
seen["adadelta_rows"] = C.last_cpu_kernel_paths()["adadelta"]
print(json.dumps(seen))
"""


def _run_probe(env_value: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("MTLFAST_CPU_PATH", None)
    if env_value is not None:
        env["MTLFAST_CPU_PATH"] = env_value
    return subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=300)


@needs_c
def test_env_override_reaches_every_cpu_op():
    paths = dispatch.cpu_kernel_paths()
    # The slowest build and, when it differs, the best one: both ops must follow the variable either way.
    for path in dict.fromkeys([paths[0], paths[-1]]):
        proc = _run_probe(path)
        assert proc.returncode == 0, proc.stderr
        seen = json.loads(proc.stdout.strip().splitlines()[-1])
        assert seen == {"active": path, "bilstm": path, "adadelta": path, "adadelta_rows": path}, (path, seen)


@needs_c
def test_without_override_every_op_runs_the_best_build():
    proc = _run_probe(None)
    assert proc.returncode == 0, proc.stderr
    best = dispatch.cpu_kernel_paths()[-1]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {
        "active": best, "bilstm": best, "adadelta": best, "adadelta_rows": best}


@needs_c
def test_bad_env_value_fails_at_import_naming_the_variable_and_the_choices():
    proc = _run_probe("avx9000")
    assert proc.returncode != 0
    assert "MTLFAST_CPU_PATH='avx9000'" in proc.stderr
    assert "auto, portable, avx2, avx512, avx512_bf16" in proc.stderr


@needs_c
def test_set_cpu_kernel_path_rejects_unknown_and_unavailable_builds():
    with pytest.raises(RuntimeError, match="must be one of auto, portable"):
        dispatch.set_cpu_kernel_path("sse")
    missing = [p for p in ("portable", "avx2", "avx512", "avx512_bf16") if p not in dispatch.cpu_kernel_paths()]
    for p in missing:
        with pytest.raises(RuntimeError, match=f"cannot run the '{p}' kernels"):
            dispatch.set_cpu_kernel_path(p)
    assert dispatch.cpu_kernel_path() == dispatch.cpu_kernel_paths()[-1]


@needs_c
def test_forced_cpu_kernel_path_restores_the_default():
    before = dispatch.cpu_kernel_path()
    with dispatch.forced_cpu_kernel_path("portable"):
        assert dispatch.cpu_kernel_path() == "portable"
    assert dispatch.cpu_kernel_path() == before


def test_describe_names_what_runs():
    text = dispatch.describe()
    if dispatch.has_c():
        assert f"CPU build {dispatch.cpu_kernel_path()}" in text and "Adadelta: fused" in text
    else:
        assert "pure-PyTorch references" in text
