"""The `progress` entry of a training snapshot: what an exact resume needs beyond the networks.

Snapshots are read back by training/checkpoint/, whose unpickler admits only tensors, plain
containers and numbers, so everything here is stored as tensors, dicts, lists, ints, floats and
strings (no numpy arrays, no custom classes).
"""
import math
import numbers
import random

import numpy as np
import torch

import dnnlib

PROGRESS_VERSION = 1
MAX_COUNT = 2 ** 53  # Counters (images, ticks, steps) beyond this are not from a real run.


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


# ----------------------------------------------------------------------------
# Checking a progress entry read from a file, before any of it is used.

def _is_int(value, low, high):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and low <= value <= high


def _is_int_list(value, length, low, high):
    return isinstance(value, (list, tuple)) and len(value) == length and all(_is_int(v, low, high) for v in value)


def _rng_problem(rng):
    """What is wrong with the saved RNG states, or None."""
    if not isinstance(rng, dict):
        return "rng is not a dict"
    torch_state = rng.get("torch")
    if not (isinstance(torch_state, torch.Tensor) and torch_state.dtype == torch.uint8 and torch_state.ndim == 1):
        return "rng.torch is not a byte tensor"
    if not (isinstance(rng.get("cuda", []), list) and all(isinstance(t, torch.Tensor) for t in rng.get("cuda", []))):
        return "rng.cuda is not a list of tensors"
    numpy_state = rng.get("numpy")
    if not (isinstance(numpy_state, (list, tuple)) and len(numpy_state) == 5 and numpy_state[0] == "MT19937" and
            _is_int_list(numpy_state[1], 624, 0, 2 ** 32 - 1) and _is_int(numpy_state[2], 0, 624) and
            _is_int(numpy_state[3], 0, 1) and isinstance(numpy_state[4], float)):
        return "rng.numpy is not a numpy MT19937 state"
    python_state = rng.get("python")
    if not (isinstance(python_state, (list, tuple)) and len(python_state) == 3 and _is_int(python_state[0], 0, 99) and
            _is_int_list(python_state[1], 625, 0, 2 ** 32 - 1) and
            (python_state[2] is None or isinstance(python_state[2], float))):
        return "rng.python is not a Python random state"
    return None


def progress_problem(progress):
    """What makes `progress` unusable for an exact resume (a one-line reason), or None when it is sound."""
    if not isinstance(progress, dict):
        return "it is not a dict"
    if progress.get("version") != PROGRESS_VERSION:
        return f"version {dnnlib.util.escape_text(repr(progress.get('version')), 20)} is not {PROGRESS_VERSION}"
    for key in ("cur_nimg", "cur_tick", "batch_idx", "tick_start_nimg"):
        if not _is_int(progress.get(key), 0, MAX_COUNT):
            return f"{key} is not an integer from 0 to 2**53"
    if progress["tick_start_nimg"] > progress["cur_nimg"]:
        return "tick_start_nimg is past cur_nimg"
    for key, high in (("num_gpus", 1 << 16), ("batch_size", 1 << 24), ("random_seed", 2 ** 63)):
        if not _is_int(progress.get(key), 1 if key != "random_seed" else 0, high):
            return f"{key} is out of range"
    optimizers = progress.get("optimizers")
    if not (isinstance(optimizers, dict) and all(isinstance(v, dict) and isinstance(v.get("state"), dict) and
                                                 isinstance(v.get("param_groups"), list) for v in optimizers.values())):
        return "optimizers is not a dict of optimizer states"
    pl_mean = progress.get("pl_mean")
    if not (isinstance(pl_mean, torch.Tensor) and pl_mean.numel() == 1 and math.isfinite(float(pl_mean))):
        return "pl_mean is not one finite number"
    if not (progress.get("ada") is None or isinstance(progress.get("ada"), dict)):
        return "ada is not a dict"
    return _rng_problem(progress.get("rng"))


def check_progress(progress, where: str) -> None:
    """UserError naming `where` unless `progress` is a sound progress entry of this package."""
    problem = progress_problem(progress)
    if problem is not None:
        raise dnnlib.util.UserError(f"{where}: the snapshot's progress entry cannot be resumed from: {problem}")


def restore(progress, state, opts, loss, ada, num_gpus, batch_size, log=print, where="--resume") -> None:
    """Apply a progress dict to a freshly built run (the networks are restored separately); checked first."""
    check_progress(progress, where)
    try:
        for name, opt in opts.items():
            load_optimizer_state(opt, progress["optimizers"][name])
        loss.pl_mean.copy_(progress["pl_mean"].to(loss.pl_mean.device))
        if ada is not None and progress.get("ada") is not None:
            ada.load_state_dict(progress["ada"])
        restore_rng_states(progress["rng"])
    except (KeyError, ValueError, TypeError, IndexError, RuntimeError) as err:
        raise dnnlib.util.UserError(f"{where}: the snapshot's progress entry does not fit this run "
                                    f"({type(err).__name__}: {dnnlib.util.escape_text(str(err), 200)})") from None
    for key in ("cur_nimg", "cur_tick", "batch_idx", "tick_start_nimg"):
        state[key] = int(progress[key])
    if progress["num_gpus"] != num_gpus or progress["batch_size"] != batch_size:
        log(f"Note: the snapshot was trained with {progress['num_gpus']} processes and batch {progress['batch_size']}, "
            f"this run uses {num_gpus} and {batch_size}; training continues, but not bit-for-bit as before")
    log(f"Resumed at kimg {state.cur_nimg / 1000:.3f} (tick {state.cur_tick}, step {state.batch_idx})")
