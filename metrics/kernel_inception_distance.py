"""Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs", section 4).

The unbiased estimate of the squared MMD between Inception-v3 features of real and generated images
under the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets.
"""
import numpy as np

from . import metric_utils

DETECTOR_KWARGS = dict(return_features=True)  # 2048-d pool3 features


def polynomial_kernel(x, y):
    """k(x, y) = (x.y / d + 1)^3 for all row pairs: gamma = 1/d, coef0 = 1, degree 3 (KID paper, section 4)."""
    t = x @ y.T / x.shape[1] + 1
    return t * t * t


# Unbiased MMD^2 estimator (Gretton et al. 2012, eq. 3), averaged over subsets as in the KID paper.
def kernel_distance(real_features, gen_features, num_subsets=100, max_subset_size=1000, seed=0):
    """Mean over num_subsets of MMD_u^2 on m = min(#real, #gen, max_subset_size) rows drawn without replacement."""
    real_features = np.asarray(real_features, dtype=np.float64)
    gen_features = np.asarray(gen_features, dtype=np.float64)
    m = min(real_features.shape[0], gen_features.shape[0], max_subset_size)
    assert m >= 2, "KID needs at least two images on each side"
    rnd = np.random.RandomState(seed)
    total = 0.0
    for _subset in range(num_subsets):
        x = gen_features[rnd.choice(gen_features.shape[0], m, replace=False)]
        y = real_features[rnd.choice(real_features.shape[0], m, replace=False)]
        a = polynomial_kernel(x, x) + polynomial_kernel(y, y)
        b = polynomial_kernel(x, y)
        # Within-set sums leave out i == j (the unbiased part); the cross term uses all m^2 pairs.
        total += (a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m
    return float(total / num_subsets / m)


def compute_kid(opts, max_real, num_gen, num_subsets, max_subset_size):
    """KID between up to max_real real images (None = all) and num_gen generated ones; NaN on ranks other than 0."""
    real_features = metric_utils.compute_feature_stats_for_dataset(
        opts, "inception", DETECTOR_KWARGS, max_items=max_real, capture_all=True).get_all()
    gen_features = metric_utils.compute_feature_stats_for_generator(
        opts, "inception", DETECTOR_KWARGS, max_items=num_gen, capture_all=True).get_all()
    if opts.rank != 0:
        return float("nan")
    return kernel_distance(real_features, gen_features, num_subsets, max_subset_size, seed=opts.seed)
