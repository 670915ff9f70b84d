"""The StyleGAN2 training loop: phases, G_ema, ticks, snapshots, exact resume, signals and divergence checks.

One call trains one process's share of a (possibly multi-process) run. The global batch is
cut into chunks of `batch_gpu` images; chunk `k` of process `rank` is global chunk
`rank + num_gpus * k`. Everything random about a chunk (latents, labels, noise inputs, style
mixing, path length noise, augmentations) is seeded from (seed, step, phase, global chunk), and
the chunk's real images are the same whatever the process count, so a run on N processes
computes the same gradients as one process with N times as many chunks, and a resumed run
repeats the steps of an uninterrupted one.

The parts, in the order a run meets them:
  - setup (`setup_run`): the training set, the networks, the resume, the phases and the data stream;
  - one training step (`training_step`): every due phase over all chunks, the gradient all-reduce,
    G_ema and the counters;
  - the end of a tick (`end_of_tick`): the progress line, the stop conditions, and the run folder's
    outputs (training/run_outputs.py: grids, snapshots, metrics, statistics).
"""
import copy
import dataclasses
import os
import signal
import time
from typing import Any, Optional

import numpy as np
import torch

import dnnlib
from torch_utils import cpu_tuning
from torch_utils import distributed
from torch_utils import misc
from torch_utils import training_stats
from training import resume
from training import training_state
from training.ada import AdaController
from training.dataset import open_dataset
from training.options import TrainingOptions
from training.run_outputs import RunOutputs, check_metrics_handed_in

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


# ----------------------------------------------------------------------------
# Small helpers.


def _memory_gb():
    """Resident memory of this process in GiB (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 30
    except (OSError, ValueError, IndexError, AttributeError):
        import resource  # here: POSIX only, and needed only where /proc is missing
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


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
# Setup: data, networks, resume, phases.


@dataclasses.dataclass
class Run:
    """What setup builds and each step uses: one process's share of a training run."""
    options: TrainingOptions
    rank: int
    device: torch.device
    training_set: Any
    G: torch.nn.Module
    D: torch.nn.Module
    G_ema: torch.nn.Module
    augment_pipe: Optional[torch.nn.Module]
    loss: Any                 # training.loss.StyleGAN2Loss (or what loss_kwargs names).
    phases: list              # EasyDict(name, module, opt, interval) per phase, G's first.
    ada: Any                  # training.ada.AdaController, or None.
    state: dnnlib.EasyDict    # cur_nimg, cur_tick, batch_idx, tick_start_nimg.
    data: Any = None          # Iterator over this process's (images, labels) batches.

    @property
    def rounds(self):
        """Chunks of batch_gpu images per process and step."""
        return self.options.batch_size // (self.options.batch_gpu * self.options.num_gpus)

    @property
    def optimizers(self):
        return {"G_opt": self.phases[0].opt, "D_opt": self.phases[-1].opt}

    def networks(self):
        """The networks a snapshot holds, in the order it holds them."""
        return dict(G=self.G, D=self.D, G_ema=self.G_ema, augment_pipe=self.augment_pipe)


def build_networks(options, training_set, device):
    """G, D, G_ema and the augmentation pipeline, built from the same seed on every rank."""
    torch.manual_seed(options.random_seed)
    common_kwargs = dict(c_dim=training_set.label_dim, img_resolution=training_set.resolution,
                         img_channels=training_set.num_channels)
    G = dnnlib.util.construct_class_by_name(**options.G_kwargs, **common_kwargs)
    G = G.train().requires_grad_(False).to(device)
    D = dnnlib.util.construct_class_by_name(**options.D_kwargs, **common_kwargs)
    D = D.train().requires_grad_(False).to(device)
    G_ema = copy.deepcopy(G).eval()
    augment_pipe = None
    if options.augment_kwargs is not None:
        augment_pipe = dnnlib.util.construct_class_by_name(**options.augment_kwargs)
        augment_pipe = augment_pipe.train().requires_grad_(False).to(device)
        augment_pipe.p.copy_(torch.as_tensor(float(options.augment_p)))
    if (G.img_height, G.img_width) != tuple(training_set.image_shape[1:]):
        raise dnnlib.util.UserError(f"{options.training_set_kwargs.get('path')}: images are "
                                    f"{training_set.image_shape[1:]} (HxW) but the generator makes "
                                    f"{G.img_height}x{G.img_width}; check --aspect")
    return dict(G=G, G_ema=G_ema, D=D, augment_pipe=augment_pipe)


