"""Shared machinery of the metrics: options, feature statistics and their disk cache (detectors: detectors.py).

The numbers follow the StyleGAN2-ADA metric code: the same TorchScript detectors, fed uint8 NCHW
images at the data's own size (the detectors resize internally, so 2:1 images are not cropped),
statistics accumulated in float64, TF32 off while the generator and the detectors run, and
generated images made with `noise_mode='random'` at truncation 1. DINOv2 (metrics/dinov2.py) takes the
same uint8 images and resizes them as EDM2 does; `--resize=clean` resizes for both Inception-v3 and DINOv2
beforehand (metrics/image_resize.py).
"""
import collections
import contextlib
import copy
import hashlib
import json
import os
import queue
import re
import threading
import warnings

import numpy as np
import torch

import dnnlib
from dnnlib import progress
from torch_utils import misc
from training.dataset import open_dataset
from . import image_resize
from . import reference_stats
from .dataset_fingerprint import dataset_fingerprint
from .detectors import (DETECTORS, detector_identity, detector_images, detector_sha256, detector_spec,
                        get_feature_detector, run_detector)

# ----------------------------------------------------------------------------


class MetricOptions:
    """Everything a metric needs besides its own definition."""

    def __init__(self,
        G               = None,     # Generator to evaluate (e.g. G_ema); a copy is used, the original is left alone.
        G_kwargs        = None,     # Arguments of G(z, c, ...) over the defaults truncation_psi=1, noise_mode='random'.
        dataset_kwargs  = None,     # Real data: construct_class_by_name kwargs (class_name, path, resolution, ...).
        num_gpus        = 1,        # Processes taking part (torch.distributed world size).
        rank            = 0,        # This process's rank; rank 0 receives the results.
        device          = None,     # Torch device; None = cuda:<rank> when CUDA is available, else cpu.
        progress        = None,     # progress(done, total) callback for a caller's status line; None = none.
        verbose         = False,    # Progress reports on rank 0 (stderr; dnnlib.progress)?
        cache           = True,     # Reuse real-data statistics cached on disk?
        detectors       = None,     # {'inception': path or URL, 'vgg16': ...}; unset = env var, then standard URL.
        seed            = 0,        # Seed of latents, labels and subsets: same seed, same numbers.
        max_gen         = None,     # Cap on generated images and PPL samples (quick checks); None = the metric's count.
        max_real        = None,     # Cap on real images (quick checks); None = the metric's count.
        batch_size      = 64,       # Images per detector call; the results do not depend on it.
        batch_gen       = None,     # Images per generator call; None = min(batch_size, 4) as in the original.
        num_workers     = None,     # DataLoader worker processes; None = 3 on CUDA, 0 on the CPU.
        ref_stats       = None,     # Reference statistics file (metrics/reference_stats.py) in place of the real images.
        resize          = "original",  # How images reach the detectors' input size: original, clean (image_resize.py).
        shared_generation = None,   # A SharedGeneration of a call of several metrics (shared_generation.py), or None.
        should_stop     = None,     # Callable: True once the caller wants the metric abandoned (MetricsStopped).
    ):
        assert 0 <= rank < num_gpus
        if device is None:
            device = torch.device("cuda", rank) if torch.cuda.is_available() else torch.device("cpu")
        self.G = G
        self.G_kwargs = dnnlib.EasyDict(G_kwargs or {})
        self.dataset_kwargs = dnnlib.EasyDict(dataset_kwargs or {})
        self.num_gpus = num_gpus
        self.rank = rank
        self.device = torch.device(device)
        self.progress = progress
        self.verbose = verbose
        self.cache = cache
        self.detectors = dict(detectors or {})
        self.seed = seed
        self.max_gen = max_gen
        self.max_real = max_real
        self.batch_size = batch_size
        self.batch_gen = batch_gen if batch_gen is not None else min(batch_size, 4)
        self.num_workers = num_workers if num_workers is not None else (3 if self.device.type == "cuda" else 0)
        self.ref_stats = ref_stats
        self.resize = image_resize.check_resize_mode(resize)
        self.shared_generation = shared_generation
        self.should_stop = should_stop


