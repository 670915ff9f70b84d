"""FD-DINOv2 (Stein et al. 2023, "Exposing flaws of generative model evaluation metrics and their unfair
treatment of diffusion models", section 4): the Fréchet distance of FID, on DINOv2 ViT-L/14 CLS features.

As EDM2 computes it: the detector preprocessing of metrics/dinov2.py, statistics in float64, and the
covariance divided by N - 1 (the Inception FID keeps the original's 1/N).
"""
from . import frechet_inception_distance
from . import metric_utils

DETECTOR_KWARGS = dict()    # the detector returns the 1024-d CLS features
COVARIANCE_DDOF = 1         # EDM2's unbiased covariance


def compute_fd_dinov2(opts, max_real, num_gen):
    """FD-DINOv2 between up to max_real real images (None = all) and num_gen generated ones; NaN off rank 0."""
    real = metric_utils.compute_feature_stats_for_dataset(
        opts, "dinov2", DETECTOR_KWARGS, max_items=max_real, capture_mean_cov=True)
    gen = metric_utils.compute_feature_stats_for_generator(
        opts, "dinov2", DETECTOR_KWARGS, max_items=num_gen, capture_mean_cov=True)
    if opts.rank != 0:
        return float("nan")
    mu_real, sigma_real = real.get_mean_cov(ddof=COVARIANCE_DDOF)
    mu_gen, sigma_gen = gen.get_mean_cov(ddof=COVARIANCE_DDOF)
    return frechet_inception_distance.frechet_distance(mu_gen, sigma_gen, mu_real, sigma_real)
