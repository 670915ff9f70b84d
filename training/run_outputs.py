"""What a training run writes into its folder: stats.jsonl, TensorBoard events, image grids, snapshots, metrics.

Rank 0 writes every file. Metrics run on every rank (each computes a share of the images), right
after the snapshot they evaluate; their results go to metric-<name>.jsonl at once and into TensorBoard
with the statistics of the same tick. The metrics themselves are handed in (`snapshot_metrics`, the metrics
package's SnapshotMetrics, which train.py passes): training does not import the metrics, which sit above it.
"""
import copy
import json
import os

import numpy as np
import torch

from dnnlib import image_grid
from torch_utils import misc
from training import training_state
from training.checkpoint.pickle_format import save_network_pkl

# ----------------------------------------------------------------------------
# Image grids.


def setup_snapshot_image_grid(training_set, random_seed=0, grid=None):
    """(rows, cols), images and labels of the reals grid: random images, grouped by label when there are labels.

    Without `grid`, as many images as fit in 7680x4320 (4 to 32 rows, 7 to 32 columns).
    """
    rnd = np.random.RandomState(random_seed)
    height, width = training_set.image_shape[1:]
    rows, cols = grid if grid is not None else (np.clip(4320 // height, 4, 32), np.clip(7680 // width, 7, 32))
    rows, cols = int(rows), int(cols)
    if not training_set.has_labels:
        all_indices = list(range(len(training_set)))
        rnd.shuffle(all_indices)
        grid_indices = [all_indices[i % len(all_indices)] for i in range(rows * cols)]
    else:
        grid_indices = _indices_by_label(training_set, rnd, rows, cols)
    images, labels = zip(*[training_set[i] for i in grid_indices])
    return (rows, cols), np.stack(images), np.stack(labels)


def _indices_by_label(training_set, rnd, rows, cols):
    """One label per row, as many rows as fit."""
    label_groups = dict()
    for idx in range(len(training_set)):
        label = tuple(training_set.get_label(idx).flatten())
        label_groups.setdefault(label, []).append(idx)
    label_order = sorted(label_groups.keys())
    for label in label_order:
        rnd.shuffle(label_groups[label])
    grid_indices = []
    for y in range(rows):
        indices = label_groups[label_order[y % len(label_order)]]
        grid_indices += [indices[x % len(indices)] for x in range(cols)]
    return grid_indices


def save_image_grid(img, fname, drange, grid):
    """Write NCHW images (values in `drange`) as one PNG of grid = (rows, cols); any height:width works."""
    lo, hi = drange
    img = np.asarray(img, dtype=np.float32)
    img = np.rint((img - lo) * (255 / (hi - lo))).clip(0, 255).astype(np.uint8)
    rows, cols = grid
    image_grid.save_png(image_grid.make_grid(img.transpose(0, 2, 3, 1), rows, cols), fname)


def generate_grid(G_ema, grid_z, grid_c, batch_gpu):
    with torch.no_grad():
        return torch.cat([G_ema(z=z, c=c, noise_mode="const").cpu() for z, c in
                          zip(grid_z.split(batch_gpu), grid_c.split(batch_gpu))]).numpy()


# ----------------------------------------------------------------------------
# The run folder.


def check_metrics_handed_in(options, snapshot_metrics):
    """Options that list metrics need the object that computes them (training does not import the metrics)."""
    if options.metrics and snapshot_metrics is None:
        raise ValueError(f"the options list the metrics {', '.join(options.metrics)} but no snapshot_metrics computes "
                         "them: pass snapshot_metrics=metrics.snapshot_metrics.SnapshotMetrics() as train.py does, or "
                         "set metrics=[]")


class RunOutputs:
    """Owns one process's share of the run folder: rank 0 writes the files, every rank computes metrics.

    `snapshot_pkl` is the newest snapshot written (None before the first), `metric_results` the
    results since the statistics were last written.
    """

    def __init__(self, options, rank, device, snapshot_metrics=None):
        self.options = options
        self.snapshot_metrics = snapshot_metrics
        self.run_dir = options.run_dir if options.run_dir is not None else "."
        self.rank = rank
        self.device = device
        self.snapshot_pkl = None
        self.last_snapshot_nimg = None
        self.metric_results = dict()
        self.grid = self.grid_z = self.grid_c = None
        self._stats_jsonl = None
        self._stats_tfevents = None
        self.stop_requested = None  # callable: True after SIGINT/SIGTERM; running metrics are then abandoned

    # Grids.

    def start_grids(self, run):
        """Pick the grid's reals and latents (rank 0); a fresh run also writes reals.png and fakes_init.png."""
        if self.rank != 0:
            return
        self.grid, images, labels = setup_snapshot_image_grid(run.training_set, self.options.random_seed,
                                                              self.options.grid)
        if run.state.cur_nimg == 0:
            save_image_grid(images, os.path.join(self.run_dir, "reals.png"), drange=[0, 255], grid=self.grid)
        grid_gen = torch.Generator().manual_seed(self.options.random_seed)
        self.grid_z = torch.randn([labels.shape[0], run.G.z_dim], generator=grid_gen).to(self.device)
        self.grid_c = torch.from_numpy(labels).to(self.device)
        if run.state.cur_nimg == 0:
            self.write_fakes(run.G_ema, "fakes_init.png")

    def write_fakes(self, G_ema, name):
        if self.rank == 0:
            images = generate_grid(G_ema, self.grid_z, self.grid_c, self.options.batch_gpu)
            save_image_grid(images, os.path.join(self.run_dir, name), drange=[-1, 1], grid=self.grid)

    # Snapshots and metrics.

    def write_snapshot(self, run, with_metrics):
        """Network pickle (rank 0, atomic) with the resume state; then, with_metrics, the metrics on all ranks."""
        data = dict(training_set_kwargs=dict(self.options.training_set_kwargs))
        for name, module in run.networks().items():
            data[name] = copy.deepcopy(module).eval().requires_grad_(False).cpu() if module is not None else None
        if self.options.num_gpus > 1:
            for module in [run.G, run.D, run.G_ema]:
                misc.check_ddp_consistency(module, ignore_regex=r".*\.w_avg")
        path = os.path.join(self.run_dir, f"network-snapshot-{run.state.cur_nimg // 1000:06d}.pkl")
        if self.rank == 0:
            data["progress"] = training_state.capture(
                state=run.state, opts=run.optimizers, loss=run.loss, ada=run.ada, num_gpus=self.options.num_gpus,
                batch_size=self.options.batch_size, random_seed=self.options.random_seed,
                fine_tune=self.options.fine_tune)
            save_network_pkl(path, data)
        self.snapshot_pkl = path
        self.last_snapshot_nimg = run.state.cur_nimg
        if with_metrics and self.options.metrics:
            self.metric_results.update(self.snapshot_metrics.evaluate(data["G_ema"], path, self.options, self.rank,
                                                                      self.device, self.run_dir,
                                                                      should_stop=self.stop_requested))

    # Statistics.

    def open_stats(self):
        """stats.jsonl (appended to, so a resumed run continues it) and TensorBoard events, on rank 0."""
        if self.rank != 0:
            return
        self._stats_jsonl = open(os.path.join(self.run_dir, "stats.jsonl"), "at")
        try:
            import torch.utils.tensorboard as tensorboard  # here: optional, and a slow import (0.15 s)
            self._stats_tfevents = tensorboard.SummaryWriter(self.run_dir)
        except ImportError as err:
            print(f"Skipping TensorBoard export: {err}")

    def write_stats(self, stats_dict, timestamp, cur_nimg, walltime):
        """One stats.jsonl line and the TensorBoard scalars of a tick, with the metric results since the last."""
        if self._stats_jsonl is not None:
            self._stats_jsonl.write(json.dumps(dict(stats_dict, timestamp=timestamp)) + "\n")
            self._stats_jsonl.flush()
        if self._stats_tfevents is not None:
            global_step = int(cur_nimg / 1e3)
            for name, value in stats_dict.items():
                self._stats_tfevents.add_scalar(name, value.mean, global_step=global_step, walltime=walltime)
            for name, value in self.metric_results.items():
                self._stats_tfevents.add_scalar(f"Metrics/{name}", value, global_step=global_step, walltime=walltime)
            self._stats_tfevents.flush()
        self.metric_results = dict()

    def close(self):
        for f in (self._stats_jsonl, self._stats_tfevents):
            if f is not None:
                f.close()
        self._stats_jsonl = self._stats_tfevents = None
