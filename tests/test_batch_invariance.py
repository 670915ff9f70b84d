"""A seed's image does not depend on the batch that computed it (CPU, issue 22).

On the CPU a batch runs one sample at a time through batch 1's path (networks.runs_per_sample), so every
image is bitwise the image of batch 1, which is the original form (the fused modulated convolution, NCHW)
wherever modconv_plan picks it. The reference here is that original form, called one image at a time.
"""
import numpy as np
import pytest
import torch

import legacy
from latent import generation, space
from training import networks

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
ORIGINAL_FORM = dict(fused_modconv=True, channels_last=False)


@pytest.fixture(scope="module")
def fixture_G(compat_dir):
    with open(f"{compat_dir}/tiny_64x32.pkl", "rb") as f:
        return legacy.load_network_pkl(f)["G_ema"]


def seed_z(seeds):
    return torch.from_numpy(np.concatenate([space.seed_to_z(seed, 512) for seed in seeds]))


def images_of(G, seeds, **kwargs):
    with torch.no_grad():
        img = G(seed_z(seeds), torch.zeros(len(seeds), 0), noise_mode="const", **kwargs)
    return dict(zip(seeds, img))


def test_per_sample_only_for_cpu_inference_of_batches():
    assert networks.runs_per_sample(CPU, False, 2)
    assert not networks.runs_per_sample(CPU, False, 1)  # batch 1 is the per-sample form already
    assert not networks.runs_per_sample(CPU, True, 4)  # training keeps the batched unfused form
    assert not networks.runs_per_sample(CUDA, False, 4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_seed_gives_the_same_pixels_in_any_batch(fixture_G, dtype):
    kwargs = dict(dtype=dtype) if dtype != torch.float32 else {}
    pair, single, three = (images_of(fixture_G, seeds, **kwargs) for seeds in ([0, 5], [0], [5, 0, 3]))
    assert torch.equal(pair[0], single[0]) and torch.equal(three[0], single[0])
    assert torch.equal(pair[5], three[5])
    assert not torch.equal(pair[0], pair[5])


def test_each_image_of_a_batch_is_the_original_form_at_batch_one(fixture_G):
    batch = images_of(fixture_G, [0, 5, 3])
    for seed in (0, 5, 3):
        assert torch.equal(batch[seed], images_of(fixture_G, [seed], **ORIGINAL_FORM)[seed])


def test_per_sample_style_offsets_are_each_images_own(fixture_G):
    # S-space edits: an [N, C] offset gives image i its row i, a [C] offset is shared by every image; each image
    # is the one its own offsets give at batch 1.
    synthesis = fixture_G.synthesis
    channels = [getattr(synthesis, f"b{res}").conv1.in_channels if name == "conv1" else
                getattr(synthesis, f"b{res}").conv0.in_channels
                for res in synthesis.block_resolutions for name in ("conv0", "conv1")
                if hasattr(getattr(synthesis, f"b{res}"), name)]
    generator = torch.Generator().manual_seed(2)
    offsets = [torch.randn([2, c], generator=generator) if i % 2 else torch.randn([c], generator=generator)
               for i, c in enumerate(channels)]
    ws = fixture_G.mapping(seed_z([0, 5]), torch.zeros(2, 0))
    with torch.no_grad():
        batch = synthesis(ws, offsets, noise_mode="const")
        for i in range(2):
            own = [t[i:i + 1] if t.ndim == 2 else t for t in offsets]
            assert torch.equal(batch[i], synthesis(ws[i:i + 1], own, noise_mode="const")[0])
    assert not torch.equal(batch[0], batch[1])


def test_mapping_rows_do_not_depend_on_the_batch(fixture_G):
    # A matrix product rounds differently for 1 row and for 4 (measured on this CPU's BLAS); the mapping
    # network runs row by row on the CPU so that w, like the image, is the batch-1 value.
    with torch.no_grad():
        batch = fixture_G.mapping(seed_z([0, 5, 3, 1]), torch.zeros(4, 0), truncation_psi=0.7)
        for row, seed in enumerate((0, 5, 3, 1)):
            single = fixture_G.mapping(seed_z([seed]), torch.zeros(1, 0), truncation_psi=0.7)
            assert torch.equal(batch[row], single[0])


def test_random_noise_is_drawn_as_the_batched_pass_draws_it(fixture_G, monkeypatch):
    # The per-sample pass draws every layer's noise for the whole batch first; the maps, and their order in
    # torch's random stream, must be those the layers draw themselves in a batched pass.
    drawn = []
    randn = torch.randn

    def recording_randn(*args, **kwargs):
        drawn.append(randn(*args, **kwargs))
        return drawn[-1]

    ws = fixture_G.mapping(seed_z([0, 5, 3]), torch.zeros(3, 0))
    with torch.no_grad():
        monkeypatch.setattr(torch, "randn", recording_randn)
        torch.manual_seed(11)
        batched = fixture_G.synthesis(ws, noise_mode="random", **ORIGINAL_FORM)
        monkeypatch.setattr(torch, "randn", randn)
        torch.manual_seed(11)
        ahead = fixture_G.synthesis._draw_random_noise(3, CPU)
        torch.manual_seed(11)
        per_sample = fixture_G.synthesis(ws, noise_mode="random")
    maps = [layers[name] for res, layers in ahead.items() for name in ("conv0", "conv1") if name in layers]
    assert len(maps) == len(drawn) == fixture_G.synthesis.num_ws - 1  # every conv layer, none twice
    assert all(torch.equal(a, b) for a, b in zip(maps, drawn))
    # The same noise: the images agree up to the float rounding of the grouped convolution.
    torch.testing.assert_close(per_sample, batched, atol=1e-4, rtol=0)


def test_explicit_form_still_runs_the_batch_at_once(fixture_G):
    # A caller who picks the form (as the benchmarks' "original form" column does) gets that form batched.
    ws = fixture_G.mapping(seed_z([0, 5]), torch.zeros(2, 0))
    calls = []
    hook = fixture_G.synthesis.b4.register_forward_pre_hook(lambda module, args: calls.append(args[2].shape[0]))
    try:
        with torch.no_grad():
            fixture_G.synthesis(ws, noise_mode="const", **ORIGINAL_FORM)
            fixture_G.synthesis(ws, noise_mode="const")
    finally:
        hook.remove()
    assert calls == [2, 1, 1]


def test_generate_images_do_not_depend_on_the_batch_size(fixture_G):
    one = dict(generation.generate_images(fixture_G, [3, 4, 5], truncation_psi=0.7, batch_size=1))
    three = dict(generation.generate_images(fixture_G, [5, 3, 4], truncation_psi=0.7, batch_size=3))
    assert all(np.array_equal(one[seed], three[seed]) for seed in one)


def test_tools_default_to_batch_one_on_the_cpu():
    # Every batch size costs the same per image on the CPU (each sample runs alone), so the least memory wins.
    assert generation.default_batch(CPU) == 1 and generation.default_batch("cpu") == 1
    assert generation.default_batch(CUDA) == 16
