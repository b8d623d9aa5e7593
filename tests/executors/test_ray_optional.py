"""Ray is an optional extra: mtlfast imports without it, and ``--executor ray`` without it is one clear error."""

import subprocess
import sys
from pathlib import Path

from mtlfast.sweep import main

ROOT = Path(__file__).resolve().parents[2]


def test_import_never_needs_ray():
    code = ("import sys; import mtlfast, mtlfast.executors, mtlfast.sweep, mtlfast.executors.ray; "
            "print('ray' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


def test_executor_ray_without_ray_is_one_clear_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as when it is not installed
    assert main(["--executor", "ray", "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'mtlfast[ray]'" in err[0], err
    assert not (tmp_path / "out").exists()  # refused before any work


def test_ray_flags_need_the_ray_executor(tmp_path, capsys):
    assert main(["--address", "localhost:6379", "--out", str(tmp_path / "out")]) == 2
    assert "--address applies only to --executor ray" in capsys.readouterr().err
    assert main(["--executor", "ray", "--max-retries", "-1", "--out", str(tmp_path / "out")]) == 2
    assert "--max-retries" in capsys.readouterr().err
