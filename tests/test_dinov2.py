"""The DINOv2 ViT (metrics/dinov2.py) against timm's implementation, its loading, and its download."""
import functools
import hashlib
import io
import os
import pickle

import numpy as np
import pytest
import torch

import dnnlib
from helpers_http import Route, serve
from metrics import detectors
from metrics import dinov2
from metrics import metric_utils
from metrics import stand_in_detector
from test_download import no_proxy  # noqa: F401 (autouse: loopback requests bypass any proxy)
from test_metrics_pipeline import private_cache  # noqa: F401 (autouse: a private cache, no detector env vars)

timm_vit = pytest.importorskip("timm.models.vision_transformer", reason="timm (the test extra) is the reference")


def random_vit(seed=0, **kwargs):
    """A small DINOv2 ViT with every parameter random (LayerScale and norms too, so that all of them matter)."""
    torch.manual_seed(seed)
    vit = dinov2.VisionTransformer(**kwargs)
    with torch.no_grad():
        for param in vit.parameters():
            param.normal_(0, 0.2)
    return vit.eval()


def timm_twin(vit, img_size):
    """timm's ViT of the same shape for img_size inputs, loaded with vit's tensors (timm has no mask token).
    For another grid than vit's, the position embeddings are moved first (checked on their own below)."""
    width = vit.cls_token.shape[-1]
    twin = timm_vit.VisionTransformer(
        img_size=img_size, patch_size=vit.patch_size, embed_dim=width, depth=len(vit.blocks),
        num_heads=vit.blocks[0].attn.num_heads, mlp_ratio=4, init_values=1.0, num_classes=0, global_pool="token",
        norm_layer=functools.partial(torch.nn.LayerNorm, eps=1e-6))
    state_dict = {key: value for key, value in vit.state_dict().items() if key != "mask_token"}
    grid = img_size // vit.patch_size
    state_dict["pos_embed"] = dinov2.interpolate_pos_embed(vit.pos_embed.detach(), (grid, grid))
    twin.load_state_dict(state_dict)
    return twin.eval()


def test_vit_agrees_with_timm_on_its_own_grid():
    vit = random_vit(embed_dim=128, depth=3, num_heads=2, patch_size=14, pos_grid=4)
    images = torch.randn([3, 3, 56, 56])
    with torch.no_grad():
        np.testing.assert_allclose(vit(images).numpy(), timm_twin(vit, 56)(images).numpy(), atol=1e-4, rtol=0)


def bicubic_weights(t, a=-0.75):
    """The cubic convolution kernel (Keys 1981) at offsets t-1, t, t+1, t+2, with PyTorch's a = -0.75."""
    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.array([far(t + 1), near(t), near(1 - t), far(2 - t)])


def resample_axis(values, out_size, scale):
    """Bicubic resampling of axis 0 with the sampling positions of a scale factor (not of the output size):
    output i reads input (i + 0.5) / scale - 0.5, borders replicated."""
    out = []
    for i in range(out_size):
        src = (i + 0.5) / scale - 0.5
        base = int(np.floor(src))
        taps = np.clip(np.arange(base - 1, base + 3), 0, len(values) - 1)
        out.append(np.tensordot(bicubic_weights(src - base), values[taps], axes=1))
    return np.stack(out)


def test_position_embeddings_move_to_a_new_grid_as_dinov2_moves_them():
    side, grid, width = 37, (16, 16), 8
    pos_embed = torch.randn([1, 1 + side * side, width], dtype=torch.float64)
    got = dinov2.interpolate_pos_embed(pos_embed, grid)[0].numpy()
    table = pos_embed[0, 1:].numpy().reshape(side, side, width)
    scale = (grid[0] + 0.1) / side  # DINOv2's offset: (n + 0.1) / m
    rows = resample_axis(table, grid[0], scale)
    expected = resample_axis(rows.transpose(1, 0, 2), grid[1], scale).transpose(1, 0, 2)
    np.testing.assert_allclose(got[0], pos_embed[0, 0].numpy())  # the class token's embedding is kept
    # DINOv2 interpolates in float32 (what the 1e-5 allows); sampling by output size instead would miss by ~0.1.
    np.testing.assert_allclose(got[1:].reshape(*grid, width), expected, atol=3e-5, rtol=0)
    assert dinov2.interpolate_pos_embed(pos_embed, (side, side)) is pos_embed  # its own grid: untouched


