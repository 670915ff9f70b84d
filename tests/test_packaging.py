"""`pip install .`: the wheel holds the library packages and legacy, no generic top-level modules, and one
sg2-* console script per tool, each of which runs."""
import configparser
import glob
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from helpers_cli import ROOT

# What a wheel may put at the top of site-packages: the packages checkpoints and the ecosystem name, the
# library packages, the tools' package, and (until the checkpoint package absorbs it) plain_weights.
TOP_LEVEL = {"dnnlib", "torch_utils", "training", "metrics", "latent", "webapp", "sg2_cli", "legacy.py"}
TOOLS = ["generate", "style_mixing", "gen_video", "edit", "projector", "app", "calc_metrics", "train",
         "dataset_tool", "bg_white", "convert"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel built from a copy of the checkout (the build writes build/ and *.egg-info where it runs)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".venv", "tests", "docs", "demo-runs", "build", "*.egg-info")
    shutil.copytree(ROOT, src, ignore=ignore, symlinks=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "-w", str(root / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (path,) = glob.glob(str(root / "dist" / "*.whl"))
    return path


@pytest.mark.slow
def test_wheel_holds_no_generic_top_level_modules(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    top = {name.split("/")[0] for name in names if ".dist-info/" not in name}
    assert top == TOP_LEVEL
    assert not {f"{tool}.py" for tool in TOOLS} & top
    assert {f"sg2_cli/{tool}.py" for tool in TOOLS} <= set(names)
    assert any(name.startswith("torch_utils/ops/") and name.endswith(".cu") for name in names)  # kernel sources


@pytest.mark.slow
def test_wheel_has_one_sg2_console_script_per_tool(wheel):
    with zipfile.ZipFile(wheel) as zf:
        (entry_points,) = [n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt")]
        parser = configparser.ConfigParser()
        parser.read_string(zf.read(entry_points).decode())
    scripts = dict(parser["console_scripts"])
    assert scripts == {"sg2-" + tool.replace("_", "-"): f"sg2_cli.{tool}:cli" for tool in TOOLS}


@pytest.mark.slow
def test_installed_console_scripts_run(wheel, tmp_path):
    target = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target",
                           str(target), wheel], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    env = dict(os.environ, PYTHONPATH=str(target))
    for script in ("sg2-generate", "sg2-edit"):
        run = subprocess.run([str(target / "bin" / script), "--help"], env=env, cwd=str(tmp_path),
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0 and f"Usage: {script}" in run.stdout, run.stderr
    run = subprocess.run([str(target / "bin" / "sg2-generate"), "--network=missing.pkl", "--seeds=0",
                          "--outdir=out"], env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and run.stderr.strip() == "Error: missing.pkl: no such file"
