"""The metric formulas against closed forms and brute-force reimplementations (no networks involved)."""
import numpy as np
import pytest
import torch

from metrics import frechet_inception_distance as fid_lib
from metrics import inception_score as is_lib
from metrics import kernel_inception_distance as kid_lib
from metrics import metric_utils
from metrics import perceptual_path_length as ppl_lib
from metrics import precision_recall as pr_lib


def random_spd(rnd, d):
    a = rnd.randn(d, d)
    return a @ a.T / d + 0.1 * np.eye(d)


# ----------------------------------------------------------------------------
# Fréchet distance.


def test_frechet_distance_diagonal_gaussians_closed_form():
    rnd = np.random.RandomState(1)
    d = 16
    mu1, mu2 = rnd.randn(d), rnd.randn(d)
    var1, var2 = rnd.rand(d) + 0.1, rnd.rand(d) + 0.1
    # For diagonal covariances the matrix square root is elementwise.
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(var1 + var2 - 2 * np.sqrt(var1 * var2))
    got = fid_lib.frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2))
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_full_covariances_vs_symmetric_form():
    rnd = np.random.RandomState(2)
    d = 12
    mu1, mu2 = rnd.randn(d), rnd.randn(d)
    s1, s2 = random_spd(rnd, d), random_spd(rnd, d)
    # Tr((S1 S2)^1/2) = Tr((S1^1/2 S2 S1^1/2)^1/2): a symmetric PSD matrix, so plain eigendecompositions suffice.
    e1, v1 = np.linalg.eigh(s1)
    s1_half = v1 @ np.diag(np.sqrt(e1)) @ v1.T
    trace_sqrt = np.sum(np.sqrt(np.linalg.eigvalsh(s1_half @ s2 @ s1_half)))
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt
    assert fid_lib.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    assert fid_lib.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-9 * np.trace(s1))


# ----------------------------------------------------------------------------
# Feature statistics.


def test_feature_stats_mean_cov_match_numpy_and_cap_items():
    rnd = np.random.RandomState(3)
    x = rnd.randn(50, 7).astype(np.float32) * 3 + 5
    stats = metric_utils.FeatureStats(capture_all=True, capture_mean_cov=True, max_items=41)
    for lo, hi in [(0, 5), (5, 23), (23, 24), (24, 50)]:  # uneven batches, the last one crossing the cap
        stats.append(x[lo:hi])
    assert stats.is_full() and stats.num_items == 41
    np.testing.assert_array_equal(stats.get_all(), x[:41])
    mean, cov = stats.get_mean_cov()
    x64 = x[:41].astype(np.float64)
    np.testing.assert_allclose(mean, x64.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(x64, rowvar=False, bias=True), rtol=1e-9, atol=1e-12)


def test_feature_stats_save_load_round_trip(tmp_path):
    rnd = np.random.RandomState(4)
    stats = metric_utils.FeatureStats(capture_all=True, capture_mean_cov=True, max_items=30)
    stats.append(rnd.randn(30, 5))
    stats.save(str(tmp_path / "stats.npz"))
    loaded = metric_utils.FeatureStats.load(str(tmp_path / "stats.npz"))
    assert (loaded.num_items, loaded.max_items, loaded.num_features) == (30, 30, 5)
    np.testing.assert_array_equal(loaded.get_all(), stats.get_all())
    for a, b in zip(loaded.get_mean_cov(), stats.get_mean_cov()):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------
# Kernel Inception Distance.


def brute_force_kid(real, gen, num_subsets, max_subset_size, seed):
    """Unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3, pair by pair, on the subsets the metric draws."""
    d = real.shape[1]
    m = min(len(real), len(gen), max_subset_size)
    rnd = np.random.RandomState(seed)
    k = lambda a, b: (float(np.dot(a, b)) / d + 1) ** 3
    values = []
    for _ in range(num_subsets):
        x = gen[rnd.choice(len(gen), m, replace=False)]
        y = real[rnd.choice(len(real), m, replace=False)]
        kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
        values.append(kxx + kyy - 2 * kxy)
    return np.mean(values)


