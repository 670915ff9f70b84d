"""The `progress` entry of a training snapshot: what an exact resume needs beyond the networks.

Snapshots are read back by `legacy.load_network_pkl`, whose unpickler admits only tensors, plain
containers and numbers, so everything here is stored as tensors, dicts, lists, ints, floats and
strings (no numpy arrays, no custom classes).
"""
import random

import numpy as np
import torch

PROGRESS_VERSION = 1


def _to_cpu(obj):
    """A copy of nested dicts/lists/tuples with every tensor moved to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {key: _to_cpu(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(value) for value in obj)
    return obj


def capture_rng_states() -> dict:
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    return dict(
        torch=torch.get_rng_state(),
        cuda=list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
        numpy=[str(numpy_state[0]), [int(v) for v in numpy_state[1]], int(numpy_state[2]), int(numpy_state[3]),
               float(numpy_state[4])],
        python=[int(python_state[0]), [int(v) for v in python_state[1]], python_state[2]],
    )


def restore_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if states.get("cuda") and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))


def capture(state, opts, loss, ada, num_gpus, batch_size, random_seed, fine_tune=False) -> dict:
    """The progress dict of rank 0: counters, optimizer states, pl_mean, ADA state and RNG states.

    `fine_tune` records that the run started from another checkpoint's weights, so that a resume
    keeps the fine-tuning settings (training/presets.py).

    Snapshots are written at the end of a tick, so the counters are stored as the next tick
    starts: a resumed run reports and snapshots at the same ticks as an uninterrupted one.
    """
    return dict(
        version=PROGRESS_VERSION,
        cur_nimg=int(state.cur_nimg),
        cur_tick=int(state.cur_tick) + 1,
        batch_idx=int(state.batch_idx),
        tick_start_nimg=int(state.cur_nimg),
        num_gpus=int(num_gpus),
        batch_size=int(batch_size),
        random_seed=int(random_seed),
        fine_tune=bool(fine_tune),
        optimizers={name: _to_cpu(opt.state_dict()) for name, opt in opts.items()},
        pl_mean=loss.pl_mean.detach().cpu().clone(),
        ada=_to_cpu(ada.state_dict()) if ada is not None else None,  # Position in its interval, partial sums.
        rng=capture_rng_states(),
    )


def load_optimizer_state(opt, saved: dict) -> None:
    """Per-parameter state (Adam moments, step) from `saved`; lr and betas stay as this run configured them."""
    hyper = [{key: value for key, value in group.items() if key != "params"} for group in opt.param_groups]
    opt.load_state_dict(saved)
    for group, values in zip(opt.param_groups, hyper):
        group.update(values)


def restore(progress, state, opts, loss, ada, num_gpus, batch_size, log=print) -> None:
    """Apply a progress dict to a freshly built run (the networks are restored separately)."""
    for key in ("cur_nimg", "cur_tick", "batch_idx", "tick_start_nimg"):
        state[key] = int(progress[key])
    for name, opt in opts.items():
        load_optimizer_state(opt, progress["optimizers"][name])
    loss.pl_mean.copy_(progress["pl_mean"].to(loss.pl_mean.device))
    if ada is not None and progress.get("ada") is not None:
        ada.load_state_dict(progress["ada"])
    restore_rng_states(progress["rng"])
    if progress["num_gpus"] != num_gpus or progress["batch_size"] != batch_size:
        log(f"Note: the snapshot was trained with {progress['num_gpus']} processes and batch {progress['batch_size']}, "
            f"this run uses {num_gpus} and {batch_size}; training continues, but not bit-for-bit as before")
    log(f"Resumed at kimg {state.cur_nimg / 1000:.3f} (tick {state.cur_tick}, step {state.batch_idx})")
