"""mvit as a user installs it: build the wheel, install it into a fresh virtual environment, run the
README's main job from outside the checkout."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
    )
    [whl] = out.glob("mvit-*.whl")
    return whl


def test_wheel_holds_only_the_mvit_package_and_its_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"mvit", next(t for t in tops if t.endswith(".dist-info"))}, tops
    for wanted in (
        "mvit/__init__.py",
        "mvit/model/registry.py",
        "mvit/export/api.py",
        "mvit/quant/pt2e.py",
        "mvit/benchmarks/cli.py",
        "mvit/export/apps/install.py",
        "mvit/model/weights/mobilevit_xxs_trashnet6.safetensors",
        "mvit/model/weights/mobilevit_xxs_trashnet6.zeroq.npz",
    ):
        assert wanted in names, wanted
    # the one-off studies are scripts next to their results, not part of what users install
    assert not [n for n in names if "/studies/" in n or "/article/" in n], "studies in the wheel"
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    for cmd, target in (
        ("mvit-export", "mvit.export.cli:main"),
        ("mvit-bench", "mvit.benchmarks.cli:main"),
        ("mvit-train", "mvit.quant.cli_train:main"),
        ("mvit-predict", "mvit.export.cli_predict:main"),
        ("mvit-import", "mvit.model.cli_import:main"),
    ):
        assert f"{cmd} = {target}" in scripts, scripts


@pytest.mark.slow
def test_installed_wheel_runs_the_main_job_outside_the_checkout(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    fresh_site = Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # The wheel's dependencies come from this test environment's site-packages, read as plain paths:
    # .pth files there (this checkout's editable install) are not processed, so only the wheel provides mvit.
    (fresh_site / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--target",
            str(fresh_site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    where = subprocess.run(
        [
            str(py),
            "-c",
            "import mvit, mvit.model, mvit.export.api; print(mvit.__file__); "
            "import importlib.util as u; print([n for n in ('model', 'export', 'benchmarks') "
            "if u.find_spec(n)])",
        ],
        cwd=work,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    mvit_file, top_level = where.stdout.splitlines()
    assert Path(mvit_file).is_relative_to(fresh_site) and top_level == "[]", where.stdout
    run = subprocess.run(
        [str(py), "-m", "mvit.export.cli", "--format", "tflite", "--quantize", "int8", "--out", "out"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    console = (run.stdout + run.stderr).splitlines()
    assert len(console) <= 30, console
    assert any("data-free (ZeroQ) images shipped with the model" in line for line in console), console
    assert not any("Failed to load" in line or "LiteRT-Torch" in line or "Warning" in line for line in console), console
    assert (work / "out" / "mobilevit_xxs-int8-tflite" / "model.tflite").stat().st_size > 500_000
    assert "LiteRT" in (work / "out" / "mobilevit_xxs-int8-tflite" / "export.log").read_text()
