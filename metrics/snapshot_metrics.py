"""The metrics of a training run, as the training loop asks for them. train.py hands a SnapshotMetrics to the
training package (presets and launch), which never imports metrics/: the metrics sit above training, since they
read datasets and networks through it."""
from . import metric_main
from . import reference_stats


class SnapshotMetrics:
    """What training asks of the metrics: checked names and reference statistics while the options are made, and
    the numbers of each snapshot while the run goes. Holds nothing, so it pickles into spawned processes."""

    def parse(self, text):
        """train.py's --metrics: a comma list or a list of names, each checked; 'none' or nothing = none."""
        return metric_main.parse_metrics(text, allow_none=True)

    def resolve_ref_stats(self, spec):
        """train.py's --ref-stats: a checked local path (downloaded once, like networks)."""
        return reference_stats.resolve(spec)

    def ranking(self, metric):
        """(result key, lower is better) that ranks snapshots by `metric`, or None (retention's best snapshot)."""
        return metric_main.primary_result(metric)

    def evaluate(self, G_ema, snapshot_pkl, options, rank, device, run_dir):
        """Every metric of options.metrics for one snapshot; every rank takes part and gets {name: value}. Rank 0
        prints each result and appends it to metric-<name>.jsonl in run_dir."""
        if rank == 0:
            print(f"Evaluating metrics: {', '.join(options.metrics)}")
        results = {}
        kwargs = {"verbose": True, **options.metric_kwargs}  # progress reports (dnnlib.progress) unless told not to
        for metric in options.metrics:
            result_dict = metric_main.calc_metric(metric=metric, G=G_ema, dataset_kwargs=options.training_set_kwargs,
                                                  num_gpus=options.num_gpus, rank=rank, device=device, **kwargs)
            if rank == 0:
                metric_main.report_metric(result_dict, run_dir=run_dir, snapshot_pkl=snapshot_pkl)
            results.update(result_dict.results)
        return results
