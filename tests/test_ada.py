"""ADA controller: p follows the sign heuristic r_t = E[sign(D(real))] towards its target."""
import os
import tempfile

import pytest
import torch

from training.ada import AdaController, ada_step
from training.augment import AugmentPipe


def make_pipe(p):
    pipe = AugmentPipe(xflip=1)
    pipe.p.fill_(p)
    return pipe


def logits_with_positive_fraction(fraction, n=100):
    """D outputs of which `fraction` are positive: r_t = 2 * fraction - 1."""
    positives = round(fraction * n)
    return torch.cat([torch.full([positives, 1], 2.5), torch.full([n - positives, 1], -0.7)])


def run_interval(ada, logits):
    results = []
    for _ in range(ada.interval):
        ada.accumulate(logits)
        results.append(ada.step())
    return results


def test_step_size_crosses_unit_interval_in_kimg():
    assert ada_step(0.9, 0.6, batch_size=32, interval=4, kimg=500) == pytest.approx(32 * 4 / 500_000)
    assert ada_step(0.1, 0.6, batch_size=32, interval=4, kimg=500) == pytest.approx(-32 * 4 / 500_000)
    assert ada_step(0.6, 0.6, batch_size=32, interval=4, kimg=500) == 0


def test_p_rises_when_reals_look_too_real_and_falls_below_target():
    pipe = make_pipe(0.5)
    ada = AdaController(pipe, batch_size=64, target=0.6, interval=4, kimg=500)
    results = run_interval(ada, logits_with_positive_fraction(0.9))  # r_t = 0.8 > 0.6
    assert results[:3] == [None, None, None]  # only every `interval` steps
    assert results[3] == pytest.approx(0.8) and ada.rt == pytest.approx(0.8)
    assert float(pipe.p) == pytest.approx(0.5 + 64 * 4 / 500_000)
    run_interval(ada, logits_with_positive_fraction(0.7))  # r_t = 0.4 < 0.6
    run_interval(ada, logits_with_positive_fraction(0.7))
    assert float(pipe.p) == pytest.approx(0.5 - 64 * 4 / 500_000)


def test_p_goes_from_zero_to_one_in_kimg_thousand_images_and_stays_clamped():
    pipe = make_pipe(0.0)
    batch_size, interval = 1000, 4
    ada = AdaController(pipe, batch_size=batch_size, interval=interval, kimg=500)
    images = 0
    while float(pipe.p) < 1 and images < 1_000_000:
        run_interval(ada, logits_with_positive_fraction(1.0))
        images += batch_size * interval
    assert images == pytest.approx(500_000, rel=0.02)
    run_interval(ada, logits_with_positive_fraction(1.0))
    assert float(pipe.p) == 1
    for _ in range(300):
        run_interval(ada, logits_with_positive_fraction(0.0))
    assert float(pipe.p) == 0


def test_interval_without_reals_leaves_p_alone():
    pipe = make_pipe(0.3)
    ada = AdaController(pipe, batch_size=8, interval=2)
    assert [ada.step(), ada.step()] == [None, None]
    assert float(pipe.p) == pytest.approx(0.3)


def test_state_dict_resumes_mid_interval():
    pipe, twin = make_pipe(0.5), make_pipe(0.5)
    ada = AdaController(pipe, batch_size=16, interval=4)
    for _ in range(2):
        ada.accumulate(logits_with_positive_fraction(1.0))
        ada.step()
    resumed = AdaController(twin, batch_size=16, interval=4)
    resumed.load_state_dict(ada.state_dict())
    # The whole interval reads r_t = 0.7 (p up); its second half alone would read 0.4 (p down).
    for controller in [ada, resumed]:
        for _ in range(2):
            controller.accumulate(logits_with_positive_fraction(0.7))
            controller.step()
    assert resumed.rt == pytest.approx(0.7) and ada.rt == pytest.approx(0.7)
    assert float(twin.p) == float(pipe.p) == pytest.approx(0.5 + 16 * 4 / 500_000)


def _distributed_worker(rank, tmp, fractions):
    torch.distributed.init_process_group('gloo', init_method=f'file://{tmp}/init', rank=rank, world_size=2)
    try:
        pipe = make_pipe(0.5)
        ada = AdaController(pipe, batch_size=2 * 100, interval=1, kimg=1)
        ada.accumulate(logits_with_positive_fraction(fractions[rank]))
        rt = ada.step()
        torch.save((rt, float(pipe.p)), os.path.join(tmp, f'rank{rank}.pt'))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_ranks_share_one_rt_under_torch_distributed():
    # Rank 0 alone would lower p (r_t = 0.4), rank 1 alone would raise it (r_t = 1.0); together r_t = 0.7.
    with tempfile.TemporaryDirectory() as tmp:
        torch.multiprocessing.spawn(_distributed_worker, args=(tmp, [0.7, 1.0]), nprocs=2)
        results = [torch.load(os.path.join(tmp, f'rank{rank}.pt')) for rank in range(2)]
    for rt, p in results:
        assert rt == pytest.approx(0.7)
        assert p == pytest.approx(0.5 + 200 / 1000)
