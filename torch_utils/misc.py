"""Tensor and module utilities used across the package (names and signatures of the ecosystem)."""
import atexit
import contextlib
import multiprocessing
import re
import signal
import warnings
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from dnnlib.util import EasyDict

# ----------------------------------------------------------------------------
# Cached constant tensors: the networks ask for the same small constants on every call.

_constant_cache = dict()


def constant(value, shape: Optional[Sequence[int]] = None, dtype: Optional[torch.dtype] = None,
             device: Optional[torch.device] = None, memory_format: Optional[torch.memory_format] = None) -> torch.Tensor:
    """A cached constant tensor of `value` (broadcast to `shape`), one per value, shape, dtype and device."""
    value = np.asarray(value)
    if shape is not None:
        shape = tuple(shape)
    if dtype is None:
        dtype = torch.get_default_dtype()
    if device is None:
        device = torch.device("cpu")
    if memory_format is None:
        memory_format = torch.contiguous_format
    key = (value.shape, value.dtype, value.tobytes(), shape, dtype, device, memory_format)
    tensor = _constant_cache.get(key, None)
    if tensor is None:
        tensor = torch.as_tensor(value.copy(), dtype=dtype, device=device)
        if shape is not None:
            tensor, _ = torch.broadcast_tensors(tensor, torch.empty(shape))
        tensor = tensor.contiguous(memory_format=memory_format)
        _constant_cache[key] = tensor
    return tensor


# ----------------------------------------------------------------------------
# Data loading.

