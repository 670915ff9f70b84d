"""The StyleGAN2 training loop: phases, G_ema, ticks, snapshots, exact resume, signals and divergence checks.

One call trains one process's share of a (possibly multi-process) run. The global batch is
cut into chunks of `batch_gpu` images; chunk `k` of process `rank` is global chunk
`rank + num_gpus * k`. Everything random about a chunk (latents, labels, noise inputs, style
mixing, path length noise, augmentations) is seeded from (seed, step, phase, global chunk), and
the chunk's real images are the same whatever the process count, so a run on N processes
computes the same gradients as one process with N times as many chunks, and a resumed run
repeats the steps of an uninterrupted one.
"""
import copy
import json
import os
import signal
import time

import numpy as np
import torch

import dnnlib
import legacy
from dnnlib import image_grid
from torch_utils import cpu_tuning
from torch_utils import misc
from torch_utils import training_stats
from training import training_state

# ----------------------------------------------------------------------------
# Image grids.


def setup_snapshot_image_grid(training_set, random_seed=0, grid_size=None):
    """(cols, rows), images and labels of the reals grid: random images, grouped by label when there are labels."""
    rnd = np.random.RandomState(random_seed)
    height, width = training_set.image_shape[1:]
    gw, gh = grid_size if grid_size is not None else (np.clip(7680 // width, 7, 32), np.clip(4320 // height, 4, 32))
    gw, gh = int(gw), int(gh)
    if not training_set.has_labels:
        all_indices = list(range(len(training_set)))
        rnd.shuffle(all_indices)
        grid_indices = [all_indices[i % len(all_indices)] for i in range(gw * gh)]
    else:
        # One label per row, as many rows as fit.
        label_groups = dict()
        for idx in range(len(training_set)):
            label = tuple(training_set.get_label(idx).flatten())
            label_groups.setdefault(label, []).append(idx)
        label_order = sorted(label_groups.keys())
        for label in label_order:
            rnd.shuffle(label_groups[label])
        grid_indices = []
        for y in range(gh):
            indices = label_groups[label_order[y % len(label_order)]]
            grid_indices += [indices[x % len(indices)] for x in range(gw)]
    images, labels = zip(*[training_set[i] for i in grid_indices])
    return (gw, gh), np.stack(images), np.stack(labels)


def save_image_grid(img, fname, drange, grid_size):
    """Write NCHW images (values in `drange`) as one PNG of grid_size = (cols, rows); any height:width works."""
    lo, hi = drange
    img = np.asarray(img, dtype=np.float32)
    img = np.rint((img - lo) * (255 / (hi - lo))).clip(0, 255).astype(np.uint8)
    cols, rows = grid_size
    image_grid.save_png(image_grid.make_grid(img.transpose(0, 2, 3, 1), rows, cols), fname)


def generate_grid(G_ema, grid_z, grid_c, batch_gpu):
    with torch.no_grad():
        return torch.cat([G_ema(z=z, c=c, noise_mode="const").cpu() for z, c in
                          zip(grid_z.split(batch_gpu), grid_c.split(batch_gpu))]).numpy()


# ----------------------------------------------------------------------------
# Deterministic randomness per (step, phase, chunk) and the data stream.


def seed_chunk(random_seed, batch_idx, phase_idx, chunk_id):
    """Seed torch's global RNG for one chunk; returns a numpy RandomState with an independent seed."""
    words = np.random.SeedSequence([random_seed, batch_idx, phase_idx, chunk_id]).generate_state(3, dtype=np.uint32)
    torch.manual_seed(int(words[0]) << 32 | int(words[1]))
    return np.random.RandomState(int(words[2]))


class SkippingSampler(torch.utils.data.Sampler):
    """Wraps a sampler and drops its first `skip` indices: the data stream of a resumed run."""

    def __init__(self, sampler, skip=0):
        super().__init__()
        self.sampler = sampler
        self.skip = int(skip)

    def __iter__(self):
        it = iter(self.sampler)
        for _ in range(self.skip):
            next(it)
        return it


def _ignore_sigint(_worker_id):
    # Ctrl-C reaches the whole process group; data workers must keep serving until the loop saves and exits.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# ----------------------------------------------------------------------------
# Small helpers.


def _memory_gb():
    """Resident memory of this process in GiB (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 30
    except (OSError, ValueError, IndexError, AttributeError):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def _check_resume_shapes(src, dst, what):
    """A snapshot whose tensors have other shapes than this run's networks is a user error, named clearly."""
    src_tensors = dict(misc.named_params_and_buffers(src))
    for name, tensor in misc.named_params_and_buffers(dst):
        if name in src_tensors and src_tensors[name].shape != tensor.shape:
            raise dnnlib.util.UserError(
                f"--resume: {what} has {name} of shape {list(src_tensors[name].shape)}, this run's network needs "
                f"{list(tensor.shape)}; use the snapshot's options (resolution, --cbase, --cmax, --map, --cond)")


class NonFiniteLossError(dnnlib.util.UserError):
    """Training diverged (a NaN or Inf loss); the run stops without writing a snapshot of the broken state."""


class _StopSignals:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step (the handlers are restored on exit)."""

    def __init__(self, enabled):
        self.signum = 0
        self._previous = {}
        if enabled:
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    self._previous[sig] = signal.signal(sig, self._handle)
                except ValueError:  # Not the main thread: leave signals to whoever owns them.
                    pass

    def _handle(self, signum, _frame):
        if not self.signum:
            print(f"\nReceived {signal.Signals(signum).name}: finishing the current step, then saving a snapshot.",
                  flush=True)
        self.signum = self.signum or signum

    def restore(self):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# ----------------------------------------------------------------------------
# The loop.


def training_loop(
    run_dir                 = ".",      # Output folder (rank 0 writes into it).
    training_set_kwargs     = {},       # Options of the training set (training.dataset.ImageFolderDataset).
    data_loader_kwargs      = {},       # Options of torch.utils.data.DataLoader.
    G_kwargs                = {},       # Options of the generator.
    D_kwargs                = {},       # Options of the discriminator.
    G_opt_kwargs            = {},       # Options of the generator optimizer.
    D_opt_kwargs            = {},       # Options of the discriminator optimizer.
    augment_kwargs          = None,     # Options of the augmentation pipeline; None = no augmentation.
    loss_kwargs             = {},       # Options of the loss (training.loss.StyleGAN2Loss).
    metrics                 = [],       # Metrics to compute after each network snapshot.
    metric_kwargs           = {},       # Options of the metrics (metrics.metric_utils.MetricOptions), e.g. detectors.
    random_seed             = 0,        # Global random seed.
    num_gpus                = 1,        # Number of processes of the run.
    rank                    = 0,        # Rank of this process, 0 .. num_gpus - 1.
    batch_size              = 4,        # Total batch size of one training step over all processes.
    batch_gpu               = 4,        # Images per chunk (one forward/backward pass).
    ema_kimg                = 10,       # Half-life of the G_ema average, in thousands of images.
    ema_rampup              = 0.05,     # G_ema ramp-up: half-life at most this fraction of the images seen; None = off.
    G_reg_interval          = 4,        # Path length regularisation every this many steps; None = with the main loss.
    D_reg_interval          = 16,       # R1 regularisation every this many steps; None = with the main loss.
    augment_p               = 0,        # Initial (or, without ADA, fixed) augmentation probability.
    ada_target              = None,     # ADA target for E[sign(D(real))]; None = p stays fixed.
    ada_interval            = 4,        # Adjust p every this many steps.
    ada_kimg                = 500,      # ADA speed: p can move from 0 to 1 in this many kimg.
    total_kimg              = 25000,    # Training length in thousands of real images shown to D.
    kimg_per_tick           = 4,        # Progress line every this many kimg.
    image_snapshot_ticks    = 50,       # Image grid every this many ticks; None = never.
    network_snapshot_ticks  = 50,       # Network pickle every this many ticks; None = only at the end/on signals.
    grid_size               = None,     # (cols, rows) of the image grids; None = as many as fit in 7680x4320.
    resume_pkl              = None,     # Snapshot to start from: exact resume with `progress`, else weights only.
    resume_progress         = True,     # Restore the `progress` of resume_pkl (counters, optimizers, RNG)?
    cudnn_benchmark         = True,     # Let cuDNN pick the fastest convolution algorithms.
    allow_tf32              = False,    # Allow TF32 matmul/convolutions on Ampere and newer.
    device                  = None,     # torch.device; None = cuda:rank if available, else cpu.
    handle_signals          = True,     # Stop cleanly on SIGINT/SIGTERM (main thread only).
    abort_fn                = None,     # Callback: returns True to stop the run (checked once per tick).
    progress_fn             = None,     # Callback: progress_fn(cur_nimg, total_nimg), once per tick.
    max_minutes             = None,     # Stop (with a snapshot) at the first tick after this long; None = no limit.
    **_unused,                          # Options the launcher keeps for the record (e.g. run_dir extras).
):
    """Train; returns a dict with cur_nimg, the last snapshot path and `stopped_by`.

    `stopped_by` is None when total_kimg was reached, else 'SIGINT'/'SIGTERM', 'abort' or 'time limit'.
    """
    start_time = time.time()
    if device is None:
        device = torch.device("cuda", rank) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cpu":
        cpu_tuning.reuse_freed_memory()
    torch.backends.cudnn.benchmark = cudnn_benchmark
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    torch.backends.cudnn.allow_tf32 = allow_tf32
    assert batch_size % (batch_gpu * num_gpus) == 0, "batch_size must be a multiple of batch_gpu * num_gpus"
    rounds = batch_size // (batch_gpu * num_gpus)
    distributed = num_gpus > 1
    log = print if rank == 0 else (lambda *args, **kwargs: None)

    # Data: each rank reads every num_gpus-th item of one shuffled stream.
    training_set = dnnlib.util.construct_class_by_name(**training_set_kwargs)
    log(f"Dataset: {training_set.name}, {len(training_set)} images of {training_set.image_shape} (CxHxW), "
        f"labels {training_set.label_shape}")

    # Networks: built from the same seed on every rank (then broadcast from rank 0 to be sure).
    torch.manual_seed(random_seed)
    common_kwargs = dict(c_dim=training_set.label_dim, img_resolution=training_set.resolution,
                         img_channels=training_set.num_channels)
    G = dnnlib.util.construct_class_by_name(**G_kwargs, **common_kwargs).train().requires_grad_(False).to(device)
    D = dnnlib.util.construct_class_by_name(**D_kwargs, **common_kwargs).train().requires_grad_(False).to(device)
    G_ema = copy.deepcopy(G).eval()
    augment_pipe = None
    if augment_kwargs is not None:
        augment_pipe = dnnlib.util.construct_class_by_name(**augment_kwargs).train().requires_grad_(False).to(device)
        augment_pipe.p.copy_(torch.as_tensor(float(augment_p)))
    if (G.img_height, G.img_width) != tuple(training_set.image_shape[1:]):
        raise dnnlib.util.UserError(f"{training_set_kwargs.get('path')}: images are {training_set.image_shape[1:]} "
                                    f"(HxW) but the generator makes {G.img_height}x{G.img_width}; check --aspect")

    # Resume: weights always, the full state when the snapshot has it.
    resume_data = None
    if resume_pkl is not None:
        log(f"Resuming from {resume_pkl}")
        with dnnlib.util.open_url(resume_pkl) as f:
            resume_data = legacy.load_network_pkl(f)
        exact = resume_progress and resume_data.get("progress") is not None
        for name, module in [("G", G), ("D", D), ("G_ema", G_ema), ("augment_pipe", augment_pipe)]:
            if module is not None and resume_data.get(name) is not None:
                _check_resume_shapes(resume_data[name], module, f"{resume_pkl} '{name}'")
                misc.copy_params_and_buffers(resume_data[name], module, require_all=exact)
        if not exact:
            resume_data["progress"] = None

    # Phases with lazy regularisation (StyleGAN2 appendix B): lr and betas scaled by mb_ratio.
    loss = dnnlib.util.construct_class_by_name(device=device, G=G, D=D, augment_pipe=augment_pipe, **loss_kwargs)
    phases = []
    for name, module, opt_kwargs, reg_interval in [("G", G, G_opt_kwargs, G_reg_interval),
                                                   ("D", D, D_opt_kwargs, D_reg_interval)]:
        if reg_interval is None:
            opt = dnnlib.util.construct_class_by_name(params=module.parameters(), **opt_kwargs)
            phases += [dnnlib.EasyDict(name=name + "both", module=module, opt=opt, interval=1)]
        else:
            mb_ratio = reg_interval / (reg_interval + 1)
            opt_kwargs = dnnlib.EasyDict(opt_kwargs)
            opt_kwargs.lr = opt_kwargs.lr * mb_ratio
            opt_kwargs.betas = [beta ** mb_ratio for beta in opt_kwargs.betas]
            opt = dnnlib.util.construct_class_by_name(params=module.parameters(), **opt_kwargs)
            phases += [dnnlib.EasyDict(name=name + "main", module=module, opt=opt, interval=1)]
            phases += [dnnlib.EasyDict(name=name + "reg", module=module, opt=opt, interval=reg_interval)]
    opts = {"G_opt": phases[0].opt, "D_opt": phases[-1].opt}

    ada = None
    if augment_pipe is not None and ada_target is not None:
        from training.ada import AdaController
        ada = AdaController(augment_pipe=augment_pipe, batch_size=batch_size, target=ada_target,
                            interval=ada_interval, kimg=ada_kimg)
        loss.real_logits_observers.append(ada.accumulate)

    # Per-rank seeds for whatever is not seeded per chunk (a resume below restores the saved states instead).
    np.random.seed((random_seed * num_gpus + rank) % 2 ** 32)
    state = dnnlib.EasyDict(cur_nimg=0, cur_tick=0, batch_idx=0, tick_start_nimg=0)
    if resume_data is not None and resume_data["progress"] is not None:
        training_state.restore(resume_data["progress"], state=state, opts=opts, loss=loss, ada=ada,
                               num_gpus=num_gpus, batch_size=batch_size, log=log)
    del resume_data

    if distributed:
        for module in [G, D, G_ema, augment_pipe]:
            if module is not None:
                for tensor in misc.params_and_buffers(module):
                    torch.distributed.broadcast(tensor, src=0)

    # The data stream, fast-forwarded past the images a resumed run has already used.
    sampler = misc.InfiniteSampler(dataset=training_set, rank=rank, num_replicas=num_gpus, seed=random_seed)
    skip = state.cur_nimg // num_gpus
    loader_kwargs = dict(data_loader_kwargs)
    if loader_kwargs.get("num_workers", 0) == 0:
        loader_kwargs.pop("prefetch_factor", None)
    loader_kwargs.setdefault("pin_memory", device.type == "cuda")
    training_set_iterator = iter(torch.utils.data.DataLoader(
        dataset=training_set, sampler=SkippingSampler(sampler, skip), batch_size=batch_size // num_gpus,
        worker_init_fn=_ignore_sigint, **loader_kwargs))

    # Output: summaries, reals grid and the initial fakes (rank 0).
    grid_size_wh = grid_z = grid_c = None
    if rank == 0:
        # In eval mode, so that the summary's forward pass leaves G's w_avg alone.
        z = torch.zeros([batch_gpu, G.z_dim], device=device)
        c = torch.zeros([batch_gpu, G.c_dim], device=device)
        img = misc.print_module_summary(G.eval(), [z, c])
        misc.print_module_summary(D, [img, c])
        G.train()
        grid_size_wh, images, labels = setup_snapshot_image_grid(training_set, random_seed, grid_size)
        if state.cur_nimg == 0:
            save_image_grid(images, os.path.join(run_dir, "reals.png"), drange=[0, 255], grid_size=grid_size_wh)
        grid_gen = torch.Generator().manual_seed(random_seed)
        grid_z = torch.randn([labels.shape[0], G.z_dim], generator=grid_gen).to(device)
        grid_c = torch.from_numpy(labels).to(device)
        if state.cur_nimg == 0:
            save_image_grid(generate_grid(G_ema, grid_z, grid_c, batch_gpu), os.path.join(run_dir, "fakes_init.png"),
                            drange=[-1, 1], grid_size=grid_size_wh)

    stats_collector = training_stats.Collector(regex=".*")
    stats_jsonl = None
    stats_tfevents = None
    if rank == 0:
        stats_jsonl = open(os.path.join(run_dir, "stats.jsonl"), "at")
        try:
            import torch.utils.tensorboard as tensorboard
            stats_tfevents = tensorboard.SummaryWriter(run_dir)
        except ImportError as err:
            print(f"Skipping TensorBoard export: {err}")

    stop = _StopSignals(handle_signals)
    snapshot_pkl = None
    last_snapshot_nimg = None
    stopped_by = None

    def all_reduce_mean(value):
        if distributed:
            torch.distributed.all_reduce(value)
            value = value / num_gpus
        return value

    def write_snapshot(with_metrics):
        """Network pickle (rank 0, atomic) with the resume state; then metrics on all ranks."""
        nonlocal snapshot_pkl, last_snapshot_nimg
        data = dict(training_set_kwargs=dict(training_set_kwargs))
        for name, module in [("G", G), ("D", D), ("G_ema", G_ema), ("augment_pipe", augment_pipe)]:
            data[name] = copy.deepcopy(module).eval().requires_grad_(False).cpu() if module is not None else None
        if distributed:
            for module in [G, D, G_ema]:
                misc.check_ddp_consistency(module, ignore_regex=r".*\.w_avg")
        path = os.path.join(run_dir or ".", f"network-snapshot-{state.cur_nimg // 1000:06d}.pkl")
        if rank == 0:
            data["progress"] = training_state.capture(state=state, opts=opts, loss=loss, ada=ada,
                                                      num_gpus=num_gpus, batch_size=batch_size,
                                                      random_seed=random_seed)
            legacy.save_network_pkl(path, data)
        snapshot_pkl = path
        last_snapshot_nimg = state.cur_nimg
        if with_metrics and metrics:
            from metrics import metric_main
            if rank == 0:
                print(f"Evaluating metrics: {', '.join(metrics)}")
            for metric in metrics:
                result_dict = metric_main.calc_metric(metric=metric, G=data["G_ema"],
                                                      dataset_kwargs=training_set_kwargs, num_gpus=num_gpus,
                                                      rank=rank, device=device, **metric_kwargs)
                if rank == 0:
                    metric_main.report_metric(result_dict, run_dir=run_dir, snapshot_pkl=path)
                    stats_metrics.update(result_dict.results)

    # Main loop.
    if state.cur_nimg >= total_kimg * 1000:
        log(f"The snapshot is already at kimg {state.cur_nimg / 1000:g}, past --kimg={total_kimg:g}; nothing to do.")
        stop.restore()
        for f in (stats_jsonl, stats_tfevents):
            if f is not None:
                f.close()
        return dict(cur_nimg=state.cur_nimg, snapshot_pkl=resume_pkl, stopped_by=None)
    log(f"Training for {total_kimg} kimg" + (f", from kimg {state.cur_nimg / 1000:.1f}" if state.cur_nimg else "")
        + "...\n")
    stats_metrics = dict()
    tick_start_time = time.time()
    maintenance_time = tick_start_time - start_time
    if progress_fn is not None:
        progress_fn(state.cur_nimg // 1000, total_kimg)
    z_dim = G.z_dim
    try:
        while True:
            # Fetch reals; chunk k of this rank holds every rounds-th image (see the module docstring).
            with torch.autograd.profiler.record_function("data_fetch"):
                phase_real_img, phase_real_c = next(training_set_iterator)
                phase_real_img = phase_real_img.to(device).to(torch.float32) / 127.5 - 1
                phase_real_c = phase_real_c.to(device)
                real_chunks = [(phase_real_img[k::rounds], phase_real_c[k::rounds]) for k in range(rounds)]

            nonfinite = torch.zeros([], device=device)
            for phase_idx, phase in enumerate(phases):
                if state.batch_idx % phase.interval != 0:
                    continue
                phase.opt.zero_grad(set_to_none=True)
                phase.module.requires_grad_(True)
                for k, (real_img, real_c) in enumerate(real_chunks):
                    chunk_rnd = seed_chunk(random_seed, state.batch_idx, phase_idx, rank + num_gpus * k)
                    gen_z = torch.randn([batch_gpu, z_dim], device=device)
                    gen_c = training_set.get_label(0)[np.newaxis].repeat(batch_gpu, axis=0)
                    if training_set.has_labels:
                        gen_c = np.stack([training_set.get_label(i) for i in chunk_rnd.randint(len(training_set),
                                                                                                size=batch_gpu)])
                    gen_c = torch.from_numpy(gen_c).to(device)
                    terms = loss.accumulate_gradients(phase=phase.name, real_img=real_img, real_c=real_c,
                                                      gen_z=gen_z, gen_c=gen_c, sync=True,
                                                      gain=phase.interval / rounds)
                    for value in terms.values():
                        nonfinite = torch.maximum(nonfinite, (~torch.isfinite(value)).to(nonfinite.dtype))
                phase.module.requires_grad_(False)
                if phase.name in ("Greg", "Gboth"):
                    loss.update_pl_mean(all_reduce_mean if distributed else None)

                # Average gradients over processes (one flat all-reduce), then step.
                with torch.autograd.profiler.record_function(phase.name + "_opt"):
                    params = [p for p in phase.module.parameters() if p.numel() > 0 and p.grad is not None]
                    if params:
                        flat = torch.cat([p.grad.flatten() for p in params])
                        if distributed:
                            torch.distributed.all_reduce(flat)
                            flat /= num_gpus
                        torch.nan_to_num(flat, nan=0, posinf=1e5, neginf=-1e5, out=flat)
                        for p, grad in zip(params, flat.split([p.numel() for p in params])):
                            p.grad = grad.reshape(p.shape)
                        phase.opt.step()

            # G_ema: exponential moving average of G with a ramp-up of the half-life.
            with torch.autograd.profiler.record_function("Gema"):
                ema_nimg = ema_kimg * 1000
                if ema_rampup is not None:
                    ema_nimg = min(ema_nimg, state.cur_nimg * ema_rampup)
                ema_beta = 0.5 ** (batch_size / max(ema_nimg, 1e-8))
                for p_ema, p in zip(G_ema.parameters(), G.parameters()):
                    p_ema.copy_(p.lerp(p_ema, ema_beta))
                for b_ema, b in zip(G_ema.buffers(), G.buffers()):
                    b_ema.copy_(b)

            state.cur_nimg += batch_size
            state.batch_idx += 1
            if ada is not None:
                rt = ada.step()
                if rt is not None:
                    training_stats.report("Progress/ada_rt", rt)

            # One small all-reduce per step: did any rank see a bad loss or a stop signal?
            flags = torch.stack([nonfinite, torch.tensor(float(stop.signum), device=device)])
            if distributed:
                torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
            nonfinite_any, signum = (int(v) for v in flags.tolist())
            if nonfinite_any:
                last = f"the last good snapshot is {snapshot_pkl}" if snapshot_pkl else "no snapshot was written"
                raise NonFiniteLossError(
                    f"training diverged: a loss became NaN or Inf in the step ending at kimg "
                    f"{state.cur_nimg / 1000:.3f} "
                    f"(tick {state.cur_tick}); {last}. Lower --glr/--dlr or raise --gamma, then --resume from a "
                    f"good snapshot")

            done = state.cur_nimg >= total_kimg * 1000
            if signum:
                stopped_by = signal.Signals(signum).name
                done = True
            if (not done) and (state.cur_tick != 0) and (state.cur_nimg < state.tick_start_nimg + kimg_per_tick * 1000):
                continue

            # Tick: progress line, grids, snapshots, statistics.
            tick_end_time = time.time()
            fields = []
            fields += [f"tick {training_stats.report0('Progress/tick', state.cur_tick):<5d}"]
            fields += [f"kimg {training_stats.report0('Progress/kimg', state.cur_nimg / 1e3):<8.1f}"]
            total_sec = training_stats.report0("Timing/total_sec", tick_end_time - start_time)
            fields += [f"time {dnnlib.util.format_time(total_sec):<12s}"]
            sec_per_tick = training_stats.report0("Timing/sec_per_tick", tick_end_time - tick_start_time)
            fields += [f"sec/tick {sec_per_tick:<7.1f}"]
            sec_per_kimg = (tick_end_time - tick_start_time) / max(state.cur_nimg - state.tick_start_nimg, 1) * 1e3
            fields += [f"sec/kimg {training_stats.report0('Timing/sec_per_kimg', sec_per_kimg):<7.2f}"]
            fields += [f"maintenance {training_stats.report0('Timing/maintenance_sec', maintenance_time):<6.1f}"]
            fields += [f"cpumem {training_stats.report0('Resources/cpu_mem_gb', _memory_gb()):<6.2f}"]
            gpumem = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else 0
            fields += [f"gpumem {training_stats.report0('Resources/peak_gpu_mem_gb', gpumem):<6.2f}"]
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            augment_value = float(augment_pipe.p.cpu()) if augment_pipe is not None else 0
            fields += [f"augment {training_stats.report0('Progress/augment', augment_value):.3f}"]
            stats_collector.update()
            loss_fields = [("G", "Loss/G/loss"), ("D", "Loss/D/loss"), ("Gpl", "Loss/G/reg"), ("Dr1", "Loss/D/reg")]
            for label, name in loss_fields:
                if stats_collector.num(name):
                    fields += [f"{label} {stats_collector.mean(name):.3f}"]
            log(" ".join(fields), flush=True)

            if not done and abort_fn is not None and abort_fn():
                done = True
                stopped_by = "abort"
                log("Aborting...")
            if not done and max_minutes is not None and tick_end_time - start_time >= max_minutes * 60:
                done = True
                stopped_by = "time limit"
                log(f"Time limit of {max_minutes:g} minutes reached; stopping.")

            if rank == 0 and image_snapshot_ticks is not None and (done or state.cur_tick % image_snapshot_ticks == 0):
                images = generate_grid(G_ema, grid_z, grid_c, batch_gpu)
                save_image_grid(images, os.path.join(run_dir, f"fakes{state.cur_nimg // 1000:06d}.png"),
                                drange=[-1, 1], grid_size=grid_size_wh)

            if network_snapshot_ticks is not None and (done or state.cur_tick % network_snapshot_ticks == 0):
                write_snapshot(with_metrics=stopped_by is None)
            elif stopped_by is not None or (done and last_snapshot_nimg != state.cur_nimg):
                write_snapshot(with_metrics=False)

            # Statistics to stats.jsonl and TensorBoard.
            stats_dict = stats_collector.as_dict()
            timestamp = time.time()
            if stats_jsonl is not None:
                stats_jsonl.write(json.dumps(dict(stats_dict, timestamp=timestamp)) + "\n")
                stats_jsonl.flush()
            if stats_tfevents is not None:
                global_step = int(state.cur_nimg / 1e3)
                walltime = timestamp - start_time
                for name, value in stats_dict.items():
                    stats_tfevents.add_scalar(name, value.mean, global_step=global_step, walltime=walltime)
                for name, value in stats_metrics.items():
                    stats_tfevents.add_scalar(f"Metrics/{name}", value, global_step=global_step, walltime=walltime)
                stats_tfevents.flush()
            stats_metrics = dict()
            if progress_fn is not None:
                progress_fn(state.cur_nimg // 1000, total_kimg)

            state.cur_tick += 1
            state.tick_start_nimg = state.cur_nimg
            tick_start_time = time.time()
            maintenance_time = tick_start_time - tick_end_time
            if done:
                break
    finally:
        stop.restore()
        if stats_jsonl is not None:
            stats_jsonl.close()
        if stats_tfevents is not None:
            stats_tfevents.close()

    if stopped_by is not None and stopped_by.startswith("SIG"):
        log(f"Stopped by {stopped_by} at kimg {state.cur_nimg / 1000:.3f}; resume with --resume={snapshot_pkl}")
    else:
        log("\nExiting...")
    return dict(cur_nimg=state.cur_nimg, snapshot_pkl=snapshot_pkl, stopped_by=stopped_by)
