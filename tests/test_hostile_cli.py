"""The command-line tools against hostile files and careless options: one-line errors, nothing executed or destroyed.

Each tool runs in-process through sg2_cli.runner.run, exactly as its __main__ block runs it, with the
arguments in sys.argv; the exit status and stderr are what a user would see.
"""
import os
import sys
import threading
import time
import types

import numpy as np
import PIL.Image
import pytest

from sg2_cli import bg_white
from sg2_cli import calc_metrics
from sg2_cli import dataset_tool
import dnnlib
import sg2_cli.runner
from sg2_cli import generate
import hostile_files as hf
from sg2_cli import train
from training import launch


def run_cli(command, args, capsys, monkeypatch):
    """(exit status, stderr) of the click command run as its script runs it."""
    monkeypatch.setattr(sys, "argv", ["tool.py", *args])
    monkeypatch.delenv("SG2_VERBOSE", raising=False)
    capsys.readouterr()
    try:
        sg2_cli.runner.run(command)
        status = 0
    except SystemExit as exit_:
        status = exit_.code
    return status, capsys.readouterr().err


def assert_one_line_error(status, stderr, *needles):
    assert status != 0
    assert "Traceback" not in stderr and "\x1b" not in stderr
    last = stderr.strip().splitlines()[-1]
    for needle in needles:
        assert needle in last, stderr
    return last


@pytest.fixture(scope="module")
def tiny_pkl(tmp_path_factory):
    path = tmp_path_factory.mktemp("nets") / "tiny.pkl"
    path.write_bytes(hf.tiny_checkpoint())
    return str(path)


# ----------------------------------------------------------------------------
# generate.py

@pytest.mark.parametrize("args,needles", [
    (["--seeds=4294967296"], ["--seeds", "4294967295"]),
    (["--seeds=0-99999999999"], ["--seeds", "4294967295"]),
    (["--trunc=nan"], ["--trunc", "nan"]),
    (["--trunc=inf"], ["--trunc", "inf"]),
])
def test_generate_bad_options(tmp_path, tiny_pkl, capsys, monkeypatch, args, needles):
    status, stderr = run_cli(generate.main, [f"--network={tiny_pkl}", "--seeds=0", f"--outdir={tmp_path / 'out'}",
                                             "--device=cpu", *args], capsys, monkeypatch)
    assert_one_line_error(status, stderr, *needles)
    assert not os.path.exists(tmp_path / "out")


def test_generate_outdir_under_a_file(tmp_path, tiny_pkl, capsys, monkeypatch):
    (tmp_path / "file.txt").write_text("keep me")
    status, stderr = run_cli(generate.main, [f"--network={tiny_pkl}", "--seeds=0", "--device=cpu",
                                             f"--outdir={tmp_path / 'file.txt' / 'images'}"], capsys, monkeypatch)
    assert_one_line_error(status, stderr, "--outdir", "file.txt")
    assert (tmp_path / "file.txt").read_text() == "keep me"


def test_generate_escapes_a_hostile_class_name(tmp_path, capsys, monkeypatch):
    path = tmp_path / "escapes.pkl"
    path.write_bytes(hf.tiny_checkpoint(lambda d: d["G_ema"].meta.__setitem__("class_name", "G\x1b[2J\nfake")))
    status, stderr = run_cli(generate.main, [f"--network={path}", "--seeds=0", f"--outdir={tmp_path / 'out'}",
                                             "--device=cpu"], capsys, monkeypatch)
    assert_one_line_error(status, stderr, "escapes.pkl", "G\\x1b[2J\\nfake")


# ----------------------------------------------------------------------------
# train.py

@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    from helpers_training import make_figures
    return make_figures(tmp_path_factory.mktemp("data") / "figures.zip", num=8)


def test_train_outdir_naming_a_file(tmp_path, figures, capsys, monkeypatch):
    (tmp_path / "runs").write_text("keep me")
    status, stderr = run_cli(train.main, [f"--outdir={tmp_path / 'runs'}", f"--data={figures}", "--device=cpu",
                                          "--metrics=none"], capsys, monkeypatch)
    assert_one_line_error(status, stderr, "--outdir", "runs")
    assert (tmp_path / "runs").read_text() == "keep me"


@pytest.mark.parametrize("height,width", [(2, 1), (4, 2), (64, 8)])
def test_train_refuses_untrainable_sizes_before_making_a_run_folder(tmp_path, capsys, monkeypatch, height, width):
    data = tmp_path / "data"
    data.mkdir()
    PIL.Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(data / "a.png")
    status, stderr = run_cli(train.main, [f"--outdir={tmp_path / 'runs'}", f"--data={data}", "--device=cpu",
                                          "--metrics=none"], capsys, monkeypatch)
    assert_one_line_error(status, stderr, str(data), f"{height}x{width}")
    assert not os.path.exists(tmp_path / "runs")


def test_train_resume_from_a_hash_bomb(tmp_path, figures, capsys, monkeypatch):
    bomb = tmp_path / "bomb.pkl"
    bomb.write_bytes(hf.hash_bomb(60))
    status, stderr = run_cli(train.main, [f"--outdir={tmp_path / 'runs'}", f"--data={figures}", f"--resume={bomb}",
                                          "--device=cpu", "--metrics=none", "--cbase=512", "--cmax=16", "--map=2",
                                          "--workers=0"], capsys, monkeypatch)
    assert_one_line_error(status, stderr, "bomb.pkl", "dict key is a tuple")