def build_phases(options, G, D):
    """Phases with lazy regularisation (StyleGAN2 appendix B): lr and betas scaled by mb_ratio."""
    phases = []
    for name, module, opt_kwargs, reg_interval in [("G", G, options.G_opt_kwargs, options.G_reg_interval),
                                                   ("D", D, options.D_opt_kwargs, options.D_reg_interval)]:
        if reg_interval is None:
            opt = dnnlib.util.construct_class_by_name(params=module.parameters(), **opt_kwargs)
            phases += [dnnlib.EasyDict(name=name + "both", module=module, opt=opt, interval=1)]
            continue
        mb_ratio = reg_interval / (reg_interval + 1)
        opt_kwargs = dnnlib.EasyDict(opt_kwargs)
        opt_kwargs.lr = opt_kwargs.lr * mb_ratio
        opt_kwargs.betas = [beta ** mb_ratio for beta in opt_kwargs.betas]
        opt = dnnlib.util.construct_class_by_name(params=module.parameters(), **opt_kwargs)
        phases += [dnnlib.EasyDict(name=name + "main", module=module, opt=opt, interval=1)]
        phases += [dnnlib.EasyDict(name=name + "reg", module=module, opt=opt, interval=reg_interval)]
    return phases


def build_ada(options, augment_pipe, loss):
    """The ADA controller that moves the augmentation probability (--aug=ada), or None."""
    if augment_pipe is None or options.ada_target is None:
        return None
    ada = AdaController(augment_pipe=augment_pipe, batch_size=options.batch_size, target=options.ada_target,
                        interval=options.ada_interval, kimg=options.ada_kimg)
    loss.real_logits_observers.append(ada.accumulate)
    return ada


def make_data_stream(options, training_set, rank, device, skip):
    """This rank's batches: every num_gpus-th item of one shuffled stream, past the first `skip` of its own."""
    sampler = misc.InfiniteSampler(dataset=training_set, rank=rank, num_replicas=options.num_gpus,
                                   seed=options.random_seed)
    loader_kwargs = dict(options.data_loader_kwargs)
    if loader_kwargs.get("num_workers", 0) == 0:
        loader_kwargs.pop("prefetch_factor", None)
    loader_kwargs.setdefault("pin_memory", device.type == "cuda")
    return iter(torch.utils.data.DataLoader(
        dataset=training_set, sampler=SkippingSampler(sampler, skip), batch_size=options.batch_size // options.num_gpus,
        worker_init_fn=misc.ignore_stop_signals, **loader_kwargs))


