"""Projection of photos into a generator (latent/projection.py, projector.py) and rendering saved latents."""
import os

import numpy as np
import PIL.Image
import pytest
import torch

from helpers_latent import reference_image, reference_ws, run_tool, save_generator, tiny_generator
from latent import projection, space, video
from metrics.stand_in_detector import save_stand_in_detector

PAD = (32, 64, 96)


@pytest.fixture(scope="module")
def vgg16_path(tmp_path_factory):
    """A TorchScript stand-in with the real VGG16 file's call signature (return_lpips=True, resize_images)."""
    return save_stand_in_detector(str(tmp_path_factory.mktemp("detector") / "vgg16-standin.pt"))


def _png(path):
    return np.array(PIL.Image.open(path))


def _distance(vgg16, image, target):
    """The LPIPS stand-in distance of two uint8 images, computed here from the detector alone."""
    batch = torch.from_numpy(np.stack([image, target])).permute(0, 3, 1, 2).to(torch.float32)
    features = vgg16(batch, resize_images=False, return_lpips=True)
    return float((features[0] - features[1]).square().sum())


@pytest.mark.slow
def test_projection_converges_and_wplus_then_pti_fit_better(vgg16_path, one_torch_thread):
    G = tiny_generator((2, 1), res=32)
    target = reference_image(G, reference_ws(G, 5))
    vgg16 = torch.jit.load(vgg16_path).eval()
    w_avg, _ = projection.w_statistics(G)
    start = space.synthesize(G, w_avg.repeat([1, G.num_ws, 1]))[0]
    steps = 60
    in_w = projection.project(G, target, vgg16, "w", steps, seed=0)
    in_wplus = projection.project(G, target, vgg16, "wplus", steps, seed=0)  # from the mean: the same budget
    G_pti, _ = projection.pivotal_tuning(G, in_w["ws"], target, vgg16, steps // 2, noise=in_w["noise"])

    images = dict(w=space.synthesize(G, in_w["ws"], noise=in_w["noise"])[0],
                  wplus=space.synthesize(G, in_wplus["ws"], noise=in_wplus["noise"])[0],
                  pti=space.synthesize(G_pti, in_w["ws"])[0])
    dist = {name: _distance(vgg16, image, target) for name, image in images.items()}
    mse = {name: float(((image.astype(float) - target) ** 2).mean()) for name, image in images.items()}
    start_dist, start_mse = _distance(vgg16, start, target), float(((start.astype(float) - target) ** 2).mean())
    # The search finds the photo: both errors fall below half of the mean w's (60 steps reach about 0.3).
    assert dist["w"] < 0.5 * start_dist and mse["w"] < 0.5 * start_mse, (dist, mse, start_dist, start_mse)
    assert dist["wplus"] < dist["w"], dist
    assert dist["pti"] < min(dist["w"], dist["wplus"]) and mse["pti"] < mse["w"], (dist, mse)


@pytest.mark.slow
def test_projector_outputs_reproduce_through_generate(tmp_path, vgg16_path):
    G = tiny_generator((2, 1), res=32)
    pkl = save_generator(G, tmp_path / "G.pkl")
    PIL.Image.fromarray(reference_image(G, reference_ws(G, 9))).save(tmp_path / "photo.png")
    out = tmp_path / "out"
    result = run_tool("projector.py", f"--network={pkl}", f"--target={tmp_path}/photo.png", "--num-steps=6",
                      "--space=wplus", "--wplus-init=w", "--pti-steps=4", "--save-video", f"--vgg16={vgg16_path}",
                      f"--outdir={out}", "--device=cpu")
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(out)) == ["log.txt", "proj.mp4", "proj.png", "proj_pti.png", "projected_w.npz",
                                       "pti_G.pkl", "target.png"]
    with np.load(out / "projected_w.npz") as data:
        assert data["w"].shape == (1, G.num_ws, G.w_dim) and data["w"].dtype == np.float32
    for network, proj in ((pkl, "proj.png"), (out / "pti_G.pkl", "proj_pti.png")):
        again = run_tool("generate.py", f"--network={network}", f"--projected-w={out}/projected_w.npz",
                         f"--outdir={tmp_path}/again-{proj}", "--device=cpu")
        assert again.returncode == 0, again.stderr
        assert np.array_equal(_png(tmp_path / f"again-{proj}" / "proj00.png"), _png(out / proj))
    frames = video.read_video(str(out / "proj.mp4"))
    assert len(frames) == 6 + 6 + 4 and frames[0].shape == (G.img_height, 2 * G.img_width, 3)
    assert np.abs(frames[0][:, :G.img_width].astype(int) - _png(out / "target.png")).mean() < 8  # target on the left
    log = (out / "log.txt").read_text().splitlines()
    assert sum(line.startswith(("w step", "wplus step", "pti step")) for line in log) == 16


def _photo(width=300, height=400):
    """A figure on grey touching all four sides: red head at the top, green feet at the bottom, blue and
    yellow hands at the left and right edges."""
    img = np.full([height, width, 3], 200, np.uint8)
    img[:40, 130:170] = (255, 0, 0)
    img[-40:, 120:180] = (0, 255, 0)
    img[150:190, :30] = (0, 0, 255)
    img[150:190, -30:] = (255, 255, 0)
    return img


def _has(img, color, tol=60):
    return bool((np.abs(img.astype(int) - color).max(axis=2) < tol).any())


