"""torch_utils/distributed.py: where a process stands, which device it uses, and spawned processes' exit statuses."""
import pytest
import torch

import dnnlib
from torch_utils import distributed


def test_torchrun_detection(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.torchrun_env() is None
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert distributed.torchrun_env() is None  # Both RANK and WORLD_SIZE, or it is not a launcher's process.
    monkeypatch.setenv("RANK", "3")
    assert distributed.torchrun_env() == (3, 4, 3)  # Without LOCAL_RANK: one machine, local rank = rank.
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.torchrun_env() == (3, 4, 1)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(dnnlib.util.UserError, match="RANK=4 is not below WORLD_SIZE=4"):
        distributed.torchrun_env()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(dnnlib.util.UserError, match="RANK='x'"):
        distributed.torchrun_env()


def test_device_choice_and_its_errors():
    assert distributed.resolve_device("cpu") == torch.device("cpu")
    assert distributed.resolve_device(None) == (torch.device("cuda", 0) if torch.cuda.is_available()
                                                else torch.device("cpu"))
    with pytest.raises(dnnlib.util.UserError, match="^--device: 'gpu0' is not a device; use cpu, cuda or cuda:N$"):
        distributed.resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(dnnlib.util.UserError, match="^--device: cuda:1 was asked for, but PyTorch sees no CUDA"):
            distributed.resolve_device("cuda:1")
        distributed.check_process_count(64, None)  # CPU processes: as many as asked for.
    else:
        assert distributed.resolve_device("cuda", local_rank=0) == torch.device("cuda", 0)
        with pytest.raises(dnnlib.util.UserError, match="^--device: cuda:0 names one GPU"):
            distributed.resolve_device("cuda:0", world_size=2)
        with pytest.raises(dnnlib.util.UserError, match="^--gpus: process 64 would use cuda:64"):
            distributed.resolve_device("cuda", local_rank=64)
        with pytest.raises(dnnlib.util.UserError, match="^--gpus: 64 processes"):
            distributed.check_process_count(64, "cuda")


def _worker(rank, world_size, init_method, behaviour):
    """Joins the gloo group, agrees on a sum with the other process, then does what `behaviour` says for its rank."""
    device = torch.device("cpu")
    distributed.init_process(rank, world_size, device, init_method)
    try:
        total = torch.tensor([float(rank + 1)])
        torch.distributed.all_reduce(total)
        assert float(total) == 3
    finally:
        distributed.close_process_group()
    action = behaviour[rank]
    if action == "user error":
        raise dnnlib.util.UserError("something about --option")
    return action


@pytest.mark.slow
def test_spawn_returns_rank0_status_or_the_first_failure(capfd):
    assert distributed.spawn(_worker, 2, args=({0: 143, 1: 0},), device_name="cpu") == 143
    assert distributed.spawn(_worker, 2, args=({0: 0, 1: "user error"},), device_name="cpu") == 1
    err = capfd.readouterr().err
    assert "Running 2 CPU processes (gloo)." in err
    assert "Error (process 1): something about --option" in err and "Traceback" not in err
