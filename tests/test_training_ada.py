"""A short CPU run with --aug=ada: p moves, is logged, and the snapshot's augment_pipe carries it back."""
import json
import os

import pytest
import torch

from helpers_training import load, make_figures, snapshots, tiny_options, train_in_process


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.slow
def test_ada_p_moves_and_is_saved(tmp_path):
    figures = make_figures(tmp_path / "figures.zip", num=32)
    # A fast controller (p can go 0 -> 1 in 100 images) so a few steps show it move.
    opts = tiny_options(figures, aug="ada", augpipe="body", ada_kimg=0.1)
    status, run_dir = train_in_process(tmp_path / "runs", kimg=0.064, **opts)
    assert status == 0

    stats = [json.loads(line) for line in open(os.path.join(run_dir, "stats.jsonl"))]
    logged_p = [s["Progress/augment"]["mean"] for s in stats if "Progress/augment" in s]
    assert logged_p and max(logged_p) > 0, logged_p  # p starts at 0 and must have moved

    data = load(snapshots(run_dir)[-1])
    pipe = data["augment_pipe"]
    assert type(pipe).__name__ == "AugmentPipe"
    torch.testing.assert_close(pipe.p, torch.as_tensor(logged_p[-1]), rtol=0, atol=1e-6)
    assert not pipe.rotate and not pipe.rotate90 and pipe.xflip  # the 'body' pipe came back, not a default