def capped(count, cap):
    """`count` limited by an optional cap (None = no cap)."""
    if cap is None:
        return count
    return cap if count is None else min(count, cap)


# ----------------------------------------------------------------------------
# Progress reporting.


class MetricsStopped(Exception):
    """The caller's should_stop() said so (e.g. training got SIGINT): the metric was abandoned part-way."""


class Progress:
    """A progress report on rank 0 when verbose (dnnlib.progress: a bar, or plain lines in a log) plus the caller's
    progress(done, total) callback; each update also asks opts.should_stop, every rank agreeing (every rank updates
    once per batch), and raises MetricsStopped."""

    def __init__(self, opts, tag, total):
        self.opts = opts
        self.total = total
        self.callback = opts.progress if opts.rank == 0 else None
        self.bar = progress.bar(total=total, desc=tag, unit="img", disable=not (opts.verbose and opts.rank == 0))

    def update(self, done):
        done = min(done, self.total)
        self.bar.update(done - self.bar.n)
        if self.callback is not None:
            self.callback(done, self.total)
        if self.opts.should_stop is not None and _any_rank(self.opts, self.opts.should_stop()):
            self.bar.close()
            raise MetricsStopped()

    def close(self):
        self.bar.close()


# ----------------------------------------------------------------------------
# Numerics and randomness.


@contextlib.contextmanager
def no_tf32():
    """TF32 off while networks run: the published numbers were computed in full fp32 (TF32 shifts features)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@contextlib.contextmanager
def seeded_global_rng(seed, device):
    """Seed torch's global RNG (used by the generator's noise inputs) and restore the caller's stream afterwards."""
    devices = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        torch.default_generator.manual_seed(seed)
        if device.type == "cuda":
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


def mix_seed(seed, index):
    """One seed per (seed, index) pair, so a draw depends on the image's index and nothing else.

    torch's CPU generator keeps only 32 bits of a seed; consecutive indices from a hashed start never
    collide within a run, and the starts of different seeds lie far apart.
    """
    start = int(np.random.SeedSequence(int(seed)).generate_state(1)[0])
    return (start + int(index)) % (1 << 32)


def latents_and_labels(indices, z_dim, dataset, seed):
    """z ~ N(0, I) and a label of a uniformly drawn real image, per global image index.

    Drawing per index (not per batch) keeps every image the same whatever the batch size or rank count.
    """
    zs, cs = [], []
    for index in indices:
        gen = torch.Generator().manual_seed(mix_seed(seed, index))
        zs.append(torch.randn([z_dim], generator=gen))
        label_idx = int(torch.randint(len(dataset), [], generator=gen))
        cs.append(torch.from_numpy(np.asarray(dataset.get_label(label_idx), dtype=np.float32)))
    return torch.stack(zs), torch.stack(cs)


def images_to_uint8(img):
    """Generator output in [-1, 1] to the uint8 pixels the detectors see (the original rounding: truncation)."""
    return (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)


# ----------------------------------------------------------------------------
# Feature statistics.