def test_vit_at_224_with_the_518_grid_agrees_with_timm_given_the_moved_embeddings():
    """The released shape's path: 224x224 input, embeddings learned on 37x37 patches, a thin random ViT."""
    vit = random_vit(seed=1, embed_dim=64, depth=2, num_heads=1, patch_size=14, pos_grid=37)
    twin = timm_twin(vit, 224)
    with torch.no_grad():
        images = torch.randn([2, 3, 224, 224])
        np.testing.assert_allclose(vit(images).numpy(), twin(images).numpy(), atol=1e-4, rtol=0)


def test_detector_preprocesses_as_edm2(tmp_path):
    transforms = pytest.importorskip("torchvision.transforms.v2", reason="torchvision (timm's dependency)")
    path = stand_in_detector.save_stand_in_dinov2(str(tmp_path / "dinov2.pth"), embed_dim=64)
    detector = dinov2.load_dinov2_detector(path)
    images = torch.randint(0, 256, [2, 3, 64, 32], dtype=torch.uint8)
    reference = transforms.Compose([  # EDM2: float, bicubic with antialiasing to 224x224, [0, 1], ImageNet norm
        transforms.ToDtype(torch.float32), transforms.Resize((224, 224), transforms.InterpolationMode.BICUBIC,
                                                             antialias=True),
        transforms.Lambda(lambda x: x / 255), transforms.Normalize(dinov2.IMAGENET_MEAN, dinov2.IMAGENET_STD)])
    with torch.no_grad():
        expected = timm_twin(detector.vit, 224)(reference(images))
        np.testing.assert_allclose(detector(images).numpy(), expected.numpy(), atol=1e-4, rtol=0)
    assert detector(images).shape == (2, 64)


# ----------------------------------------------------------------------------
# Loading: weights only, every key and shape checked.


def test_state_dict_file_round_trip_and_architecture(tmp_path):
    vit = random_vit(embed_dim=128, depth=2, num_heads=2, patch_size=14, pos_grid=5)
    torch.save(vit.state_dict(), tmp_path / "vit.pth")
    detector = dinov2.load_dinov2_detector(str(tmp_path / "vit.pth"))
    assert dinov2.architecture_of(vit.state_dict()) == dict(embed_dim=128, depth=2, num_heads=2, mlp_ratio=4,
                                                                     patch_size=14, pos_grid=5)
    for key, value in vit.state_dict().items():
        assert torch.equal(detector.vit.state_dict()[key], value)


@pytest.mark.parametrize("edit,message", [
    (lambda sd: sd.pop("norm.bias"), "missing norm.bias"),
    (lambda sd: sd.update(register_tokens=torch.zeros(1, 4, 16)), "unexpected register_tokens"),
    (lambda sd: sd.update({"blocks.0.ls1.gamma": torch.zeros(3)}), "misshapen blocks.0.ls1.gamma"),
    (lambda sd: sd.pop("cls_token"), "no tensor 'cls_token'"),
])
def test_state_dicts_of_other_networks_are_refused(tmp_path, edit, message):
    path = stand_in_detector.save_stand_in_dinov2(str(tmp_path / "sd.pth"))
    state_dict = torch.load(path, weights_only=True)
    edit(state_dict)
    torch.save(state_dict, tmp_path / "edited.pth")
    with pytest.raises(dnnlib.util.UserError, match=f"^--dinov2: .*edited.pth is not a weights-only state dict .*"
                                                    f"{message}.*SG2_DINOV2_DETECTOR=PATH"):
        detectors.get_feature_detector(
            metric_utils.MetricOptions(device="cpu", detectors=dict(dinov2=str(tmp_path / "edited.pth"))), "dinov2")


