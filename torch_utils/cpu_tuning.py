"""Running the networks well on a CPU: what it offers for bfloat16, and an allocator setting for large tensors.

On CPUs without AVX512_BF16 or AMX (e.g. AVX2-only ones), PyTorch runs bfloat16 convolutions and matrix
products on slow generic code, many times slower than float32; the tools warn about that.
"""
import ctypes
import functools
import os
import platform
import sys

import torch

BF16_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512_bw", "avx512_f", "avx2")


def _capabilities():
    get = getattr(torch.cpu, "get_capabilities", None)  # torch >= 2.6
    try:
        return dict(get()) if get is not None else {}
    except RuntimeError:
        return {}


def usable_cores():
    """The CPU cores this process may run on (its affinity where the OS tells, else all)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def cpu_name():
    name = _capabilities().get("cpu_name")
    if not name:
        try:
            with open("/proc/cpuinfo") as f:
                name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
        except OSError:
            name = None
    return name or platform.processor() or platform.machine()


def bf16_flags():
    """The bfloat16-related instruction set extensions this CPU has, strongest first."""
    caps = _capabilities()
    return [flag for flag in BF16_FLAGS if caps.get(flag)]


# The vector instruction sets that decide how fast the networks run, as /proc/cpuinfo names them, oldest first.
VECTOR_FLAGS = ("sse4_2", "avx", "fma", "avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                "amx_tile", "amx_bf16", "amx_int8")


def instruction_sets(cpuinfo="/proc/cpuinfo"):
    """The VECTOR_FLAGS this CPU lists in /proc/cpuinfo, in that order; None where the file cannot be read."""
    try:
        with open(cpuinfo) as f:
            line = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return None
    flags = set(line.partition(":")[2].split())
    return [flag for flag in VECTOR_FLAGS if flag in flags]


def bf16_is_fast():
    """True when PyTorch's oneDNN kernels run bfloat16 in hardware on this CPU."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else bool({"amx_bf16", "avx512_bf16"} & set(bf16_flags()))
    except RuntimeError:
        return False


def bf16_warning(device):
    """A one-line warning when bfloat16 would run emulated (slower than float32) on this CPU, else None."""
    if torch.device(device).type != "cpu" or bf16_is_fast():
        return None
    return (f"warning: this CPU ({cpu_name()}) has no bfloat16 instructions PyTorch uses (AMX, AVX512_BF16); "
            "bf16 runs emulated and much slower than fp32 here")


# glibc mallopt() parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
ENV_MALLOC = "SG2_CPU_MALLOC"  # SG2_CPU_MALLOC=0 leaves glibc's allocator settings alone


def reuse_freed_memory():
    """Make glibc keep freed memory for reuse instead of handing it back to the kernel; True if applied.

    By default every allocation above 32 MB (a feature map of a batch of large images) gets fresh pages
    from the kernel and pays a page fault per 4 KB on first touch. On the VMs measured here that cost
    25-40% of the generator's time at batch 4 (benchmarks/RESULTS.md). Afterwards the process keeps its
    peak memory until it exits. Linux with glibc only; elsewhere, or with SG2_CPU_MALLOC=0, nothing changes.
    """
    if not sys.platform.startswith("linux") or os.environ.get(ENV_MALLOC, "1").strip() in ("0", "false", "no"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30))
    except (OSError, AttributeError):  # not glibc
        return False


@functools.lru_cache(maxsize=None)
def reuse_freed_memory_once():
    """reuse_freed_memory() on the first call in this process, its result afterwards. The generator's first
    inference pass on the CPU calls it, so a plain G(z, c) from Python runs as fast as the tools."""
    return reuse_freed_memory()
