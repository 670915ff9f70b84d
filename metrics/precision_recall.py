"""Improved precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric
for Assessing Generative Models", section 2).

Each set of VGG16 features spans a manifold: the union of balls around its points with radius the
distance to the k-th nearest neighbour. Precision is the share of generated points inside the real
manifold, recall the share of real points inside the generated one. As in the StyleGAN2-ADA code,
features are stored in float16 and distances are computed in batches of rows and columns.
"""
import torch

from . import metric_utils

DETECTOR_KWARGS = dict(return_features=True)  # VGG16 fc2 features


def _batch_distances(rows, cols):
    """Euclidean distances; the matrix-product form is what cdist picks for large batches, and it also runs
    in float16 on the CPU."""
    return torch.cdist(rows.unsqueeze(0), cols.unsqueeze(0), compute_mode="use_mm_for_euclid_dist")[0]


def compute_distances(row_features, col_features, num_gpus=1, rank=0, col_batch_size=10000):
    """Distances between every row and column feature; column batches are shared out across ranks.

    Returns the full [rows, cols] matrix on rank 0 (on the CPU) and None elsewhere.
    """
    assert 0 <= rank < num_gpus
    num_cols = col_features.shape[0]
    num_batches = ((num_cols - 1) // col_batch_size // num_gpus + 1) * num_gpus
    padded = torch.nn.functional.pad(col_features, [0, 0, 0, -num_cols % num_batches])
    col_batches = padded.chunk(num_batches)
    dist_batches = []
    for col_batch in col_batches[rank::num_gpus]:
        dist_batch = _batch_distances(row_features, col_batch)
        for src in range(num_gpus):
            dist_shared = dist_batch.clone()
            if num_gpus > 1:
                torch.distributed.broadcast(dist_shared, src=src)
            dist_batches.append(dist_shared.cpu() if rank == 0 else None)
    return torch.cat(dist_batches, dim=1)[:, :num_cols] if rank == 0 else None


# k-NN radii of a point set (Kynkäänniemi et al. 2019, eq. 1).
def knn_radii(points, nhood_size, row_batch_size=10000, col_batch_size=10000, num_gpus=1, rank=0):
    """Distance from each point to its k-th nearest other point; on rank 0 (None elsewhere)."""
    kth = []
    for points_batch in points.split(row_batch_size):
        dist = compute_distances(points_batch, points, num_gpus, rank, col_batch_size)
        # Each point is its own nearest neighbour at distance 0, hence the (k + 1)-th smallest value.
        kth.append(dist.to(torch.float32).kthvalue(nhood_size + 1).values.to(dist.dtype) if rank == 0 else None)
    return torch.cat(kth) if rank == 0 else None


# The share of probes inside a k-NN manifold (Kynkäänniemi et al. 2019, eq. 2-4).
def manifold_coverage(manifold, probes, nhood_size=3, row_batch_size=10000, col_batch_size=10000, num_gpus=1, rank=0):
    """Share of `probes` within the k-NN ball of some `manifold` point; NaN on ranks other than 0."""
    kth = knn_radii(manifold, nhood_size, row_batch_size, col_batch_size, num_gpus, rank)
    inside = []
    for probes_batch in probes.split(row_batch_size):
        dist = compute_distances(probes_batch, manifold, num_gpus, rank, col_batch_size)
        inside.append((dist <= kth).any(dim=1) if rank == 0 else None)
    return float(torch.cat(inside).to(torch.float32).mean()) if rank == 0 else float("nan")


def precision_recall(real_features, gen_features, nhood_size=3, row_batch_size=10000, col_batch_size=10000,
                     num_gpus=1, rank=0):
    """(precision, recall) of generated against real features (torch tensors of one dtype and device)."""
    kwargs = dict(nhood_size=nhood_size, row_batch_size=row_batch_size, col_batch_size=col_batch_size,
                  num_gpus=num_gpus, rank=rank)
    precision = manifold_coverage(real_features, gen_features, **kwargs)
    recall = manifold_coverage(gen_features, real_features, **kwargs)
    return precision, recall


def compute_pr(opts, max_real, num_gen, nhood_size, row_batch_size, col_batch_size):
    """Precision and recall of num_gen generated images against up to max_real real ones (None = all)."""
    real_features = metric_utils.compute_feature_stats_for_dataset(
        opts, "vgg16", DETECTOR_KWARGS, max_items=max_real, capture_all=True).get_all_torch()
    gen_features = metric_utils.compute_feature_stats_for_generator(
        opts, "vgg16", DETECTOR_KWARGS, max_items=num_gen, capture_all=True).get_all_torch()
    real_features = real_features.to(torch.float16).to(opts.device)
    gen_features = gen_features.to(torch.float16).to(opts.device)
    return precision_recall(real_features, gen_features, nhood_size, row_batch_size, col_batch_size,
                            num_gpus=opts.num_gpus, rank=opts.rank)