class FeatureStats:
    """Detector features of a set of images: all rows (float32) and/or float64 sums for the mean and covariance."""

    def __init__(self,
        capture_all         = False,    # Keep every feature row (KID, precision/recall, IS)?
        capture_mean_cov    = False,    # Keep float64 sums of x and x^T x (FID)?
        max_items           = None,     # Ignore rows beyond this count; None = unlimited.
    ):
        self.capture_all = capture_all
        self.capture_mean_cov = capture_mean_cov
        self.max_items = max_items
        self.num_items = 0
        self.num_features = None
        self.all_features = []
        self.raw_mean = None
        self.raw_cov = None

    def set_num_features(self, num_features):
        if self.num_features is not None:
            assert num_features == self.num_features
            return
        self.num_features = num_features
        self.raw_mean = np.zeros([num_features], dtype=np.float64)
        self.raw_cov = np.zeros([num_features, num_features], dtype=np.float64)

    def is_full(self):
        return self.max_items is not None and self.num_items >= self.max_items

    def append(self, x):
        x = np.asarray(x, dtype=np.float32)
        assert x.ndim == 2
        if self.max_items is not None:
            x = x[:max(self.max_items - self.num_items, 0)]
        self.set_num_features(x.shape[1])
        if x.shape[0] == 0:
            return
        self.num_items += x.shape[0]
        if self.capture_all:
            self.all_features.append(x)
        if self.capture_mean_cov:
            x64 = x.astype(np.float64)
            self.raw_mean += x64.sum(axis=0)
            self.raw_cov += x64.T @ x64

    def append_torch(self, x, num_gpus=1, rank=0):
        """Append a batch; with several ranks, gather every rank's batch, interleaved in global image order."""
        assert x.ndim == 2 and 0 <= rank < num_gpus
        if num_gpus > 1:
            parts = [torch.empty_like(x) for _ in range(num_gpus)]
            torch.distributed.all_gather(parts, x.contiguous())
            x = torch.stack(parts, dim=1).flatten(0, 1)
        self.append(x.detach().cpu().numpy())

    def get_all(self):
        assert self.capture_all
        if not self.all_features:
            return np.zeros([0, self.num_features or 0], dtype=np.float32)
        return np.concatenate(self.all_features)

    def get_all_torch(self):
        return torch.from_numpy(self.get_all())

    def get_mean_cov(self, ddof=0):
        """Mean and covariance: ddof=0 divides by N, as the original FID code does; ddof=1 by N - 1, as EDM2's."""
        assert self.capture_mean_cov and self.num_items > ddof
        mean = self.raw_mean / self.num_items
        if ddof == 0:  # the original's exact arithmetic, so that published numbers are reproduced to the bit
            return mean, self.raw_cov / self.num_items - np.outer(mean, mean)
        return mean, (self.raw_cov - np.outer(mean, mean) * self.num_items) / (self.num_items - ddof)

    def save(self, path):
        """Write atomically as .npz (no pickles: a cache file must not be able to run code)."""
        arrays = dict(
            capture_all=np.array(self.capture_all), capture_mean_cov=np.array(self.capture_mean_cov),
            max_items=np.array(-1 if self.max_items is None else self.max_items, dtype=np.int64),
            num_items=np.array(self.num_items, dtype=np.int64),
            num_features=np.array(-1 if self.num_features is None else self.num_features, dtype=np.int64))
        if self.capture_all:
            arrays["all_features"] = self.get_all()
        if self.capture_mean_cov and self.num_features is not None:
            arrays.update(raw_mean=self.raw_mean, raw_cov=self.raw_cov)
        dnnlib.util.atomic_write(path, lambda f: np.savez(f, **arrays))

    @staticmethod
    def load(path):
        with np.load(path, allow_pickle=False) as data:
            max_items = int(data["max_items"])
            stats = FeatureStats(capture_all=bool(data["capture_all"]), capture_mean_cov=bool(data["capture_mean_cov"]),
                                 max_items=None if max_items < 0 else max_items)
            stats.num_items = int(data["num_items"])
            num_features = int(data["num_features"])
            stats.num_features = None if num_features < 0 else num_features
            if stats.capture_all:
                stats.all_features = [data["all_features"]]
            if "raw_mean" in data:
                stats.raw_mean, stats.raw_cov = data["raw_mean"], data["raw_cov"]
        return stats


# ----------------------------------------------------------------------------
# Real-data statistics cache.


