"""generate.py: the images it writes equal the original code's, and bad input gives one-line errors."""
import os
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest

from dnnlib.image_grid import parse_grid
from latent import space

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "generate.py"), *args], cwd=ROOT,
                          capture_output=True, text=True)


@pytest.mark.slow
def test_pngs_equal_reference(compat_dir, tmp_path):
    result = _run(f"--network={compat_dir}/tiny_64x32.pkl", "--seeds=0-2,42", "--trunc=0.7", "--noise-mode=const",
                  f"--outdir={tmp_path}", "--device=cpu")
    assert result.returncode == 0, result.stderr
    expected = np.load(os.path.join(compat_dir, "tiny_64x32_expected.npz"))
    got = np.stack([np.array(PIL.Image.open(tmp_path / f"seed{s:04d}.png")) for s in [0, 1, 2, 42]])
    assert sorted(os.listdir(tmp_path)) == ["seed0000.png", "seed0001.png", "seed0002.png", "seed0042.png"]
    diff = np.abs(got.astype(int) - expected["uint8_const_psi0.7"].astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() <= 0.001


@pytest.mark.slow
def test_batch_size_does_not_change_images(compat_dir, tmp_path):
    # On the CPU a seed's PNG is bitwise the same whatever batch made it (tests/test_batch_invariance.py).
    pair, single = tmp_path / "pair", tmp_path / "single"
    for outdir, seeds, batch in ((pair, "0,5", "--batch=2"), (single, "0", "--batch=1")):
        result = _run(f"--network={compat_dir}/tiny_64x32.pkl", f"--seeds={seeds}", batch, f"--outdir={outdir}",
                      "--device=cpu")
        assert result.returncode == 0, result.stderr
    assert (pair / "seed0000.png").read_bytes() == (single / "seed0000.png").read_bytes()


@pytest.mark.slow
def test_dtype_bf16_cli_is_close_to_the_reference_images(compat_dir, tmp_path):
    # --dtype=bf16 on the reference checkpoint: the original code's fp32 images within the bf16 bound of
    # tests/test_speed_paths.py, and not bitwise the same (the switch took effect).
    from test_speed_paths import BF16_MAX_LSB, BF16_MEAN_LSB
    result = _run(f"--network={compat_dir}/tiny_64x32.pkl", "--seeds=0-2,42", "--trunc=0.7", "--noise-mode=const",
                  f"--outdir={tmp_path}", "--device=cpu", "--dtype=bf16")
    assert result.returncode == 0, result.stderr
    expected = np.load(os.path.join(compat_dir, "tiny_64x32_expected.npz"))["uint8_const_psi0.7"].astype(int)
    got = np.stack([np.array(PIL.Image.open(tmp_path / f"seed{s:04d}.png")) for s in [0, 1, 2, 42]]).astype(int)
    diff = np.abs(got - expected)
    assert diff.max() <= BF16_MAX_LSB and diff.mean() <= BF16_MEAN_LSB and diff.max() > 1


@pytest.mark.slow
def test_grid_contact_sheet(compat_dir, tmp_path):
    result = _run(f"--network={compat_dir}/tiny_64x32.pkl", "--seeds=0-5", "--grid=2x3", f"--outdir={tmp_path}",
                  "--device=cpu")
    assert result.returncode == 0, result.stderr
    assert os.listdir(tmp_path) == ["grid.png"]
    assert f"Wrote a 2x3 grid of 6 image(s) to {tmp_path / 'grid.png'}" in result.stdout  # one file, not six
    grid = np.array(PIL.Image.open(tmp_path / "grid.png"))
    assert grid.shape == (2 * 64, 3 * 32, 3)
    single = _run(f"--network={compat_dir}/tiny_64x32.pkl", "--seeds=4", f"--outdir={tmp_path}/one", "--device=cpu")
    assert single.returncode == 0
    cell = grid[64:128, 32:64].astype(int)  # seed 4: row 1, column 1
    assert np.abs(cell - np.array(PIL.Image.open(tmp_path / "one" / "seed0004.png")).astype(int)).max() <= 1


@pytest.mark.parametrize("args,message", [
    (["--network=/no/such/file.pkl", "--seeds=0"], "/no/such/file.pkl"),
    (["--network=README.md", "--seeds=0"], "README.md"),
    (["--network={compat}/tiny_64x32.pkl", "--seeds=1-x"], "--seeds"),
    (["--network={compat}/tiny_64x32.pkl", "--seeds=0-9", "--grid=2x2"], "--grid"),
    (["--network={compat}/tiny_64x32.pkl", "--seeds=0", "--grid=banana"], "--grid"),
])
@pytest.mark.slow
def test_bad_input_is_one_line_error(compat_dir, tmp_path, args, message):
    args = [a.replace("{compat}", compat_dir) for a in args]
    result = _run(*args, f"--outdir={tmp_path}", "--device=cpu")
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_parse_range():
    assert space.parse_range("0-2,42") == [0, 1, 2, 42]
    assert parse_grid("4x8") == (4, 8)
    with pytest.raises(ValueError):
        space.parse_range("5-2")
