"""README.md's notebook example runs as written (on the reference network and a tiny dataset) and its results
agree with each other."""
import os
import re

import numpy as np
import pytest
import torch

from helpers import ROOT
from metrics.stand_in_detector import save_stand_in_detector
from test_metrics_pipeline import write_zip

MARKER = "<!-- tests/test_readme.py runs this block -->"


def notebook_example():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    after = text.split(MARKER, 1)[1]
    return re.search(r"```python\n(.*?)```", after, re.S).group(1)


@pytest.mark.slow
def test_notebook_example_runs(compat_dir, tmp_path, monkeypatch, capsys):
    network = os.path.join(compat_dir, "tiny_64x32.pkl")
    data = write_zip(tmp_path / "data.zip", 40)
    monkeypatch.setenv("SG2_INCEPTION_DETECTOR", save_stand_in_detector(str(tmp_path / "inception.pt"), num_features=16))
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    code = notebook_example()
    assert '"SHHQ-1.0_sg2_512.pkl"' in code and '"datasets/shhq-512x256.zip"' in code
    code = code.replace('"SHHQ-1.0_sg2_512.pkl"', repr(network)).replace('"datasets/shhq-512x256.zip"', repr(data))
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)

    G, ws, images = scope["G"], scope["ws"], scope["images"]
    assert ws.shape == (3, G.num_ws, G.w_dim) and images[0].shape == (G.img_height, G.img_width, 3)
    for seed, image in zip([0, 1, 2], images):  # mapping + synthesis gives G(z, c)'s pixels (batches round apart)
        assert np.abs(image.astype(int) - scope["by_seed"][seed].astype(int)).max() <= 1
    diff = np.abs(scope["fast"][0].astype(int) - images[0].astype(int))
    assert diff.max() <= 8 and diff.mean() <= 1  # bfloat16: within the bound of tests/test_speed_paths.py
    assert set(scope["mixed"]) == {(0, 10), (0, 11), (1, 10), (1, 11)}
    assert scope["found"].shape == (5, G.w_dim) and scope["strip"].shape == (G.img_height, 3 * G.img_width, 3)
    assert np.array_equal(scope["strip"][:, G.img_width:2 * G.img_width], images[0])  # strength 0 is the image
    saved = np.load(tmp_path / "seed0000.npz")["w"]
    torch.testing.assert_close(torch.from_numpy(saved), ws[:1])
    assert scope["quick"].results["fid50k_full"] > 0 and "fid50k_full" in capsys.readouterr().out
