"""One pass of the generator for several metrics: `calc_metrics.py --metrics=fd_dinov2_50k_full,fid50k_full`
makes the 50,000 images once and hands each batch to every detector the metrics need.

The metrics say up front what they will read from generated images (metric_main.GENERATED_FEATURES).
When the first of them asks, all planned requests with the same image count are computed together and
kept until their metric asks; a request that was not planned is computed on its own, as before. The
numbers are those of separate runs, because every image depends on its index and the seed alone; the
first metric's total_time includes the shared pass.
"""
import json

from . import metric_utils


def _request_key(request, max_items, opts):
    """What makes two requests the same set of numbers within one call: detector call, stats, count, labels."""
    labels = dict(opts.dataset_kwargs, ref_stats=opts.ref_stats)  # generated labels are drawn from these
    return json.dumps([request.detector, request.detector_kwargs, request.stats_kwargs, max_items, labels],
                      sort_keys=True, default=repr)


class SharedGeneration:
    """The generated-image features of one call of several metrics, computed in as few passes as their counts allow."""

    def __init__(self, planned):
        self.planned = list(planned)  # [(FeatureRequest, num_gen)] of the metrics still to run
        self.ready = dict()           # request key -> FeatureStats computed ahead for a later metric
        self.passes = 0               # generator passes made so far (what the tests count)

    def stats_for(self, opts, request, max_items):
        key = _request_key(request, max_items, opts)
        if key in self.ready:
            return self.ready.pop(key)
        group = {key: request}
        for planned, num_gen in self.planned:
            planned_key = _request_key(planned, metric_utils.capped(num_gen, opts.max_gen), opts)
            if metric_utils.capped(num_gen, opts.max_gen) == max_items and planned_key not in self.ready:
                group.setdefault(planned_key, planned)
        self.planned = [(planned, num_gen) for planned, num_gen in self.planned
                        if _request_key(planned, metric_utils.capped(num_gen, opts.max_gen), opts) not in group]
        self.passes += 1
        results = dict(zip(group, metric_utils.generated_feature_stats(opts, list(group.values()), max_items)))
        self.ready.update((other, stats) for other, stats in results.items() if other != key)
        return results[key]
