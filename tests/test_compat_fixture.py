"""The reference checkpoint of the original code loads here and reproduces the outputs it computed."""
import os

import numpy as np
import pytest
import torch

import legacy
from latent import space
from helpers import quick_every
from training.loss import r1_penalty


@pytest.fixture(scope="module", params=quick_every(["pkl", "safetensors"], 2))
def fixture(request, compat_dir, tmp_path_factory):
    path = os.path.join(compat_dir, "tiny_64x32.pkl")
    if request.param == "safetensors":  # the plain-weights export must reproduce the same outputs
        from sg2_cli import convert
        exported = str(tmp_path_factory.mktemp("plain_weights") / "tiny_64x32.safetensors")
        convert.convert_checkpoint(path, exported)
        path = exported
    with open(path, "rb") as f:
        nets = legacy.load_network_pkl(f)
    expected = dict(np.load(os.path.join(compat_dir, "tiny_64x32_expected.npz")))
    return nets, expected


def _label(nets, n):
    return torch.zeros([n, nets["G_ema"].c_dim])


def test_loads_every_key(fixture):
    nets, _ = fixture
    assert type(nets["G"]).__name__ == "Generator" and type(nets["G_ema"]).__name__ == "Generator"
    assert type(nets["D"]).__name__ == "Discriminator"
    assert nets["augment_pipe"] is None
    assert nets["training_set_kwargs"].square is False
    assert (nets["G_ema"].img_height, nets["G_ema"].img_width) == (64, 32)


def test_z_follows_seed_convention(fixture):
    # The original code's z of each seed, made by this package's seed_to_z, and the ws that generate.py and the
    # other tools compute from the seeds alone.
    nets, expected = fixture
    for seed, z in zip(expected["seeds"], expected["z"]):
        np.testing.assert_array_equal(space.seed_to_z(int(seed), 512).astype(np.float32), z[np.newaxis])
    ws = space.seeds_to_ws(nets["G_ema"], [int(seed) for seed in expected["seeds"]], truncation_psi=0.7)
    np.testing.assert_allclose(ws.numpy(), expected["ws_psi0.7"], atol=1e-4, rtol=0)


@pytest.mark.parametrize("psi", ["1.0", "0.7"])
def test_mapping_matches(fixture, psi):
    nets, expected = fixture
    z = torch.from_numpy(expected["z"])
    ws = nets["G_ema"].mapping(z, _label(nets, len(z)), truncation_psi=float(psi))
    np.testing.assert_allclose(ws.detach().numpy(), expected[f"ws_psi{psi}"], atol=1e-4, rtol=0)


@pytest.mark.parametrize("psi", quick_every(["1.0", "0.7"], 2))
@pytest.mark.parametrize("noise_mode", quick_every(["const", "none"], 2))
def test_synthesis_matches(fixture, psi, noise_mode):
    nets, expected = fixture
    ws = torch.from_numpy(expected[f"ws_psi{psi}"])
    img = nets["G_ema"].synthesis(ws, noise_mode=noise_mode, force_fp32=True)
    assert img.shape == (len(ws), 3, 64, 32)
    np.testing.assert_allclose(img.detach().numpy(), expected[f"img_{noise_mode}_psi{psi}"], atol=1e-3, rtol=0)


@pytest.mark.parametrize("psi", quick_every(["1.0", "0.7"], 2))
def test_uint8_images_match(fixture, psi):
    nets, expected = fixture
    G = nets["G_ema"]
    z = torch.from_numpy(expected["z"])
    img = G(z, _label(nets, len(z)), truncation_psi=float(psi), noise_mode="const", force_fp32=True)
    got = (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy().astype(int)
    diff = np.abs(got - expected[f"uint8_const_psi{psi}"].astype(int))
    assert diff.max() <= 1
    assert (diff > 0).mean() <= 0.001


@pytest.mark.parametrize("inputs,logits", quick_every([("img_const_psi1.0", "D_logits_gen"),
                                                        ("D_input_rand", "D_logits_rand")], 2, several_names=True))
def test_discriminator_matches(fixture, inputs, logits):
    nets, expected = fixture
    x = torch.from_numpy(expected[inputs])
    out = nets["D"](x, _label(nets, len(x)), force_fp32=True)
    np.testing.assert_allclose(out.detach().numpy(), expected[logits], atol=1e-3, rtol=0)


def test_r1_penalty_matches(fixture):
    nets, expected = fixture
    x = torch.from_numpy(expected["D_input_rand"])
    penalty = r1_penalty(nets["D"], x, _label(nets, len(x)), force_fp32=True)
    np.testing.assert_allclose(penalty.numpy(), expected["r1_penalty_rand"], rtol=1e-3)
