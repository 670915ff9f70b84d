"""A run folder written by the training code before issue 14 (tests/fixtures/pre_refactor_run) resumes exactly.

The fixture holds that run's training_options.json and its snapshot after 24 images; continued.npz holds
every tensor of the same run after 48 images, had it not stopped. Resuming the snapshot with today's code
must land on those tensors, whether the options come from the old training_options.json or from the
train.py options that made the run.
"""
import json
import os
import shutil

import numpy as np
import pytest
import torch

from helpers_training import ROOT, flat_optimizer_state, load, snapshots, state_tensors, train_in_process
from training import launch
from training.options import RENAMED_KEYS, TrainingOptions

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FIXTURE = os.path.join(ROOT, "tests", "fixtures", "pre_refactor_run")
# The train.py options of the fixture's run (see its make_fixture.py), in the order they were typed.
COMMAND = dict(cfg="auto", batch=4, metrics="none", workers=0, grid=(2, 4), aug="ada", augpipe="body", ada_kimg=0.1,
               tick=0.008, snap=1, device="cpu", seed=3)


@pytest.fixture
def run_folder(tmp_path):
    """A copy of the fixture's run folder (its options name absolute paths of the machine that made it)."""
    folder = tmp_path / "00000-old-run"
    shutil.copytree(FIXTURE, folder)
    return folder


def assert_matches_continued_run(data):
    expected = np.load(os.path.join(FIXTURE, "continued.npz"))
    assert data["progress"]["cur_nimg"] == int(expected["cur_nimg"]) == 48
    tensors = state_tensors(data, keys=("G", "D", "G_ema", "augment_pipe"))
    for opt in ("G_opt", "D_opt"):
        tensors.update({f"{opt}.{name}": t for name, t in
                        flat_optimizer_state(data["progress"]["optimizers"][opt]).items()})
    tensors["pl_mean"] = data["progress"]["pl_mean"]
    assert set(tensors) == set(expected.files) - {"cur_nimg"}
    # Bitwise on the machine that made the fixture; the tolerances of tests/test_ddp.py allow for another
    # CPU's float summation order.
    for name, tensor in tensors.items():
        reference = torch.from_numpy(expected[name])
        atol = 1e-7 + 1e-5 * float(reference.abs().max()) if reference.numel() else 0
        torch.testing.assert_close(tensor.to(reference.dtype), reference, rtol=1e-4, atol=atol, msg=name)


def test_old_options_file_reads_with_every_value(run_folder):
    raw = json.load(open(run_folder / "training_options.json"))
    options = TrainingOptions.load(str(run_folder / "training_options.json"))
    assert options.device == raw["device_type"] == "cpu"
    assert options.grid == [2, 4] and raw["grid_size"] == [4, 2]  # (rows, cols) now, (cols, rows) then.
    values = options.to_dict()
    for key, value in raw.items():
        if key not in RENAMED_KEYS:
            assert values[key] == value, key


def test_old_run_folder_resumes_from_its_options_file(run_folder, tmp_path):
    options = TrainingOptions.load(str(run_folder / "training_options.json"))
    options = options.replace(training_set_kwargs=dict(options.training_set_kwargs,
                                                       path=str(run_folder / "figures.zip")),
                              resume_pkl=snapshots(str(run_folder))[-1], total_kimg=0.048)
    status = launch.launch(options, outdir=str(tmp_path / "runs"), desc="resumed")
    assert status == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert "Resumed at kimg 0.024 (tick 4, step 6)" in (run_dir / "log.txt").read_text()
    assert_matches_continued_run(load(snapshots(str(run_dir))[-1]))


@pytest.mark.slow
def test_old_run_folder_resumes_through_train_options(run_folder, tmp_path):
    # What `train.py --resume=<run folder>` with the run's options does; the networks come from the snapshot.
    resume = launch.find_latest_snapshot(str(run_folder))
    status, run_dir = train_in_process(tmp_path / "runs", data=str(run_folder / "figures.zip"), kimg=0.048,
                                       resume=resume, **COMMAND)
    assert status == 0
    options = json.load(open(os.path.join(run_dir, "training_options.json")))
    assert options["fine_tune"] is False and options["G_kwargs"]["z_dim"] == 16
    assert_matches_continued_run(load(snapshots(run_dir)[-1]))