def setup_run(options, rank, device, log):
    """Everything before the first step: data, networks (resumed when asked), loss, phases, ADA and counters."""
    training_set = open_dataset(options.training_set_kwargs)
    log(f"Dataset: {training_set.name}, {len(training_set)} images of {training_set.image_shape} (CxHxW), "
        f"labels {training_set.label_shape}")
    nets = build_networks(options, training_set, device)

    # Resume: weights always (each network from the best source in the file), the full state when it has it.
    progress = None
    if options.resume_pkl is not None:
        progress = resume.load_weights(options.resume_pkl, nets, exact_allowed=options.resume_progress, log=log)
    loss = dnnlib.util.construct_class_by_name(device=device, G=nets["G"], D=nets["D"],
                                               augment_pipe=nets["augment_pipe"], **options.loss_kwargs)
    phases = build_phases(options, nets["G"], nets["D"])
    ada = build_ada(options, nets["augment_pipe"], loss)
    run = Run(options=options, rank=rank, device=device, training_set=training_set, loss=loss, phases=phases, ada=ada,
              state=dnnlib.EasyDict(cur_nimg=0, cur_tick=0, batch_idx=0, tick_start_nimg=0), **nets)

    # Per-rank seeds for whatever is not seeded per chunk (a resume below restores the saved states instead).
    np.random.seed((options.random_seed * options.num_gpus + rank) % 2 ** 32)
    if progress is not None:
        training_state.restore(progress, state=run.state, opts=run.optimizers, loss=loss, ada=ada,
                               num_gpus=options.num_gpus, batch_size=options.batch_size, log=log)
    del progress
    if options.num_gpus > 1:  # Built from the same seed, but broadcast from rank 0 to be sure.
        for module in run.networks().values():
            for tensor in misc.params_and_buffers(module) if module is not None else []:
                torch.distributed.broadcast(tensor, src=0)
    run.data = make_data_stream(options, training_set, rank, device, skip=run.state.cur_nimg // options.num_gpus)
    return run


def print_summaries(run):
    """The layer tables of G and D (rank 0), from a forward pass in eval mode so that G's w_avg stays put."""
    z = torch.zeros([run.options.batch_gpu, run.G.z_dim], device=run.device)
    c = torch.zeros([run.options.batch_gpu, run.G.c_dim], device=run.device)
    img = misc.print_module_summary(run.G.eval(), [z, c])
    misc.print_module_summary(run.D, [img, c])
    run.G.train()


# ----------------------------------------------------------------------------
# One training step.


def all_reduce_mean(value, num_gpus):
    if num_gpus > 1:
        torch.distributed.all_reduce(value)
        value = value / num_gpus
    return value


def fetch_reals(run):
    """This step's reals as `rounds` chunks; chunk k of this rank holds every rounds-th image (module docstring)."""
    with torch.autograd.profiler.record_function("data_fetch"):
        phase_real_img, phase_real_c = next(run.data)
        phase_real_img = phase_real_img.to(run.device).to(torch.float32) / 127.5 - 1
        phase_real_c = phase_real_c.to(run.device)
        return [(phase_real_img[k::run.rounds], phase_real_c[k::run.rounds]) for k in range(run.rounds)]


def generator_inputs(run, phase_idx, chunk):
    """Latents and labels of one chunk, seeded from (seed, step, phase, global chunk)."""
    options, training_set = run.options, run.training_set
    chunk_rnd = seed_chunk(options.random_seed, run.state.batch_idx, phase_idx, run.rank + options.num_gpus * chunk)
    gen_z = torch.randn([options.batch_gpu, run.G.z_dim], device=run.device)
    gen_c = training_set.get_label(0)[np.newaxis].repeat(options.batch_gpu, axis=0)
    if training_set.has_labels:
        gen_c = np.stack([training_set.get_label(i)
                          for i in chunk_rnd.randint(len(training_set), size=options.batch_gpu)])
    return gen_z, torch.from_numpy(gen_c).to(run.device)


def average_gradients_and_step(phase, num_gpus):
    """Average the gradients over processes (one flat all-reduce), clean NaN/Inf out of them, then step."""
    params = [p for p in phase.module.parameters() if p.numel() > 0 and p.grad is not None]
    if not params:
        return
    flat = torch.cat([p.grad.flatten() for p in params])
    if num_gpus > 1:
        torch.distributed.all_reduce(flat)
        flat /= num_gpus
    torch.nan_to_num(flat, nan=0, posinf=1e5, neginf=-1e5, out=flat)
    for p, grad in zip(params, flat.split([p.numel() for p in params])):
        p.grad = grad.reshape(p.shape)
    phase.opt.step()


def run_phase(run, phase_idx, phase, real_chunks):
    """Accumulate one phase's gradients over all chunks, then step; returns 1 if a loss term was NaN/Inf, else 0."""
    nonfinite = torch.zeros([], device=run.device)
    phase.opt.zero_grad(set_to_none=True)
    phase.module.requires_grad_(True)
    for k, (real_img, real_c) in enumerate(real_chunks):
        gen_z, gen_c = generator_inputs(run, phase_idx, k)
        terms = run.loss.accumulate_gradients(phase=phase.name, real_img=real_img, real_c=real_c, gen_z=gen_z,
                                              gen_c=gen_c, gain=phase.interval / run.rounds)
        for value in terms.values():
            nonfinite = torch.maximum(nonfinite, (~torch.isfinite(value)).to(nonfinite.dtype))
    phase.module.requires_grad_(False)
    if phase.name in ("Greg", "Gboth"):
        num_gpus = run.options.num_gpus
        run.loss.update_pl_mean((lambda value: all_reduce_mean(value, num_gpus)) if num_gpus > 1 else None)
    with torch.autograd.profiler.record_function(phase.name + "_opt"):
        average_gradients_and_step(phase, run.options.num_gpus)
    return nonfinite


def update_ema(run):
    """G_ema: exponential moving average of G with a ramp-up of the half-life."""
    options = run.options
    with torch.autograd.profiler.record_function("Gema"):
        ema_nimg = options.ema_kimg * 1000
        if options.ema_rampup is not None:
            ema_nimg = min(ema_nimg, run.state.cur_nimg * options.ema_rampup)
        ema_beta = 0.5 ** (options.batch_size / max(ema_nimg, 1e-8))
        for p_ema, p in zip(run.G_ema.parameters(), run.G.parameters()):
            p_ema.copy_(p.lerp(p_ema, ema_beta))
        for b_ema, b in zip(run.G_ema.buffers(), run.G.buffers()):
            b_ema.copy_(b)


def training_step(run, stop):
    """One step of the whole batch; returns (a loss was NaN/Inf, stop signal) as all processes agree on them."""
    real_chunks = fetch_reals(run)
    nonfinite = torch.zeros([], device=run.device)
    for phase_idx, phase in enumerate(run.phases):
        if run.state.batch_idx % phase.interval == 0:
            nonfinite = torch.maximum(nonfinite, run_phase(run, phase_idx, phase, real_chunks))
    update_ema(run)
    run.state.cur_nimg += run.options.batch_size
    run.state.batch_idx += 1
    if run.ada is not None:
        rt = run.ada.step()
        if rt is not None:
            training_stats.report("Progress/ada_rt", rt)

    # One small all-reduce per step: did any rank see a bad loss or a stop signal?
    flags = torch.stack([nonfinite, torch.tensor(float(stop.signum), device=run.device)])
    if run.options.num_gpus > 1:
        torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
    nonfinite_any, signum = (int(v) for v in flags.tolist())
    return bool(nonfinite_any), signum


def divergence_error(state, snapshot_pkl):
    last = f"the last good snapshot is {snapshot_pkl}" if snapshot_pkl else "no snapshot was written"
    return NonFiniteLossError(
        f"training diverged: a loss became NaN or Inf in the step ending at kimg {state.cur_nimg / 1000:.3f} "
        f"(tick {state.cur_tick}); {last}. Lower --glr/--dlr or raise --gamma, then --resume from a good snapshot")


# ----------------------------------------------------------------------------
# The end of a tick.


@dataclasses.dataclass
class Clock:
    """Wall-clock times of the run and of the current tick."""
    start_time: float
    tick_start_time: float = 0.0
    maintenance_time: float = 0.0


def progress_line(run, clock, tick_end_time, collector):
    """Report the tick's progress values (training_stats) and return them as the one-line summary."""
    state, device = run.state, run.device
    tick_sec = tick_end_time - clock.tick_start_time
    sec_per_kimg = tick_sec / max(state.cur_nimg - state.tick_start_nimg, 1) * 1e3
    gpumem = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    augment_value = float(run.augment_pipe.p.cpu()) if run.augment_pipe is not None else 0
    report0 = training_stats.report0
    fields = [
        f"tick {report0('Progress/tick', state.cur_tick):<5d}",
        f"kimg {report0('Progress/kimg', state.cur_nimg / 1e3):<8.1f}",
        f"time {dnnlib.util.format_time(report0('Timing/total_sec', tick_end_time - clock.start_time)):<12s}",
        f"sec/tick {report0('Timing/sec_per_tick', tick_sec):<7.1f}",
        f"sec/kimg {report0('Timing/sec_per_kimg', sec_per_kimg):<7.2f}",
        f"maintenance {report0('Timing/maintenance_sec', clock.maintenance_time):<6.1f}",
        f"cpumem {report0('Resources/cpu_mem_gb', _memory_gb()):<6.2f}",
        f"gpumem {report0('Resources/peak_gpu_mem_gb', gpumem):<6.2f}",
        f"augment {report0('Progress/augment', augment_value):.3f}",
    ]
    collector.update()
    for label, name in [("G", "Loss/G/loss"), ("D", "Loss/D/loss"), ("Gpl", "Loss/G/reg"), ("Dr1", "Loss/D/reg")]:
        if collector.num(name):
            fields += [f"{label} {collector.mean(name):.3f}"]
    return " ".join(fields)


def stop_reason(run, clock, tick_end_time, abort_fn, log):
    """'abort' or 'time limit' when the run must stop at this tick for either, else None."""
    if abort_fn is not None and abort_fn():
        log("Aborting...")
        return "abort"
    max_minutes = run.options.max_minutes
    if max_minutes is not None and tick_end_time - clock.start_time >= max_minutes * 60:
        log(f"Time limit of {max_minutes:g} minutes reached; stopping.")
        return "time limit"
    return None


def write_tick_outputs(run, outputs, done, stopped_by):
    """Grid and snapshot (with metrics) when due, and always a snapshot when stopping early or finishing."""
    options, state = run.options, run.state
    if options.image_snapshot_ticks is not None and (done or state.cur_tick % options.image_snapshot_ticks == 0):
        outputs.write_fakes(run.G_ema, f"fakes{state.cur_nimg // 1000:06d}.png")
    if options.network_snapshot_ticks is not None and (done or state.cur_tick % options.network_snapshot_ticks == 0):
        outputs.write_snapshot(run, with_metrics=stopped_by is None)
    elif stopped_by is not None or (done and outputs.last_snapshot_nimg != state.cur_nimg):
        outputs.write_snapshot(run, with_metrics=False)


def end_of_tick(run, outputs, clock, collector, done, stopped_by, abort_fn=None, progress_fn=None, log=print):
    """Progress line, stop conditions, grids, snapshots, statistics; returns (done, stopped_by)."""
    tick_end_time = time.time()
    log(progress_line(run, clock, tick_end_time, collector), flush=True)
    if not done:
        stopped_by = stop_reason(run, clock, tick_end_time, abort_fn, log)
        done = stopped_by is not None
    write_tick_outputs(run, outputs, done, stopped_by)
    timestamp = time.time()
    outputs.write_stats(collector.as_dict(), timestamp, run.state.cur_nimg, walltime=timestamp - clock.start_time)
    if progress_fn is not None:
        progress_fn(run.state.cur_nimg // 1000, run.options.total_kimg)
    run.state.cur_tick += 1
    run.state.tick_start_nimg = run.state.cur_nimg
    clock.tick_start_time = time.time()
    clock.maintenance_time = clock.tick_start_time - tick_end_time
    return done, stopped_by


# ----------------------------------------------------------------------------
# The loop.


def configure_backends(options):
    torch.backends.cudnn.benchmark = options.cudnn_benchmark
    torch.backends.cuda.matmul.allow_tf32 = options.allow_tf32
    torch.backends.cudnn.allow_tf32 = options.allow_tf32


def train_ticks(run, outputs, clock, collector, stop, abort_fn, progress_fn, log):
    """Steps until done; returns stopped_by: None at total_kimg, else 'SIGINT'/'SIGTERM', 'abort' or 'time limit'."""
    total_nimg = run.options.total_kimg * 1000
    stopped_by = None
    while True:
        nonfinite, signum = training_step(run, stop)
        if nonfinite:
            raise divergence_error(run.state, outputs.snapshot_pkl)
        done = run.state.cur_nimg >= total_nimg
        if signum:
            stopped_by = signal.Signals(signum).name
            done = True
        tick_due = run.state.cur_nimg >= run.state.tick_start_nimg + run.options.kimg_per_tick * 1000
        if done or run.state.cur_tick == 0 or tick_due:
            done, stopped_by = end_of_tick(run, outputs, clock, collector, done, stopped_by, abort_fn, progress_fn,
                                           log)
        if done:
            return stopped_by


def training_loop(
    options: TrainingOptions,      # What to train, and how (training/options.py; a dict is read as one).
    rank           = 0,            # Rank of this process, 0 .. options.num_gpus - 1.
    device         = None,         # torch.device; None = options.device resolved for this rank.
    handle_signals = True,         # Stop cleanly on SIGINT/SIGTERM (main thread only).
    abort_fn       = None,         # Callback: returns True to stop the run (checked once per tick).
    progress_fn    = None,         # Callback: progress_fn(cur_kimg, total_kimg), once per tick.
    snapshot_metrics = None,       # What computes options.metrics (metrics.snapshot_metrics.SnapshotMetrics).
):
    """Train; returns a dict with cur_nimg, the last snapshot path and `stopped_by`.

    `stopped_by` is None when total_kimg was reached, else 'SIGINT'/'SIGTERM', 'abort' or 'time limit'.
    """
    clock = Clock(start_time=time.time())
    if isinstance(options, dict):
        options = TrainingOptions.from_dict(options)
    check_metrics_handed_in(options, snapshot_metrics)
    device = torch.device(device) if device is not None else distributed.resolve_device(options.device, rank)
    if device.type == "cpu":
        cpu_tuning.reuse_freed_memory()
    configure_backends(options)
    assert options.batch_size % (options.batch_gpu * options.num_gpus) == 0, \
        "batch_size must be a multiple of batch_gpu * num_gpus"
    log = print if rank == 0 else (lambda *args, **kwargs: None)

    run = setup_run(options, rank, device, log)
    try:
        return train_run(run, snapshot_metrics, clock, handle_signals, abort_fn, progress_fn, log)
    finally:  # every way out (an error, a signal) stops the data-loader workers, which ignore SIGTERM
        misc.close_data_loader(run.data)


def train_run(run, snapshot_metrics, clock, handle_signals, abort_fn, progress_fn, log):
    """Everything after setup: summaries, grids, the ticks, and the closing lines; returns training_loop's dict."""
    options, rank, device = run.options, run.rank, run.device
    outputs = RunOutputs(options, rank, device, snapshot_metrics)
    if rank == 0:
        print_summaries(run)
    outputs.start_grids(run)
    collector = training_stats.Collector(regex=".*")
    outputs.open_stats()
    stop = _StopSignals(handle_signals)
    outputs.stop_requested = lambda: bool(stop.signum)
    try:
        state = run.state
        if state.cur_nimg >= options.total_kimg * 1000:
            log(f"The snapshot is already at kimg {state.cur_nimg / 1000:g}, past --kimg={options.total_kimg:g}; "
                "nothing to do.")
            return dict(cur_nimg=state.cur_nimg, snapshot_pkl=options.resume_pkl, stopped_by=None)
        log(f"Training for {options.total_kimg} kimg"
            + (f", from kimg {state.cur_nimg / 1000:.1f}" if state.cur_nimg else "") + "...\n")
        clock.tick_start_time = time.time()
        clock.maintenance_time = clock.tick_start_time - clock.start_time
        if progress_fn is not None:
            progress_fn(state.cur_nimg // 1000, options.total_kimg)
        stopped_by = train_ticks(run, outputs, clock, collector, stop, abort_fn, progress_fn, log)
    finally:
        stop.restore()
        outputs.close()

    if stopped_by is not None and stopped_by.startswith("SIG"):
        log(f"Stopped by {stopped_by} at kimg {state.cur_nimg / 1000:.3f}; resume with --resume={outputs.snapshot_pkl}")
    else:
        log("\nExiting...")
    return dict(cur_nimg=state.cur_nimg, snapshot_pkl=outputs.snapshot_pkl, stopped_by=stopped_by)
