"""Precision, recall, density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for
Generative Models", section 3) on DINOv2 ViT-L/14 features, with k = 5 nearest neighbours.

Precision and recall are those of Kynkäänniemi et al. 2019 (metrics/precision_recall.py: a point counts when
its distance is at most the radius). Density counts, for each generated point, the real k-NN balls that hold
it (over k times the generated count); coverage is the share of real points whose ball holds a generated
point; both with a strict inequality, as the authors' code. Distances are computed in float32, in row and
column batches shared out across ranks.
"""
from . import metric_utils
from .precision_recall import compute_distances, knn_radii

DETECTOR_KWARGS = dict()    # DINOv2 CLS features


def prdc(real_features, gen_features, nhood_size=5, row_batch_size=10000, col_batch_size=10000, num_gpus=1, rank=0):
    """dict(precision, recall, density, coverage) of generated against real features; NaN on ranks other than 0."""
    batching = dict(row_batch_size=row_batch_size, col_batch_size=col_batch_size, num_gpus=num_gpus, rank=rank)
    real_radii = knn_radii(real_features, nhood_size, **batching)
    gen_radii = knn_radii(gen_features, nhood_size, **batching)
    precision = density = recall = coverage = 0
    for gen_batch in gen_features.split(row_batch_size):  # generated rows, real columns
        dist = compute_distances(gen_batch, real_features, num_gpus, rank, col_batch_size)
        if rank == 0:
            precision += int((dist <= real_radii).any(dim=1).sum())
            density += int((dist < real_radii).sum())
    real_batches = zip(real_features.split(row_batch_size), real_radii.split(row_batch_size) if rank == 0 else
                       [None] * len(real_features.split(row_batch_size)))
    for real_batch, radii_batch in real_batches:  # real rows, generated columns
        dist = compute_distances(real_batch, gen_features, num_gpus, rank, col_batch_size)
        if rank == 0:
            recall += int((dist <= gen_radii).any(dim=1).sum())
            coverage += int((dist.min(dim=1).values < radii_batch).sum())
    if rank != 0:
        return dict.fromkeys(["precision", "recall", "density", "coverage"], float("nan"))
    num_real, num_gen = len(real_features), len(gen_features)
    return dict(precision=precision / num_gen, recall=recall / num_real,
                density=density / (nhood_size * num_gen), coverage=coverage / num_real)


def compute_prdc(opts, max_real, num_gen, nhood_size, row_batch_size, col_batch_size):
    """Precision, recall, density and coverage of num_gen generated images against up to max_real real ones."""
    real_features = metric_utils.compute_feature_stats_for_dataset(
        opts, "dinov2", DETECTOR_KWARGS, max_items=max_real, capture_all=True).get_all_torch()
    gen_features = metric_utils.compute_feature_stats_for_generator(
        opts, "dinov2", DETECTOR_KWARGS, max_items=num_gen, capture_all=True).get_all_torch()
    return prdc(real_features.to(opts.device), gen_features.to(opts.device), nhood_size, row_batch_size,
                col_batch_size, num_gpus=opts.num_gpus, rank=opts.rank)
