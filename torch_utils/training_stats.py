"""Statistics reported from anywhere in the code (losses, timings) and gathered across ranks.

`report(name, value)` adds values to running sums that every `Collector` can read;
`Collector.update()` turns the sums since its last update into mean/std/num, all-reduced over
processes when torch.distributed is initialised, so rank 0 logs the statistics of the whole run.
"""
import re
from typing import Sequence, Union

import numpy as np
import torch

import dnnlib

_num_moments = 3              # count, sum, sum of squares
_reduce_dtype = torch.float32  # what values are summed in before the cross-rank reduction
_counter_dtype = torch.float64  # accumulated counters keep precision over long runs
_rank = 0
_sync_device = None           # device for the all-reduce: the GPU for NCCL, None (CPU) for gloo
_sync_called = False
_counters = dict()            # name -> device -> tensor of moments since last collection
_cumulative = dict()          # name -> moments summed over every collection so far


def init_multiprocessing(rank, sync_device):
    """Tell the module this process's rank and where cross-rank reductions run (None = no reduction)."""
    global _rank, _sync_device
    assert not _sync_called
    _rank = rank
    _sync_device = sync_device


def report(name: str, value: Union[float, torch.Tensor, Sequence[float]]):
    """Record one scalar or a tensor of values under `name`; returns `value` unchanged."""
    if name not in _counters:
        _counters[name] = dict()
    elems = torch.as_tensor(value)
    if elems.numel() == 0:
        return value
    elems = elems.detach().flatten().to(_reduce_dtype)
    moments = torch.stack([torch.ones_like(elems).sum(), elems.sum(), elems.square().sum()])
    assert moments.ndim == 1 and moments.shape[0] == _num_moments
    moments = moments.to(_counter_dtype)
    device = moments.device
    if device not in _counters[name]:
        _counters[name][device] = torch.zeros_like(moments)
    _counters[name][device].add_(moments)
    return value


def report0(name: str, value: Union[float, torch.Tensor, Sequence[float]]):
    """Like report(), but only rank 0's value counts (for values every rank computes identically)."""
    report(name, value if _rank == 0 else [])
    return value


class Collector:
    """Reads the running statistics whose names match `regex`; `update()` starts a new interval."""

    def __init__(self, regex=".*", keep_previous=True):
        self._regex = re.compile(regex)
        self._keep_previous = keep_previous
        self._cumulative = dict()
        self._moments = dict()
        self.update()
        self._moments.clear()

    def names(self):
        return [name for name in _counters if self._regex.fullmatch(name)]

    def update(self):
        if not self._keep_previous:
            self._moments.clear()
        for name, cumulative in _sync(self.names()):
            if name not in self._cumulative:
                self._cumulative[name] = torch.zeros([_num_moments], dtype=_counter_dtype)
            delta = cumulative - self._cumulative[name]
            self._cumulative[name].copy_(cumulative)
            if float(delta[0]) != 0:
                self._moments[name] = delta

    def _get_delta(self, name):
        assert self._regex.fullmatch(name)
        if name not in self._moments:
            self._moments[name] = torch.zeros([_num_moments], dtype=_counter_dtype)
        return self._moments[name]

    def num(self, name):
        return int(self._get_delta(name)[0])

    def mean(self, name):
        delta = self._get_delta(name)
        if int(delta[0]) == 0:
            return float("nan")
        return float(delta[1] / delta[0])

    def std(self, name):
        delta = self._get_delta(name)
        if int(delta[0]) == 0 or not np.isfinite(float(delta[1])):
            return float("nan")
        if int(delta[0]) == 1:
            return float(0)
        mean = float(delta[1] / delta[0])
        raw_var = float(delta[2] / delta[0])
        return np.sqrt(max(raw_var - np.square(mean), 0))

    def as_dict(self):
        stats = dnnlib.EasyDict()
        for name in self.names():
            stats[name] = dnnlib.EasyDict(num=self.num(name), mean=self.mean(name), std=self.std(name))
        return stats

    def __getitem__(self, name):
        return self.mean(name)


def _sync(names):
    """Fold every device's counters into the cumulative sums, all-reduced over ranks."""
    if len(names) == 0:
        return []
    global _sync_called
    _sync_called = True

    deltas = []
    device = _sync_device if _sync_device is not None else torch.device("cpu")
    for name in names:
        delta = torch.zeros([_num_moments], dtype=_counter_dtype, device=device)
        for counter in _counters[name].values():
            delta.add_(counter.to(device))
            counter.copy_(torch.zeros_like(counter))
        deltas.append(delta)
    deltas = torch.stack(deltas)

    if _sync_device is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(deltas)

    deltas = deltas.cpu()
    for idx, name in enumerate(names):
        if name not in _cumulative:
            _cumulative[name] = torch.zeros([_num_moments], dtype=_counter_dtype)
        _cumulative[name].add_(deltas[idx])
    return [(name, _cumulative[name]) for name in names]


# The collector that training uses for its per-tick log lines.
default_collector = Collector()
