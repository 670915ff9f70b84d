"""Inception Score (Salimans et al. 2016, "Improved Techniques for Training GANs", section 4).

IS = exp(E_x KL(p(y|x) || p(y))) over Inception-v3 class probabilities of generated images, computed
on 10 splits; mean and standard deviation over the splits are reported.
"""
import numpy as np
import scipy.special

from . import metric_utils

# The original omits the output layer's bias, matching the TensorFlow Inception graph of the IS paper.
DETECTOR_KWARGS = dict(no_output_bias=True)


def as_probabilities(outputs):
    """The Inception detector returns softmax probabilities; logits (from other detectors) get a softmax."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.min() >= 0 and np.allclose(outputs.sum(axis=1), 1, atol=1e-3):
        return outputs
    shifted = outputs - outputs.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


# exp of the mean KL divergence between p(y|x) and the marginal p(y), per split (Salimans et al. 2016).
def inception_score(probs, num_splits=10):
    """(mean, std) over num_splits consecutive splits of the [N, classes] probabilities."""
    probs = np.asarray(probs, dtype=np.float64)
    num = probs.shape[0]
    scores = []
    for i in range(num_splits):
        part = probs[i * num // num_splits: (i + 1) * num // num_splits]
        # p log(p / p(y)), taken as 0 where p = 0 (a float underflow would otherwise give NaN).
        kl = scipy.special.xlogy(part, part / np.mean(part, axis=0, keepdims=True))
        scores.append(np.exp(np.mean(np.sum(kl, axis=1))))
    return float(np.mean(scores)), float(np.std(scores))


def compute_is(opts, num_gen, num_splits):
    """(mean, std) Inception Score of num_gen generated images; NaNs on ranks other than 0."""
    outputs = metric_utils.compute_feature_stats_for_generator(
        opts, "inception", DETECTOR_KWARGS, max_items=num_gen, capture_all=True).get_all()
    if opts.rank != 0:
        return float("nan"), float("nan")
    return inception_score(as_probabilities(outputs), num_splits)