def dataset_identity(dataset_kwargs):
    """Path, total size and latest modification time of the dataset's files; None when it has no local path."""
    path = dataset_kwargs.get("path")
    if not isinstance(path, str) or not os.path.exists(path):
        return None
    if os.path.isfile(path):
        st = os.stat(path)
        return dict(path=os.path.abspath(path), size=st.st_size, mtime_ns=st.st_mtime_ns)
    files, size, mtime_ns = 0, 0, os.stat(path).st_mtime_ns
    for root, _dirs, names in os.walk(path):
        for name in names:
            st = os.stat(os.path.join(root, name))
            files, size, mtime_ns = files + 1, size + st.st_size, max(mtime_ns, st.st_mtime_ns)
    return dict(path=os.path.abspath(path), files=files, size=size, mtime_ns=mtime_ns)


def stats_cache_path(opts, kind, detector_kwargs, stats_kwargs):
    """<cache>/gan-metrics/<dataset>-<detector>-<md5 of a canonical JSON of everything the statistics depend on>.npz"""
    spec, _ = detector_spec(opts, kind)
    dataset_kwargs = dict(opts.dataset_kwargs)
    if isinstance(dataset_kwargs.get("path"), str):
        dataset_kwargs["path"] = os.path.abspath(dataset_kwargs["path"])  # the same data from any working folder
    key = dict(dataset_kwargs=dataset_kwargs, dataset=dataset_identity(opts.dataset_kwargs),
               detector=detector_identity(spec), detector_kwargs=detector_kwargs, stats_kwargs=stats_kwargs, format=1)
    if opts.resize != "original":  # only then: the caches of the original resizing stay valid
        key["resize"] = opts.resize
    digest = hashlib.md5(json.dumps(key, sort_keys=True, default=repr).encode("utf-8")).hexdigest()
    path = opts.dataset_kwargs.get("path")
    dataset_name = os.path.splitext(os.path.basename(os.path.normpath(path)))[0] if isinstance(path, str) else "data"
    name = re.sub(r"[^0-9A-Za-z._-]", "_", f"{dataset_name}-{kind}-{digest}.npz")
    return dnnlib.util.make_cache_dir_path("gan-metrics", name)


