"""Metric speed-ups keep the metric: generation overlapped with feature extraction, and --dtype=bf16 marked."""
import json
import os
import threading

import pytest
import torch

from metrics import metric_main
from metrics import metric_utils
from training import networks
from test_calc_metrics import metric_files, run_cli
from test_metrics_pipeline import DATASET_CLASS, load_fixture_generator


@pytest.fixture(scope="module")
def files(tmp_path_factory, compat_dir):
    return metric_files(tmp_path_factory.mktemp("metrics_speed"), compat_dir, 24, 8)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "cache"))


# ----------------------------------------------------------------------------
# The background producer.


def test_prefetched_keeps_order_and_stops_its_thread_when_the_caller_stops():
    made = []

    def numbers():
        for i in range(100):
            made.append(i)
            yield i

    assert list(metric_utils.prefetched(lambda: iter(range(7)))) == list(range(7))
    for i, value in enumerate(metric_utils.prefetched(numbers, max_queued=2)):
        assert value == i
        if i == 3:
            break
    assert len(made) <= 3 + 1 + 2 + 1  # what was consumed, the queue, and the item in hand
    assert not any(t.name == "prefetched" and t.is_alive() for t in threading.enumerate())


def test_prefetched_raises_the_producers_error():
    def failing():
        yield 1
        raise ValueError("producer broke")

    with pytest.raises(ValueError, match="producer broke"):
        list(metric_utils.prefetched(failing))


@pytest.mark.parametrize("max_items,batch_size,num_gpus", [(50, 16, 1), (50, 16, 3), (7, 64, 2), (64, 16, 4)])
def test_generation_schedule_matches_the_sequential_loop(max_items, batch_size, num_gpus):
    # The loop the schedule replaces: each round every rank makes its share of what is missing, at most a
    # batch, and the gathered rows are capped at max_items.
    expected, stats = [], metric_utils.FeatureStats(max_items=max_items)
    while not stats.is_full():
        batch = min(batch_size, -(-(stats.max_items - stats.num_items) // num_gpus))
        expected.append(batch)
        stats.append(torch.zeros(batch * num_gpus, 1).numpy())
    assert metric_utils.generation_schedule(max_items, batch_size, num_gpus) == expected


def test_generation_overlaps_on_gpus_only():
    assert metric_utils.generation_overlaps("cuda") and metric_utils.generation_overlaps(torch.device("cuda", 1))
    assert not metric_utils.generation_overlaps("cpu")


@pytest.mark.parametrize("overlap", [True, False], ids=["overlapped (GPU form)", "in turn (CPU form)"])
def test_pipeline_computes_the_features_of_generating_alone(files, monkeypatch, overlap):
    # Both forms of the pipeline (the generator in a background thread, or in turn with the detector) must give
    # bitwise the features of the plain loop in one thread: same latents, same random noise draws, same thread
    # count.
    monkeypatch.setattr(metric_utils, "generation_overlaps", lambda device: overlap)
    G = load_fixture_generator(os.path.dirname(files.network))
    opts = metric_utils.MetricOptions(G=G, dataset_kwargs=dict(class_name=DATASET_CLASS, path=files.data),
                                      device="cpu", detectors=dict(inception=files.detector), batch_size=8,
                                      batch_gen=4, seed=3)
    threads, original_forward = [], type(G).forward  # the pipeline runs a copy of G: patch its class

    def counting_forward(self, *args, **kwargs):
        threads.append(torch.get_num_threads())
        return original_forward(self, *args, **kwargs)

    monkeypatch.setattr(type(G), "forward", counting_forward)
    made_in = []
    monkeypatch.setattr(metric_utils, "images_to_uint8",
                        lambda img, made=metric_utils.images_to_uint8: made_in.append(threading.current_thread())
                        or made(img))
    pipeline = metric_utils.compute_feature_stats_for_generator(opts, "inception", dict(return_features=True),
                                                                max_items=12, capture_all=True).get_all()
    monkeypatch.undo()
    assert (threading.main_thread() not in made_in) == overlap
    assert threads and set(threads) == {torch.get_num_threads()}  # the caller's count, as the tools use
    detector = metric_utils.get_feature_detector(opts, "inception")
    dataset = metric_utils.label_source(opts)
    rows = []
    with metric_utils.seeded_global_rng(metric_utils.mix_seed(3, 0), opts.device), torch.no_grad():
        for start in range(0, 12, 8):
            images = []
            for first in range(start, min(start + 8, 12), 4):
                z, c = metric_utils.latents_and_labels(range(first, first + 4), G.z_dim, dataset, 3)
                images.append(metric_utils.images_to_uint8(G(z, c, truncation_psi=1, noise_mode="random")))
            rows.append(detector(torch.cat(images), return_features=True))
    assert torch.equal(torch.from_numpy(pipeline), torch.cat(rows))


def test_intra_op_threads_restores_the_setting():
    before = torch.get_num_threads()
    with metric_utils.intra_op_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


# ----------------------------------------------------------------------------
# bf16 generation is marked in the result.


class SynthesisLayerInputs:
    """Records the dtype of every activation that enters a SynthesisLayer while active (a global forward hook, so
    that it also sees the copy of G that the metric makes and runs in its own thread)."""

    def __enter__(self):
        self.dtypes = set()

        def record(module, args, _output):
            if isinstance(module, networks.SynthesisLayer):
                self.dtypes.add(args[0].dtype)
        self.handle = torch.nn.modules.module.register_module_forward_hook(record)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_bf16_runs_the_synthesis_in_bf16_is_marked_and_close_to_fp32(files):
    G = load_fixture_generator(os.path.dirname(files.network))
    opts = dict(G=G, dataset_kwargs=dict(class_name=DATASET_CLASS, path=files.data), device="cpu",
                detectors=dict(inception=files.detector), max_gen=16, batch_size=8, batch_gen=8)
    with SynthesisLayerInputs() as fp32_ran:
        fp32 = metric_main.calc_metric("fid50k_full", **opts)
    with SynthesisLayerInputs() as bf16_ran:
        bf16 = metric_main.calc_metric("fid50k_full", G_kwargs=dict(dtype=torch.bfloat16), **opts)
    assert fp32_ran.dtypes == {torch.float32} and bf16_ran.dtypes == {torch.bfloat16}  # what ran, not the options
    assert "dtype" not in fp32 and bf16.dtype == "bfloat16"
    # bf16 rounding must show in the number, and stay small: on this fixture it moves FID by 0.09% on the 2-core
    # AVX2 VM (issue 26 measured 0.16% elsewhere); 1% is 6-10x that, room for other CPUs' bf16 kernels, and far
    # below what a broken bf16 path (garbage images, FID x2 or more) would give.
    assert bf16.results.fid50k_full != fp32.results.fid50k_full
    assert bf16.results.fid50k_full == pytest.approx(fp32.results.fid50k_full, rel=0.01)


def test_cli_dtype_bf16_is_in_the_json_line(files, tmp_path):
    proc = run_cli(["--metrics=fid50k_full", f"--network={files.network}", f"--data={files.data}",
                    f"--detector={files.detector}", "--device=cpu", "--num-gen=8", "--dtype=bf16"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[0])["dtype"] == "bfloat16"
    proc = run_cli(["--metrics=ppl2_wend", f"--network={files.network}", f"--data={files.data}",
                    f"--detector={files.detector}", "--device=cpu", "--num-gen=8", "--dtype=bf16"], tmp_path)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith("Error: --dtype")
