"""What the tools write, when writing fails or the run is stopped: earlier files intact, no partial or temporary
file, one line naming the path.

A file-size limit (RLIMIT_FSIZE, set in the child) stands in for a full disk: a write past it fails with EFBIG
(errno 27), as ENOSPC (28) does on a full disk; ENOSPC itself is raised in-process by a stand-in writer.
"""
import errno
import os
import signal
import subprocess
import sys
import time

import numpy as np
import PIL.Image
import pytest

import dnnlib
from dnnlib.errors import describe_error
from sg2_cli import generate
import hostile_files as hf
from helpers import ROOT, run_tool
from test_hostile_cli import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def tiny_pkl(tmp_path_factory):
    path = tmp_path_factory.mktemp("nets") / "tiny.pkl"
    path.write_bytes(hf.tiny_checkpoint())
    return str(path)


def snapshot_of(folder):
    """{name: bytes} of every file in a folder (hidden temporaries included)."""
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}


def last_line(result):
    assert result["status"] == 1 and "Traceback" not in result["output"], result["output"]
    return result["output"].strip().splitlines()[-1]


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["--grid=2x2"], ["--save-w"]], ids=["pngs", "grid", "save-w"])
def test_generate_rerun_on_a_full_disk_keeps_the_earlier_results(tiny_pkl, tmp_path, extra):
    out = tmp_path / "out"
    args = [f"--network={tiny_pkl}", "--seeds=0-3", f"--outdir={out}", "--device=cpu", *extra]
    assert run_tool("generate.py", args)["status"] == 0
    before = snapshot_of(out)
    result = run_tool("generate.py", args + ["--trunc=0.5", "--force"], file_size_limit=100)  # a PNG: ~300 bytes
    first = "grid.png" if extra == ["--grid=2x2"] else "seed0000.png"
    assert last_line(result) == f"Error: {out / first}: File too large"
    assert snapshot_of(out) == before  # every earlier file whole, no temporary file left


def test_a_full_disk_is_one_line_naming_the_file(tiny_pkl, tmp_path, capsys, monkeypatch):
    def no_space(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    out = tmp_path / "out"
    out.mkdir()
    (out / "seed0000.png").write_bytes(b"earlier result")
    monkeypatch.setattr(PIL.Image.Image, "save", no_space)
    status, stderr = run_cli(generate.main, [f"--network={tiny_pkl}", "--seeds=0", f"--outdir={out}", "--device=cpu",
                                             "--force"], capsys, monkeypatch)
    assert assert_one_line_error(status, stderr) == f"Error: {out / 'seed0000.png'}: No space left on device"
    assert snapshot_of(out) == {"seed0000.png": b"earlier result"}


@pytest.mark.parametrize("err,expected", [
    (OSError(errno.EFBIG, "File too large", "/data/x.png"), "/data/x.png: File too large"),
    (OSError(errno.EXDEV, "Invalid cross-device link", "/a", None, "/b"), "/a -> /b: Invalid cross-device link"),
    (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), "[Errno 104] Connection reset by peer"),
    (MemoryError(), "out of memory (no details); try a smaller input or batch"),
])
def test_errors_read_as_one_line(err, expected):
    assert describe_error(err) == expected


@pytest.mark.slow
def test_dataset_tool_on_a_full_disk_leaves_nothing_and_can_run_again(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for i in range(8):
        PIL.Image.fromarray(np.random.RandomState(i).randint(0, 256, [64, 32, 3], np.uint8)).save(source / f"{i}.png")
    dest = tmp_path / "out" / "data.zip"
    result = run_tool("dataset_tool.py", [f"--source={source}", f"--out={dest}"], file_size_limit=20000)
    assert last_line(result) == f"Error: {dest}: File too large"
    assert os.listdir(tmp_path / "out") == []  # no .partial, no claimed empty --out
    assert run_tool("dataset_tool.py", [f"--source={source}", f"--out={dest}"])["status"] == 0


@pytest.mark.slow
def test_convert_on_a_full_disk_keeps_the_old_file(tiny_pkl, tmp_path):
    out = tmp_path / "tiny.safetensors"
    out.write_bytes(b"the old file")
    result = run_tool("convert.py", [f"--network={tiny_pkl}", f"--out={out}", "--force"],
                      file_size_limit=1000)
    assert last_line(result) == f"Error: {out}: File too large"
    assert snapshot_of(tmp_path) == {"tiny.safetensors": b"the old file"}


@pytest.mark.slow
def test_gen_video_on_a_full_disk_keeps_the_old_video(tiny_pkl, tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    out = tmp_path / "loop.mp4"
    out.write_bytes(b"the old video")
    result = run_tool("gen_video.py", [f"--network={tiny_pkl}", "--seeds=0-1", "--w-frames=30", f"--out={out}",
                                       "--device=cpu", "--force"], file_size_limit=300)
    assert result["status"] == 1 and "Traceback" not in result["output"], result["output"]
    assert str(out) in result["output"].strip().splitlines()[-1]
    assert snapshot_of(tmp_path) == {"loop.mp4": b"the old video"}


def _stopped_child(cmd, ready, sig, timeout=120):
    """Start cmd, wait until `ready()` is true, send `sig`; (status, output, seconds from the signal to the exit)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.05)
        proc.send_signal(sig)
        start = time.monotonic()
        output, _ = proc.communicate(timeout=60)
        return proc.returncode, output, time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_sigterm_stops_dataset_tool_without_leftovers(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    image = np.random.RandomState(0).randint(0, 256, [256, 128, 3], np.uint8)
    for i in range(400):
        PIL.Image.fromarray(np.roll(image, i, axis=0)).save(source / f"{i:04d}.png")
    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, os.path.join(ROOT, "dataset_tool.py"), f"--source={source}", f"--out={out / 'data.zip'}",
           "--height=64", "--width=32"]
    status, output, seconds = _stopped_child(cmd, lambda: any(".partial" in n for n in os.listdir(out)), signal.SIGTERM)
    print(f"exited {status} {seconds:.2f} s after SIGTERM")
    assert status == 128 + signal.SIGTERM and "Traceback" not in output, output
    assert os.listdir(out) == []


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_projection_leaves_no_temporary_video(tiny_pkl, tmp_path, sig):
    pytest.importorskip("imageio_ffmpeg")
    from metrics.stand_in_detector import save_stand_in_detector
    target = tmp_path / "photo.png"
    PIL.Image.fromarray(np.full([32, 16, 3], 200, np.uint8)).save(target)
    vgg16 = save_stand_in_detector(str(tmp_path / "vgg16.pt"))
    out = tmp_path / "out"
    cmd = [sys.executable, os.path.join(ROOT, "projector.py"), f"--network={tiny_pkl}", f"--target={target}",
           f"--vgg16={vgg16}", "--num-steps=100000", "--save-video=true", f"--outdir={out}", "--device=cpu"]
    status, output, _ = _stopped_child(cmd, lambda: out.exists() and any(".mp4" in n for n in os.listdir(out)), sig)
    assert status in (1, 128 + sig) and "Traceback" not in output, output
    assert not [name for name in os.listdir(out) if "mp4" in name or ".tmp-" in name], os.listdir(out)