def test_kernel_distance_matches_brute_force():
    rnd = np.random.RandomState(5)
    real, gen = rnd.randn(30, 5), rnd.randn(25, 5) + 0.5
    got = kid_lib.kernel_distance(real, gen, num_subsets=3, max_subset_size=20, seed=7)
    assert got == pytest.approx(brute_force_kid(real, gen, 3, 20, seed=7), rel=1e-10)


def cubic_kernel_expectation(a, var_a, b, var_b):
    """E[(x.y / d + 1)^3] for independent x ~ N(a, var_a I), y ~ N(b, var_b I), from the moments of s = x.y."""
    d = len(a)
    ab, aa, bb = a @ b, a @ a, b @ b
    e1 = ab
    e2 = ab ** 2 + var_b * aa + var_a * (bb + d * var_b)
    e3 = ab ** 3 + 3 * ab * (var_b * aa + var_a * bb + d * var_a * var_b + 2 * var_a * var_b)
    return e3 / d ** 3 + 3 * e2 / d ** 2 + 3 * e1 / d + 1


@pytest.mark.parametrize("shift, var_real, var_gen, tolerance", [
    (0.0, 0.25, 0.25, 6e-4),  # same distribution: MMD^2 = 0; the estimator's spread here is about 1.2e-4
    (0.3, 0.25, 0.35, 0.12),  # MMD^2 = 1.10; the spread over data draws is about 0.025
])
@pytest.mark.slow
def test_kernel_distance_gaussians_closed_form(shift, var_real, var_gen, tolerance):
    rnd = np.random.RandomState(6)
    d = 8
    mu_real = rnd.randn(d) * 0.5
    mu_gen = mu_real + shift
    real = mu_real + np.sqrt(var_real) * rnd.randn(10000, d)
    gen = mu_gen + np.sqrt(var_gen) * rnd.randn(10000, d)
    expected = (cubic_kernel_expectation(mu_real, var_real, mu_real, var_real)
                + cubic_kernel_expectation(mu_gen, var_gen, mu_gen, var_gen)
                - 2 * cubic_kernel_expectation(mu_real, var_real, mu_gen, var_gen))
    got = kid_lib.kernel_distance(real, gen, num_subsets=50, max_subset_size=1000, seed=0)
    assert got == pytest.approx(expected, abs=tolerance)


# ----------------------------------------------------------------------------
# Precision and recall.


def brute_force_coverage(manifold, probes, k):
    dist_mm = np.linalg.norm(manifold[:, None] - manifold[None], axis=2)
    radii = np.sort(dist_mm, axis=1)[:, k]  # column 0 is the point itself
    dist_pm = np.linalg.norm(probes[:, None] - manifold[None], axis=2)
    return float(np.mean((dist_pm <= radii[None]).any(axis=1)))


def test_precision_recall_match_brute_force_in_small_batches():
    rnd = np.random.RandomState(8)
    real, gen = rnd.randn(40, 6), rnd.randn(30, 6) * 1.3 + 0.4
    precision, recall = pr_lib.precision_recall(torch.from_numpy(real), torch.from_numpy(gen), nhood_size=3,
                                                row_batch_size=7, col_batch_size=9)
    # The shares are float32 means, as in the original.
    assert precision == pytest.approx(brute_force_coverage(real, gen, 3), rel=1e-6)
    assert recall == pytest.approx(brute_force_coverage(gen, real, 3), rel=1e-6)
    assert 0 < precision < 1 and 0 < recall < 1