def ignore_stop_signals(_worker_id=None):
    """worker_init_fn of DataLoaders: workers ignore SIGINT and SIGTERM.

    Ctrl-C and cluster schedulers (`kill -TERM -PGID`, Slurm) signal the whole process group; the
    main process then finishes its step and writes a snapshot, and it still needs the workers'
    data until it stops them itself.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


WORKER_EXIT_SECONDS = 5  # a worker finishing its item after being asked to stop (torch's own join timeout)


def close_data_loader(iterator):
    """Stop the worker processes of a DataLoader iterator now, whatever state it is in.

    torch's own shutdown asks each worker to finish its item and exit; one still running after that is
    killed: workers ignore SIGTERM (ignore_stop_signals), so torch's terminate() would leave them, and
    whoever waits for them, running.
    """
    shutdown = getattr(iterator, "_shutdown_workers", None)  # torch's clean shutdown, as its __del__ calls it
    if shutdown is not None:
        shutdown()
    for worker in getattr(iterator, "_workers", None) or []:
        if worker.is_alive():
            worker.kill()
            worker.join(timeout=WORKER_EXIT_SECONDS)


@atexit.register
def _kill_leftover_workers():
    """At exit, kill daemon worker processes still alive (e.g. a DataLoader held by an error's traceback). Python
    would send them SIGTERM and wait for them for ever: they ignore it. Runs before multiprocessing's own exit
    handler (atexit runs handlers in reverse order, and multiprocessing registered its handler first)."""
    for process in multiprocessing.active_children():
        if process.daemon:
            process.kill()
            process.join(timeout=WORKER_EXIT_SECONDS)


# ----------------------------------------------------------------------------
# Shape checks that also work while tracing.

@contextlib.contextmanager
def suppress_tracer_warnings():
    """Silence torch.jit tracer warnings about Python values, which our shape asserts produce on purpose."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


def assert_shape(tensor: torch.Tensor, ref_shape: Sequence[Optional[int]]) -> None:
    """Check tensor.shape against ref_shape, where None matches any size."""
    if tensor.ndim != len(ref_shape):
        raise AssertionError(f"Wrong number of dimensions: got {tensor.ndim}, expected {len(ref_shape)}")
    for idx, (size, ref_size) in enumerate(zip(tensor.shape, ref_shape)):
        if ref_size is None:
            continue
        if isinstance(ref_size, torch.Tensor):
            with suppress_tracer_warnings():
                torch._assert(torch.equal(torch.as_tensor(size), ref_size), f"Wrong size for dimension {idx}")
        elif isinstance(size, torch.Tensor):
            with suppress_tracer_warnings():
                torch._assert(torch.equal(size, torch.as_tensor(ref_size)),
                              f"Wrong size for dimension {idx}: expected {ref_size}")
        elif size != ref_size:
            raise AssertionError(f"Wrong size for dimension {idx}: got {size}, expected {ref_size}")


def profiled_function(fn):
    """Decorator: the function shows up under its own name in the PyTorch profiler."""
    def decorator(*args, **kwargs):
        with torch.autograd.profiler.record_function(fn.__name__):
            return fn(*args, **kwargs)
    decorator.__name__ = fn.__name__
    decorator.__doc__ = fn.__doc__
    return decorator


# ----------------------------------------------------------------------------
# Data sampling for training: an endless, reshuffling stream over a dataset shard.

class InfiniteSampler(torch.utils.data.Sampler):
    """Yields dataset indices forever; each rank gets every num_replicas-th item of the stream.

    The order is shuffled with a sliding window so that consecutive epochs blend without a hard
    reshuffle boundary.
    """

    def __init__(self, dataset, rank=0, num_replicas=1, shuffle=True, seed=0, window_size=0.5):
        assert len(dataset) > 0 and num_replicas > 0 and 0 <= rank < num_replicas and 0 <= window_size <= 1
        super().__init__()
        self.dataset = dataset
        self.rank = rank
        self.num_replicas = num_replicas
        self.shuffle = shuffle
        self.seed = seed
        self.window_size = window_size

    def __iter__(self):
        order = np.arange(len(self.dataset))
        rnd = None
        window = 0
        if self.shuffle:
            rnd = np.random.RandomState(self.seed)
            rnd.shuffle(order)
            window = int(np.rint(order.size * self.window_size))
        idx = 0
        while True:
            i = idx % order.size
            if idx % self.num_replicas == self.rank:
                yield order[i]
            if window >= 2:
                j = (i - rnd.randint(window)) % order.size
                order[i], order[j] = order[j], order[i]
            idx += 1


# ----------------------------------------------------------------------------
# Parameters and buffers.

def params_and_buffers(module: torch.nn.Module) -> List[torch.Tensor]:
    """Every parameter and buffer of `module`, parameters first."""
    assert isinstance(module, torch.nn.Module)
    return list(module.parameters()) + list(module.buffers())


def named_params_and_buffers(module: torch.nn.Module) -> List[Tuple[str, torch.Tensor]]:
    """(name, tensor) of every parameter and buffer of `module`, parameters first."""
    assert isinstance(module, torch.nn.Module)
    return list(module.named_parameters()) + list(module.named_buffers())


@torch.no_grad()
def copy_params_and_buffers(src_module: torch.nn.Module, dst_module: torch.nn.Module, require_all: bool = False) -> None:
    """Copy tensors by name from src to dst (e.g. G -> G_ema, or a resumed checkpoint into a new network)."""
    assert isinstance(src_module, torch.nn.Module) and isinstance(dst_module, torch.nn.Module)
    src_tensors = dict(named_params_and_buffers(src_module))
    for name, tensor in named_params_and_buffers(dst_module):
        if name in src_tensors:
            tensor.copy_(src_tensors[name].detach()).requires_grad_(tensor.requires_grad)
        elif require_all:
            raise KeyError(f"{name} is missing from the source module")


@contextlib.contextmanager
def ddp_sync(module: torch.nn.Module, sync: bool):
    """Skip DDP's gradient all-reduce for this backward pass unless `sync` (gradient accumulation).

    Unused here (the training loop averages gradients itself); kept because compat/API.md lists it:
    the code that checkpoints embed may import it.
    """
    assert isinstance(module, torch.nn.Module)
    if sync or not isinstance(module, torch.nn.parallel.DistributedDataParallel):
        yield
    else:
        with module.no_sync():
            yield


def check_ddp_consistency(module: torch.nn.Module, ignore_regex: Optional[str] = None) -> None:
    """Assert every rank holds the same parameters and buffers (catches silent divergence in multi-GPU runs)."""
    assert isinstance(module, torch.nn.Module)
    for name, tensor in named_params_and_buffers(module):
        fullname = type(module).__name__ + "." + name
        if ignore_regex is not None and re.fullmatch(ignore_regex, fullname):
            continue
        tensor = tensor.detach()
        if tensor.is_floating_point():
            tensor = torch.nan_to_num(tensor)
        other = tensor.clone()
        torch.distributed.broadcast(tensor=other, src=0)
        assert (tensor == other).all(), fullname


# ----------------------------------------------------------------------------
# A printed table of a module's submodules, parameter counts and output shapes.

def print_module_summary(module: torch.nn.Module, inputs: Sequence, max_nesting: int = 3,
                         skip_redundant: bool = True):
    """Run `module` on `inputs` and print a table of its submodules: parameters, buffers, output shapes.
    Returns the module's outputs."""
    assert isinstance(module, torch.nn.Module)
    assert not isinstance(module, torch.jit.ScriptModule)
    assert isinstance(inputs, (tuple, list))

    entries = []
    nesting = [0]

    def pre_hook(_mod, _inputs):
        nesting[0] += 1

    def post_hook(mod, _inputs, outputs):
        nesting[0] -= 1
        if nesting[0] <= max_nesting:
            outputs = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
            outputs = [t for t in outputs if isinstance(t, torch.Tensor)]
            entries.append(EasyDict(mod=mod, outputs=outputs))

    hooks = [mod.register_forward_pre_hook(pre_hook) for mod in module.modules()]
    hooks += [mod.register_forward_hook(post_hook) for mod in module.modules()]
    outputs = module(*inputs)
    for hook in hooks:
        hook.remove()

    # Each tensor is counted once, at the first (innermost) module that owns it.
    tensors_seen = set()
    for e in entries:
        e.unique_params = [t for t in e.mod.parameters() if id(t) not in tensors_seen]
        e.unique_buffers = [t for t in e.mod.buffers() if id(t) not in tensors_seen]
        e.unique_outputs = [t for t in e.outputs if id(t) not in tensors_seen]
        tensors_seen |= {id(t) for t in e.unique_params + e.unique_buffers + e.unique_outputs}
    if skip_redundant:
        entries = [e for e in entries if len(e.unique_params) or len(e.unique_buffers) or len(e.unique_outputs)]

    rows = [[type(module).__name__, "Parameters", "Buffers", "Output shape", "Datatype"]]
    rows += [["---"] * len(rows[0])]
    param_total = buffer_total = 0
    submodule_names = {mod: name for name, mod in module.named_modules()}
    for e in entries:
        name = "<top-level>" if e.mod is module else submodule_names[e.mod]
        param_size = sum(t.numel() for t in e.unique_params)
        buffer_size = sum(t.numel() for t in e.unique_buffers)
        output_shapes = [str(list(t.shape)) for t in e.outputs]
        output_dtypes = [str(t.dtype).split(".")[-1] for t in e.outputs]
        rows += [[name + (":0" if len(e.outputs) >= 2 else ""),
                  str(param_size) if param_size else "-",
                  str(buffer_size) if buffer_size else "-",
                  (output_shapes + ["-"])[0],
                  (output_dtypes + ["-"])[0]]]
        for idx in range(1, len(e.outputs)):
            rows += [[name + f":{idx}", "-", "-", output_shapes[idx], output_dtypes[idx]]]
        param_total += param_size
        buffer_total += buffer_size
    rows += [["---"] * len(rows[0])]
    rows += [["Total", str(param_total), str(buffer_total), "-", "-"]]

    widths = [max(len(cell) for cell in column) for column in zip(*rows)]
    print()
    for row in rows:
        print("  ".join(cell + " " * (width - len(cell)) for cell, width in zip(row, widths)))
    print()
    return outputs
