"""Fréchet Inception Distance (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule", section 3).

The Fréchet distance between Gaussians fitted to Inception-v3 pool features (2048-d) of real and
generated images: |mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_g S_r)^(1/2)).
"""
import numpy as np
import scipy.linalg

from . import metric_utils

DETECTOR_KWARGS = dict(return_features=True)  # 2048-d pool3 features


# Fréchet distance between N(mu_gen, sigma_gen) and N(mu_real, sigma_real) (Dowson & Landau 1982).
def frechet_distance(mu_gen, sigma_gen, mu_real, sigma_real):
    m = np.square(mu_gen - mu_real).sum()
    s = scipy.linalg.sqrtm(np.dot(sigma_gen, sigma_real))
    s = s[0] if isinstance(s, tuple) else s  # older scipy returns (sqrtm, error) when disp=False
    return float(np.real(m + np.trace(sigma_gen + sigma_real - s * 2)))


def compute_fid(opts, max_real, num_gen):
    """FID between up to max_real real images (None = all) and num_gen generated ones; NaN on ranks other than 0."""
    mu_real, sigma_real = metric_utils.compute_feature_stats_for_dataset(
        opts, "inception", DETECTOR_KWARGS, max_items=max_real, capture_mean_cov=True).get_mean_cov()
    mu_gen, sigma_gen = metric_utils.compute_feature_stats_for_generator(
        opts, "inception", DETECTOR_KWARGS, max_items=num_gen, capture_mean_cov=True).get_mean_cov()
    if opts.rank != 0:
        return float("nan")
    return frechet_distance(mu_gen, sigma_gen, mu_real, sigma_real)