def _any_rank(opts, flag):
    """True on every rank when `flag` is true on any of them."""
    if opts.num_gpus > 1 and torch.distributed.is_initialized():
        t = torch.as_tensor(float(flag), dtype=torch.float32, device=opts.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        flag = bool(t.item())
    return flag


def _rank0_flag(opts, flag):
    """Rank 0's boolean, shared with every rank so that all take the same branch."""
    if opts.num_gpus > 1 and torch.distributed.is_initialized():
        t = torch.as_tensor(float(flag), dtype=torch.float32, device=opts.device)
        torch.distributed.broadcast(t, src=0)
        flag = bool(t.item())
    return flag


# ----------------------------------------------------------------------------
# Feature extraction.


def label_source(opts):
    """What generated images draw labels from: the real dataset, or the reference statistics file's labels."""
    if opts.ref_stats is not None and "class_name" not in opts.dataset_kwargs:
        return reference_stats.label_table(reference_stats.cached_reference_stats(opts.ref_stats), int(opts.G.c_dim))
    return open_dataset(opts.dataset_kwargs)


def reference_feature_stats(opts, kind, max_items):
    """Real-image statistics from the file opts.ref_stats instead of the dataset, once the file is known to fit."""
    ref = reference_stats.cached_reference_stats(opts.ref_stats)
    spec, _ = detector_spec(opts, kind)
    image_shape = reference_stats.generator_image_shape(opts.G) if opts.G is not None else None
    path = opts.dataset_kwargs.get("path")  # training passes its dataset along with the file: they must agree
    dataset = (path, dataset_fingerprint(path)) if isinstance(path, str) and os.path.exists(path) else None
    reference_stats.check_compatible(ref, kind, detector_sha256(opts, kind), f"{DETECTORS[kind].title} detector "
                                     f"({spec})", xflip=opts.dataset_kwargs.get("xflip", False),
                                     image_shape=image_shape, resize=opts.resize, dataset=dataset)
    return reference_stats.FileStats(ref, kind, max_items)


def compute_feature_stats_for_dataset(opts, detector, detector_kwargs, max_items=None, **stats_kwargs):
    """Features of the real images (all, or the first max_items in dataset order), cached on disk by rank 0."""
    max_items = capped(max_items, opts.max_real)
    if opts.ref_stats is not None:
        return reference_feature_stats(opts, detector, max_items)
    cache_file = None
    if opts.cache:
        cache_file = stats_cache_path(opts, detector, detector_kwargs, dict(stats_kwargs, max_items=max_items))
        if _rank0_flag(opts, opts.rank == 0 and os.path.isfile(cache_file)):
            try:
                return FeatureStats.load(cache_file)
            except (OSError, ValueError, KeyError) as err:  # unreadable (e.g. an older format): compute afresh
                warnings.warn(f"{cache_file}: ignoring unreadable cached statistics ({err})")

    dataset = open_dataset(opts.dataset_kwargs)
    num_items = capped(len(dataset), max_items)
    stats = FeatureStats(max_items=num_items, **stats_kwargs)
    detector_net = get_feature_detector(opts, detector)

    # Rank r reads items r, r + N, r + 2N, ...; gathering interleaves them back into dataset order.
    item_subset = [(i * opts.num_gpus + opts.rank) % num_items for i in range((num_items - 1) // opts.num_gpus + 1)]
    loader_kwargs = dict(num_workers=opts.num_workers, pin_memory=opts.device.type == "cuda",
                         worker_init_fn=misc.ignore_stop_signals)
    if opts.num_workers > 0:
        loader_kwargs.update(prefetch_factor=2)
    loader = torch.utils.data.DataLoader(dataset, sampler=item_subset, batch_size=opts.batch_size, **loader_kwargs)
    progress = Progress(opts, "real images", num_items)
    with no_tf32(), torch.no_grad():
        for images, _labels in loader:
            features = run_detector(detector_net, detector_images(opts, detector, images.to(opts.device)),
                                    detector_kwargs)
            stats.append_torch(features, num_gpus=opts.num_gpus, rank=opts.rank)
            progress.update(stats.num_items)
    progress.close()

    if cache_file is not None and opts.rank == 0:
        stats.save(cache_file)
    return stats


def generation_schedule(max_items, batch_size, num_gpus):
    """Images per rank in each detector batch: every rank makes the same count, its share of what is still missing."""
    schedule, remaining = [], max_items
    while remaining > 0:
        batch = min(batch_size, -(-remaining // num_gpus))
        schedule.append(batch)
        remaining -= batch * num_gpus
    return schedule


def prefetched(make_items, max_queued=2):
    """Yield what the generator function make_items() yields, computed ahead in a background thread.

    The caller's work on one item overlaps the making of the next (PyTorch releases the GIL inside its ops);
    at most max_queued items wait. An exception in the thread is raised here; if the caller stops early, the
    thread stops at its next item.
    """
    items = queue.Queue(maxsize=max_queued)
    stop = threading.Event()
    done = object()

    def produce():
        try:
            for item in make_items():
                if not _put_unless_stopped(items, (True, item), stop):
                    return
            _put_unless_stopped(items, (True, done), stop)
        except BaseException as err:  # handed to the consumer, which raises it
            _put_unless_stopped(items, (False, err), stop)

    thread = threading.Thread(target=produce, name="prefetched", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = items.get()
            if not ok:
                raise item
            if item is done:
                return
            yield item
    finally:
        stop.set()
        thread.join()


def _put_unless_stopped(items, entry, stop):
    while not stop.is_set():
        try:
            items.put(entry, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


@contextlib.contextmanager
def intra_op_threads(count):
    """torch's intra-op thread count set to `count` in the calling thread while the block runs.

    OpenMP keeps the count per calling thread, so a background thread and the main thread can each use
    their own share of the cores; the process-wide setting is restored when the block ends.
    """
    saved = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def generation_overlaps(device):
    """Whether the generator makes the next batch in a background thread while the detectors read the current
    one: on GPUs, where the two keep different parts of the machine busy. Not on the CPU: there the detector
    alone keeps the cores busy (0.74-0.79 of the matmul peak with Inception's shapes), so two thread pools on the
    same cores only contend; benchmarks/RESULTS.md measured the overlap at 1.03-1.12x the time of the two in turn.
    The features are bitwise the same either way (each side uses the caller's thread count)."""
    return torch.device(device).type != "cpu"


# One detector output a metric reads from generated images: which detector, its call options, what to keep.
FeatureRequest = collections.namedtuple("FeatureRequest", ["detector", "detector_kwargs", "stats_kwargs"])


def compute_feature_stats_for_generator(opts, detector, detector_kwargs, max_items, **stats_kwargs):
    """Features of max_items generated images: z ~ N(0, I), c drawn from the real labels, noise_mode='random'.

    In a call of several metrics (opts.shared_generation), the images are made once for all of them.
    """
    max_items = capped(max_items, opts.max_gen)
    request = FeatureRequest(detector, dict(detector_kwargs), dict(stats_kwargs))
    if opts.shared_generation is not None:
        return opts.shared_generation.stats_for(opts, request, max_items)
    return generated_feature_stats(opts, [request], max_items)[0]


def generated_feature_stats(opts, requests, max_items):
    """A FeatureStats for each FeatureRequest, all from one pass over max_items generated images.

    Where generation_overlaps(), the generator makes the next batch in a background thread while the detectors
    read the current one.
    """
    G = copy.deepcopy(opts.G).eval().requires_grad_(False).to(opts.device)
    G_kwargs = dict(truncation_psi=1, noise_mode="random")
    G_kwargs.update(opts.G_kwargs)
    dataset = label_source(opts)
    stats = [FeatureStats(max_items=max_items, **request.stats_kwargs) for request in requests]
    detector_nets = {request.detector: get_feature_detector(opts, request.detector) for request in requests}

    threads = torch.get_num_threads()

    def generated_batches():
        next_local = 0  # This rank's j-th image is global image j * num_gpus + rank.
        with intra_op_threads(threads), torch.no_grad():  # both are per thread, for the background thread
            for batch in generation_schedule(max_items, opts.batch_size, opts.num_gpus):
                images = []
                for start in range(0, batch, opts.batch_gen):
                    count = min(opts.batch_gen, batch - start)
                    indices = [(next_local + k) * opts.num_gpus + opts.rank for k in range(count)]
                    next_local += count
                    z, c = latents_and_labels(indices, G.z_dim, dataset, opts.seed)
                    img = G(z=z.to(opts.device), c=c.to(opts.device), **G_kwargs)
                    images.append(images_to_uint8(img))
                yield torch.cat(images)

    progress = Progress(opts, "generated images", max_items)
    with seeded_global_rng(mix_seed(opts.seed, opts.rank), opts.device), no_tf32(), torch.no_grad():
        for images in (prefetched(generated_batches) if generation_overlaps(opts.device) else generated_batches()):
            inputs, outputs = {}, {}  # each detector resizes and runs once per batch, whatever reads it
            for request, request_stats in zip(requests, stats):
                call = (request.detector, json.dumps(request.detector_kwargs, sort_keys=True))
                if call not in outputs:
                    if request.detector not in inputs:
                        inputs[request.detector] = detector_images(opts, request.detector, images)
                    outputs[call] = run_detector(detector_nets[request.detector], inputs[request.detector],
                                                 request.detector_kwargs)
                request_stats.append_torch(outputs[call], num_gpus=opts.num_gpus, rank=opts.rank)
            progress.update(stats[0].num_items)
    progress.close()
    return stats
