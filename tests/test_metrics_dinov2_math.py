"""FD-DINOv2 and precision/recall/density/coverage against direct computations and the `prdc` package; clean
resizing against torch's antialiased bicubic (no networks involved)."""
import numpy as np
import pytest
import scipy.linalg
import torch

import dnnlib
from metrics import fd_dinov2
from metrics import frechet_inception_distance as fid_lib
from metrics import image_resize
from metrics import metric_utils
from metrics import prdc as prdc_lib
from metrics import reference_stats


def direct_fd(x, y):
    """The Fréchet distance of two feature sets written out with numpy: np.cov (over N - 1) and sqrtm."""
    mu_x, mu_y = x.mean(0), y.mean(0)
    s_x, s_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root = np.real(scipy.linalg.sqrtm(s_x @ s_y))
    return np.sum((mu_x - mu_y) ** 2) + np.trace(s_x + s_y - 2 * root)


def stats_of(features, batches):
    stats = metric_utils.FeatureStats(capture_mean_cov=True)
    for part in np.array_split(features, batches):
        stats.append(part)
    return stats.get_mean_cov(ddof=fd_dinov2.COVARIANCE_DDOF)


def test_fd_dinov2_statistics_and_distance_match_numpy():
    rnd = np.random.RandomState(0)
    x = (rnd.randn(300, 12) @ rnd.randn(12, 12)).astype(np.float32)
    y = (rnd.randn(200, 12) * 1.3 + 0.4).astype(np.float32)
    mu_x, sigma_x = stats_of(x, 7)
    mu_y, sigma_y = stats_of(y, 3)
    np.testing.assert_allclose(sigma_x, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-10, atol=1e-10)
    got = fid_lib.frechet_distance(mu_y, sigma_y, mu_x, sigma_x)
    assert got == pytest.approx(direct_fd(y.astype(np.float64), x.astype(np.float64)), rel=1e-8)
    assert fid_lib.frechet_distance(mu_x, sigma_x, mu_x, sigma_x) == pytest.approx(0, abs=1e-9 * np.trace(sigma_x))


def test_fd_dinov2_uses_the_covariance_its_statistics_files_hold():
    assert fd_dinov2.COVARIANCE_DDOF == reference_stats.COVARIANCE_DDOF["dinov2"] == 1
    assert reference_stats.COVARIANCE_DDOF["inception"] == 0  # the original FID's 1/N stays


# ----------------------------------------------------------------------------
# Precision, recall, density, coverage.


@pytest.mark.parametrize("num_real,num_gen,shift", [(300, 250, 0.3), (120, 200, 1.0), (200, 200, 0.0)])
def test_prdc_agrees_with_the_prdc_package(num_real, num_gen, shift):
    reference = pytest.importorskip("prdc", reason="the prdc package (test extra) is the reference")
    rnd = np.random.RandomState(num_real)
    real, gen = rnd.randn(num_real, 16), rnd.randn(num_gen, 16) * 1.2 + shift
    expected = reference.compute_prdc(real, gen, nearest_k=5)
    got = prdc_lib.prdc(torch.from_numpy(real), torch.from_numpy(gen), nhood_size=5, row_batch_size=64,
                        col_batch_size=50)  # batches that do not divide the counts
    for name in ("precision", "recall", "density", "coverage"):
        assert got[name] == pytest.approx(float(expected[name]), abs=1e-12), name


def test_prdc_of_a_set_against_itself():
    features = torch.from_numpy(np.random.RandomState(5).randn(100, 8))
    got = prdc_lib.prdc(features, features.clone(), nhood_size=5)
    assert got["precision"] == got["recall"] == got["coverage"] == 1.0
    # Each point is in its own ball and strictly inside the balls of the points it is one of the 4 nearest
    # neighbours of (5 balls a point, density 1); as a 5th neighbour it lies on the boundary, where rounding
    # decides the strict test (up to 6 balls, density 1.2).
    assert 1.0 <= got["density"] <= 1.2


# ----------------------------------------------------------------------------
# Clean resizing.


def test_clean_resize_is_float_bicubic_close_to_torch_antialiased_bicubic():
    images = torch.randint(0, 256, [2, 3, 64, 32], dtype=torch.uint8)
    for size in [(299, 299), (224, 224), (16, 16)]:  # up, and down with antialiasing
        got = image_resize.clean_resize(images, size)
        expected = torch.nn.functional.interpolate(images.float(), size=size, mode="bicubic", antialias=True)
        assert got.dtype == torch.float32 and got.shape == (2, 3, *size)
        assert float((got - expected.clamp(0, 255)).abs().max()) < 0.05  # PIL and torch: the same filter
        assert float((got - got.round()).abs().max()) > 0.1  # not re-quantised
        assert float(got.min()) >= 0 and float(got.max()) <= 255  # clipped as clean-fid clips


def test_clean_resize_keeps_flat_images_flat_and_stretches_2_to_1():
    flat = torch.full([1, 3, 64, 32], 77, dtype=torch.uint8)
    out = image_resize.clean_resize(flat, (299, 299))
    assert out.shape == (1, 3, 299, 299) and torch.allclose(out, torch.full_like(out, 77.0), atol=1e-3)
    # A top/bottom split stays a top/bottom split: the 2:1 image is stretched, not cropped.
    halves = torch.cat([torch.zeros([1, 3, 32, 32]), torch.full([1, 3, 32, 32], 200.0)], dim=2).to(torch.uint8)
    out = image_resize.clean_resize(halves, (100, 100))
    assert float(out[0, :, :40].max()) < 1 and float(out[0, :, 60:].min()) > 199


def test_original_mode_passes_images_through_and_vgg16_has_no_clean_mode():
    images = torch.zeros([1, 3, 8, 4], dtype=torch.uint8)
    assert image_resize.detector_input(images, (299, 299), "original") is images
    with pytest.raises(dnnlib.util.UserError, match="--resize=clean: VGG16 has no clean mode"):
        image_resize.detector_input(images, None, "clean", "VGG16")
    with pytest.raises(dnnlib.util.UserError, match="--resize: unknown mode 'tf'"):
        image_resize.check_resize_mode("tf")