@pytest.mark.slow
def test_other_aspect_is_padded_not_cropped(tmp_path, vgg16_path):
    G = tiny_generator((2, 1), res=64)  # 64x32
    pkl = save_generator(G, tmp_path / "G.pkl")
    PIL.Image.fromarray(_photo()).save(tmp_path / "photo.jpg", quality=95)
    result = run_tool("projector.py", f"--network={pkl}", f"--target={tmp_path}/photo.jpg", "--num-steps=1",
                      "--pad-color=32,64,96", f"--vgg16={vgg16_path}", f"--outdir={tmp_path}/out", "--device=cpu")
    assert result.returncode == 0, result.stderr
    fitted = _png(tmp_path / "out" / "target.png")
    assert fitted.shape == (64, 32, 3)
    # 300x400 scaled by 32/300 is 32x43, centred: rows 10-52 hold the photo, the rest is padding.
    assert (fitted[:10] == PAD).all() and (fitted[53:] == PAD).all()
    for color in [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]:
        assert _has(fitted[10:53], color), color  # head, feet and both hands are all in the frame


def test_fit_modes():
    photo = PIL.Image.fromarray(_photo())
    padded = projection.fit_target(photo, 64, 32, "pad", PAD)
    cropped = projection.fit_target(photo, 64, 32, "crop", PAD)
    stretched = projection.fit_target(photo, 64, 32, "stretch", PAD)
    assert padded.shape == cropped.shape == stretched.shape == (64, 32, 3)
    assert not _has(cropped, (0, 0, 255)) and not _has(cropped, (255, 255, 0))  # crop cuts the hands off ...
    assert _has(cropped, (255, 0, 0)) and _has(cropped, (0, 255, 0))  # ... but keeps the full height
    assert not _has(stretched, PAD, tol=5) and _has(stretched, (0, 0, 255))
    wide = PIL.Image.fromarray(_photo(width=400, height=100))
    assert (projection.fit_target(wide, 64, 32, "pad", PAD)[:20] == PAD).all()


def test_noise_regularisation_prefers_white_noise():
    gen = torch.Generator().manual_seed(0)
    white = torch.randn([32, 16], generator=gen)
    smooth = torch.nn.functional.avg_pool2d(torch.randn([1, 1, 34, 18], generator=gen), 3, stride=1)[0, 0]
    smooth = (smooth - smooth.mean()) / smooth.std()
    assert projection.noise_regularisation([smooth]) > 10 * projection.noise_regularisation([white])


def test_learning_rate_schedule():
    assert projection.learning_rate(0.0) == 0
    assert projection.learning_rate(0.5) == pytest.approx(projection.INITIAL_LR)
    assert projection.learning_rate(0.9) < projection.INITIAL_LR and projection.learning_rate(0.999) < 1e-3


@pytest.mark.parametrize("case", ["not-an-image", "no-g-ema"])
def test_bad_input_is_one_line_error(tmp_path, vgg16_path, case):
    G = tiny_generator((2, 1), res=16)
    pkl = save_generator(G, tmp_path / "G.pkl")
    target = tmp_path / "photo.png"
    PIL.Image.fromarray(np.zeros([20, 10, 3], np.uint8)).save(target)
    if case == "not-an-image":
        target = tmp_path / "notes.png"
        target.write_text("not an image")
        named = str(target)
    else:
        import legacy
        legacy.save_network_pkl(str(tmp_path / "D-only.pkl"), dict(G=G))
        pkl = named = str(tmp_path / "D-only.pkl")
    result = run_tool("projector.py", f"--network={pkl}", f"--target={target}", "--num-steps=1",
                      f"--vgg16={vgg16_path}", f"--outdir={tmp_path}/out", "--device=cpu")
    assert result.returncode != 0 and named in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_bf16_projection_runs_the_network_in_bf16_and_lowers_the_loss(vgg16_path, one_torch_thread, monkeypatch):
    # The projector's --dtype=bf16 is the networks' bfloat16 synthesis (not autocast): every block sees dtype=bf16,
    # gradients flow back to the float32 latent, and the search still improves on where it started.
    G = tiny_generator((2, 1), res=32)
    target = reference_image(G, reference_ws(G, 5))
    vgg16 = torch.jit.load(vgg16_path).eval()
    seen = []
    block = G.synthesis.b32
    original_forward = block.forward
    monkeypatch.setattr(block, "forward", lambda *a, **kw: seen.append(kw.get("dtype")) or original_forward(*a, **kw))
    result = projection.project(G, target, vgg16, "w", 20, seed=0, dtype=torch.bfloat16)
    assert seen and all(dtype == torch.bfloat16 for dtype in seen)
    assert result["ws"].dtype == torch.float32
    assert result["final_loss"] < result["losses"][0]


def test_bf16_pivotal_tuning_runs_the_network_in_bf16(vgg16_path, one_torch_thread, monkeypatch):
    # PTI keeps float32 by default (force_fp32), but an explicit bfloat16 must reach every block.
    from training import networks
    G = tiny_generator((2, 1), res=32)
    ws = reference_ws(G, 5)
    target = reference_image(G, ws)
    vgg16 = torch.jit.load(vgg16_path).eval()
    block_dtypes = []
    original = networks._block_dtype
    monkeypatch.setattr(networks, "_block_dtype", lambda *a: block_dtypes.append(original(*a)) or block_dtypes[-1])
    projection.pivotal_tuning(G, ws, target, vgg16, 2, dtype=torch.bfloat16)
    assert block_dtypes and set(block_dtypes) == {torch.bfloat16}
    block_dtypes.clear()
    projection.pivotal_tuning(G, ws, target, vgg16, 2)
    assert block_dtypes and set(block_dtypes) == {torch.float32}


def test_the_search_seed_is_the_command_line_one():
    import inspect
    from sg2_cli import projector
    option = next(p for p in projector.main.params if p.name == "seed")
    for fn in (projection.project, projection.project_stages, projector.run_projection):
        assert inspect.signature(fn).parameters["seed"].default == option.default == 303, fn.__name__