def test_precision_in_float16_by_construction():
    # Real points in 4 tight clusters; 6 generated points on cluster centres, 4 far away: precision 6/10.
    rnd = np.random.RandomState(9)
    centres = rnd.randn(4, 8) * 10
    real = np.concatenate([c + 0.05 * rnd.randn(10, 8) for c in centres])
    gen = np.concatenate([centres[[0, 1, 2, 3, 0, 1]], centres[:4] + 50])
    to_half = lambda a: torch.from_numpy(a).to(torch.float16)
    precision, _recall = pr_lib.precision_recall(to_half(real), to_half(gen), nhood_size=3,
                                                 row_batch_size=16, col_batch_size=16)
    assert precision == pytest.approx(0.6)


def test_compute_distances_equals_full_matrix_for_any_column_batch():
    rnd = torch.Generator().manual_seed(10)
    rows = torch.randn([9, 5], generator=rnd, dtype=torch.float64)
    cols = torch.randn([23, 5], generator=rnd, dtype=torch.float64)
    expected = torch.cdist(rows, cols, compute_mode="donot_use_mm_for_euclid_dist")
    for col_batch_size in (1, 4, 23, 100):
        got = pr_lib.compute_distances(rows, cols, col_batch_size=col_batch_size)
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


# ----------------------------------------------------------------------------
# Inception Score.


def test_inception_score_closed_forms():
    k = 4
    onehot = np.eye(k)[np.tile(np.arange(k), 10)]  # every split holds each class equally often
    assert is_lib.inception_score(onehot, num_splits=10) == pytest.approx((k, 0), abs=1e-12)
    same = np.tile(np.array([[0.1, 0.2, 0.3, 0.4]]), [40, 1])  # no diversity: KL to the marginal is 0
    assert is_lib.inception_score(same, num_splits=10) == pytest.approx((1, 0), abs=1e-12)


def test_inception_score_matches_brute_force():
    rnd = np.random.RandomState(11)
    probs = rnd.dirichlet(np.ones(6) * 0.3, size=53)
    scores = []
    for i in range(5):
        part = probs[i * 53 // 5: (i + 1) * 53 // 5]
        marginal = part.mean(axis=0)
        kl = [sum(p[j] * np.log(p[j] / marginal[j]) for j in range(6)) for p in part]
        scores.append(np.exp(np.mean(kl)))
    mean, std = is_lib.inception_score(probs, num_splits=5)
    assert mean == pytest.approx(np.mean(scores), rel=1e-10)
    assert std == pytest.approx(np.std(scores), rel=1e-8)


def test_as_probabilities_keeps_probabilities_and_softmaxes_logits():
    rnd = np.random.RandomState(12)
    logits = rnd.randn(5, 7) * 3
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(is_lib.as_probabilities(logits), probs, rtol=1e-12)
    np.testing.assert_array_equal(is_lib.as_probabilities(probs), probs)


# ----------------------------------------------------------------------------
# Perceptual path length helpers.


def test_filtered_mean_matches_sorted_brute_force():
    rnd = np.random.RandomState(13)
    dist = rnd.lognormal(size=1234)
    s = np.sort(dist)
    lo, hi = s[int(np.floor(0.01 * (len(s) - 1)))], s[int(np.ceil(0.99 * (len(s) - 1)))]
    expected = np.mean([v for v in dist if lo <= v <= hi])
    assert ppl_lib.filtered_mean(dist) == pytest.approx(expected, rel=1e-12)


def test_slerp_stays_on_sphere_and_hits_endpoints():
    rnd = torch.Generator().manual_seed(14)
    a = torch.randn([5, 9], generator=rnd, dtype=torch.float64)
    b = torch.randn([5, 9], generator=rnd, dtype=torch.float64)
    an, bn = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    torch.testing.assert_close(ppl_lib.slerp(a, b, torch.zeros([5, 1], dtype=torch.float64)), an)
    torch.testing.assert_close(ppl_lib.slerp(a, b, torch.ones([5, 1], dtype=torch.float64)), bn)
    mid = ppl_lib.slerp(a, b, torch.full([5, 1], 0.5, dtype=torch.float64))
    torch.testing.assert_close(mid, (an + bn) / (an + bn).norm(dim=1, keepdim=True))  # halfway = normalised sum