def test_run_numbers_are_claimed_one_at_a_time(tmp_path, monkeypatch):
    # Run A holds the lock while it chooses its number; run B, starting meanwhile, must wait and take the next.
    outdir = str(tmp_path)
    result = {}
    b_is_waiting = threading.Event()

    def wait_a_moment(seconds):  # B found the lock taken and waits to try again.
        b_is_waiting.set()
        time.sleep(seconds)
    monkeypatch.setattr(launch, "time", types.SimpleNamespace(time=time.time, sleep=wait_a_moment))
    with launch.run_number_lock(outdir):
        thread = threading.Thread(target=lambda: result.setdefault("b", launch.make_run_dir(outdir, "b")))
        thread.start()
        while not b_is_waiting.wait(timeout=0.01) and thread.is_alive():
            pass
        assert b_is_waiting.is_set() and "b" not in result  # B waits instead of reading a changing listing.
        os.makedirs(os.path.join(outdir, "00000-a"))
    thread.join(timeout=30)
    assert os.path.basename(result["b"]) == "00001-b"
    assert sorted(os.listdir(outdir)) == ["00000-a", "00001-b"]


def test_a_stale_run_number_lock_is_taken_over(tmp_path):
    lock = tmp_path / ".run-number-lock"
    lock.mkdir()
    os.utime(lock, (time.time() - 3600, time.time() - 3600))  # Left by a killed process an hour ago.
    assert os.path.basename(launch.make_run_dir(str(tmp_path), "x")) == "00000-x"
    assert not lock.exists()


# ----------------------------------------------------------------------------
# bg_white.py and dataset_tool.py

@pytest.mark.parametrize("args,needles", [
    (["--feather=inf"], ["--feather", "inf"]),
    (["--feather=1e9"], ["--feather", "1000000000"]),
    (["--outdir={file}"], ["--outdir", "taken.txt"]),
])
def test_bg_white_bad_options(tmp_path, capsys, monkeypatch, args, needles):
    (tmp_path / "img").mkdir()
    (tmp_path / "mask").mkdir()
    (tmp_path / "taken.txt").write_text("keep me")
    args = [a.replace("{file}", str(tmp_path / "taken.txt")) for a in args]
    status, stderr = run_cli(bg_white.main, [f"--images={tmp_path / 'img'}", f"--masks={tmp_path / 'mask'}",
                                             f"--outdir={tmp_path / 'out'}", *args], capsys, monkeypatch)
    assert_one_line_error(status, stderr, *needles)
    assert (tmp_path / "taken.txt").read_text() == "keep me"


def test_dataset_tool_untrainable_size(tmp_path, capsys, monkeypatch):
    (tmp_path / "src").mkdir()
    PIL.Image.fromarray(np.zeros((16, 8, 3), np.uint8)).save(tmp_path / "src" / "a.png")
    status, stderr = run_cli(dataset_tool.main, [f"--source={tmp_path / 'src'}", f"--dest={tmp_path / 'out.zip'}",
                                                 "--height=4", "--width=2"], capsys, monkeypatch)
    assert_one_line_error(status, stderr, "--height/--width", "4x2")
    assert not os.path.exists(tmp_path / "out.zip")


# ----------------------------------------------------------------------------
# calc_metrics.py: the dataset recorded in a checkpoint is never a way to run code.

def test_calc_metrics_never_runs_a_class_named_by_the_checkpoint(tmp_path, capsys, monkeypatch):
    marker = tmp_path / "marker"
    options = dict(class_name="hostile_files.create_marker", path=str(tmp_path), marker=str(marker))
    dnnlib.util.construct_class_by_name(**dict(options, marker=str(tmp_path / "control")))
    assert (tmp_path / "control").exists()  # The payload is importable here and works when called.
    path = tmp_path / "evil.pkl"
    path.write_bytes(hf.tiny_checkpoint(lambda d: d.__setitem__("training_set_kwargs", options)))
    status, stderr = run_cli(calc_metrics.main, [f"--network={path}", "--metrics=fid50k_full", "--device=cpu"],
                             capsys, monkeypatch)
    assert_one_line_error(status, stderr, "evil.pkl", "hostile_files.create_marker", "not one of this package's")
    assert not marker.exists()


def test_calc_metrics_refuses_an_expanding_training_set_kwargs(tmp_path, capsys, monkeypatch):
    path = tmp_path / "bomb.pkl"
    path.write_bytes(hf.shared_list_bomb(60, marker=str(tmp_path)))
    status, stderr = run_cli(calc_metrics.main, [f"--network={path}", "--device=cpu"], capsys, monkeypatch)
    assert_one_line_error(status, stderr, "bomb.pkl", "expand to more than")


def test_unusable_recorded_dataset_options_point_at_data(compat_dir):
    from metrics import evaluate
    from test_metrics_pipeline import load_fixture_generator
    G = load_fixture_generator(compat_dir)
    for recorded in (dict(path=None), dict(path="x.zip", resolution="1024"), dict(path="x.zip", xflip=[True] * 3)):
        with pytest.raises(dnnlib.util.UserError, match=r"^--network training_set_kwargs: .*pass --data=PATH"):
            evaluate.dataset_kwargs_for(dict(G_ema=G, training_set_kwargs=recorded))
