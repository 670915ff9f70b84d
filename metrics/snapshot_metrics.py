"""The metrics of a training run, as the training loop asks for them. train.py hands a SnapshotMetrics to the
training package (presets and launch), which never imports metrics/: the metrics sit above training, since they
read datasets and networks through it."""
import os

from . import metric_main
from . import metric_utils
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

    def check_detectors(self, options):
        """Fetch and load the detectors of options.metrics before the run starts (rank 0): a detector that cannot
        be fetched is a one-line error in seconds, not after the first tick."""
        metric_main.check_detectors(options.metrics, **options.metric_kwargs)

    def evaluate(self, G_ema, snapshot_pkl, options, rank, device, run_dir, should_stop=None):
        """Every metric of options.metrics for one snapshot; every rank takes part and gets {name: value}. Rank 0
        prints each result and appends it to metric-<name>.jsonl in run_dir. Once `should_stop()` is true (the run
        got SIGINT/SIGTERM; every rank agrees per batch) the metrics still to do are abandoned: the snapshot they
        are for is written, and the stop comes first."""
        if rank == 0:
            print(f"Evaluating metrics: {', '.join(options.metrics)}")
        results = {}
        for metric in options.metrics:
            try:
                result_dict = metric_main.calc_metric(metric=metric, G=G_ema,
                                                      dataset_kwargs=options.training_set_kwargs,
                                                      num_gpus=options.num_gpus, rank=rank, device=device,
                                                      should_stop=should_stop, **options.metric_kwargs)
            except metric_utils.MetricsStopped:
                if rank == 0:
                    print(f"Metrics of {os.path.basename(snapshot_pkl)} abandoned: the run was asked to stop")
                break
            if rank == 0:
                metric_main.report_metric(result_dict, run_dir=run_dir, snapshot_pkl=snapshot_pkl)
            results.update(result_dict.results)
        return results