class _Sentinel:
    """Unpickling this creates a folder: proof that the file was unpickled with code."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.makedirs, (self.path,))


def test_a_pickle_with_code_is_refused_and_never_run(tmp_path):
    sentinel = str(tmp_path / "unpickled")
    torch.save({"cls_token": _Sentinel(sentinel)}, tmp_path / "hostile.pth")
    with pytest.raises(dnnlib.util.UserError, match="--dinov2: .*hostile.pth is not a weights-only state dict"):
        detectors.get_feature_detector(
            metric_utils.MetricOptions(device="cpu", detectors=dict(dinov2=str(tmp_path / "hostile.pth"))), "dinov2")
    assert not os.path.exists(sentinel)
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump(_Sentinel(sentinel), f)
    with pytest.raises(dnnlib.util.UserError, match="--dinov2: .*plain.pkl is not a weights-only state dict"):
        detectors.get_feature_detector(  # read weights-only, so a .pkl name is no reason to refuse it unread
            metric_utils.MetricOptions(device="cpu", detectors=dict(dinov2=str(tmp_path / "plain.pkl"))), "dinov2")
    assert not os.path.exists(sentinel)


def test_environment_variable_names_a_local_copy(tmp_path, monkeypatch):
    path = stand_in_detector.save_stand_in_dinov2(str(tmp_path / "local.pth"))
    monkeypatch.setenv("SG2_DINOV2_DETECTOR", path)
    opts = metric_utils.MetricOptions(device="cpu")
    assert detectors.detector_spec(opts, "dinov2") == (path, "$SG2_DINOV2_DETECTOR")
    detector = detectors.get_feature_detector(opts, "dinov2")
    assert detector(torch.zeros([1, 3, 64, 32], dtype=torch.uint8)).shape == (1, 16)


# ----------------------------------------------------------------------------
# Download of the official file: a loopback server plays the host.

OFFICIAL_PATH = "/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth"


@pytest.fixture
def weights(tmp_path):
    path = stand_in_detector.save_stand_in_dinov2(str(tmp_path / "served.pth"))
    with open(path, "rb") as f:
        return f.read()


def test_official_weights_download_once_and_are_checked(weights, monkeypatch):
    with serve({OFFICIAL_PATH: Route(weights)}) as server:
        url = server.base_url + OFFICIAL_PATH
        monkeypatch.setitem(detectors.DETECTORS["dinov2"], "url", url)
        monkeypatch.setitem(detectors.DETECTORS["dinov2"], "sha256", hashlib.sha256(weights).hexdigest())
        monkeypatch.setattr(detectors, "_detector_cache", {})
        first = detectors.get_feature_detector(metric_utils.MetricOptions(device="cpu"), "dinov2")
        monkeypatch.setattr(detectors, "_detector_cache", {})  # a new process: loads again, from the cache
        second = detectors.get_feature_detector(metric_utils.MetricOptions(device="cpu"), "dinov2")
        assert [request["method"] for request in server.requests] == ["GET"]  # fetched once
    with open(dnnlib.util.url_cache_path(url), "rb") as f:
        assert f.read() == weights
    images = torch.randint(0, 256, [2, 3, 64, 32], dtype=torch.uint8)
    assert torch.equal(first(images), second(images))


def test_official_weights_with_another_digest_are_refused_and_not_cached(weights, monkeypatch):
    with serve({OFFICIAL_PATH: Route(weights)}) as server:
        url = server.base_url + OFFICIAL_PATH
        monkeypatch.setitem(detectors.DETECTORS["dinov2"], "url", url)
        monkeypatch.setitem(detectors.DETECTORS["dinov2"], "sha256", "0" * 64)
        monkeypatch.setattr(detectors, "_detector_cache", {})
        with pytest.raises(dnnlib.util.UserError) as info:
            detectors.get_feature_detector(metric_utils.MetricOptions(device="cpu"), "dinov2")
    message = str(info.value)
    assert "DINOv2 ViT-L/14 detector: cannot download" in message and hashlib.sha256(weights).hexdigest() in message
    assert "SG2_DINOV2_DETECTOR=PATH" in message and "\n" not in message
    assert not os.path.exists(dnnlib.util.url_cache_path(url))


@pytest.mark.slow
def test_stand_in_saved_by_the_module_command(tmp_path):
    import subprocess
    import sys
    out = tmp_path / "standin.pth"
    subprocess.run([sys.executable, "-m", "metrics.stand_in_detector", "--dinov2", str(out)], check=True,
                   cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), timeout=120)
    state_dict = torch.load(io.BytesIO(out.read_bytes()), weights_only=True)
    assert dinov2.architecture_of(state_dict)["patch_size"] == 14
