"""FID on the CPU with the real detector's shapes (benchmarks/cpu.py runs this as a child).

    python -m benchmarks.fid_speed --images=256

The detector is Inception-v3 as torchvision builds it (random weights: the real file cannot be downloaded here)
behind the real TorchScript file's interface: uint8 NCHW images of any size, resized to 299x299 inside,
return_features=True -> [N, 2048] pool features. The generator is the `make demo` network (64x32, channel_base
1024, channel_max 64, 2 mapping layers) with random weights. For --images generated images it times, each in
the same interleaved rounds as the fp32 matmul peak:
  generator   the generator alone, as FID calls it (batches of 4, noise_mode='random'), all threads;
  detector    the detector alone on those images in batches of 64, all threads;
  pipeline    metric_utils.compute_feature_stats_for_generator, the code path of fid50k_full without the
              real-image statistics (cached after the first run): on the CPU the generator and the detector in
              turn, each with all threads;
  pipeline, overlapped (the GPU form): the same with the generator in a background thread, overlapped with
              the detector, each with all threads (issue 16's split of the cores measured 1.66x worse still).
Prints one JSON line: {"peaks", "images", "detector_flops_per_image", "generator_flops_per_image", "cases"}.
"""
import json
import os
import tempfile
import warnings

import click
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks import flops as flop_count
from benchmarks import gpu_train
from benchmarks import timing
from metrics import metric_utils
from training import networks

DETECTOR_BATCH = 64  # metric_utils.MetricOptions' batch_size: images per detector call
GENERATOR_BATCH = 4  # its batch_gen


class InceptionShaped(torch.nn.Module):
    """Inception-v3 with random weights behind the interface of the real detector file."""

    def __init__(self):
        super().__init__()
        import torchvision
        torch.manual_seed(0)
        self.net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False).eval()
        self.net.fc = torch.nn.Identity()  # pool3 features, 2048 wide

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = torch.nn.functional.interpolate(img.to(torch.float32), size=(299, 299), mode="bilinear",
                                            align_corners=False)
        features, _ = self.net._forward((x - 128) / 128)  # (features, no auxiliary logits); scriptable
        return features if return_features else torch.softmax(features, dim=1)


def save_detector(path):
    """The scripted detector at `path`; returns its FLOPs per 64x32 image (torch's FLOP counter)."""
    detector = InceptionShaped().eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        detector(torch.zeros(1, 3, 64, 32, dtype=torch.uint8), return_features=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch calls TorchScript deprecated; the real files are TorchScript
        torch.jit.save(torch.jit.script(detector), path)
    return counter.get_total_flops()


def demo_generator():
    torch.manual_seed(0)
    return networks.Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=64, img_channels=3,
                              mapping_kwargs=dict(num_layers=2), aspect_ratio=(2, 1),
                              synthesis_kwargs=dict(channel_base=1024, channel_max=64, num_fp16_res=4,
                                                    conv_clamp=256)).eval().requires_grad_(False)


def fid_cases(G, detector_path, data, images):
    """The three cases of the module docstring, each returning seconds per generated image; `data`: a folder of
    real images (only their labels are read: none)."""
    dataset_kwargs = dict(class_name="training.dataset.ImageFolderDataset", path=data, use_labels=False)
    opts = metric_utils.MetricOptions(G=G, device="cpu", detectors=dict(inception=detector_path), cache=False,
                                      dataset_kwargs=dataset_kwargs)
    detector = metric_utils.get_feature_detector(opts, "inception")
    z = torch.randn(images, G.z_dim)
    sample = torch.zeros(DETECTOR_BATCH, 3, G.img_resolution, G.img_resolution // 2, dtype=torch.uint8)

    def generate():
        with torch.no_grad():
            for start in range(0, images, GENERATOR_BATCH):
                batch = z[start:start + GENERATOR_BATCH]
                metric_utils.images_to_uint8(G(batch, torch.zeros(len(batch), 0), noise_mode="random"))

    def detect():
        with torch.no_grad():
            for start in range(0, images, DETECTOR_BATCH):
                detector(sample[:min(DETECTOR_BATCH, images - start)], return_features=True)

    def pipeline():
        metric_utils.compute_feature_stats_for_generator(opts, "inception", dict(return_features=True),
                                                         max_items=images, capture_mean_cov=True)

    def pipeline_overlapped():
        saved = metric_utils.generation_overlaps
        metric_utils.generation_overlaps = lambda device: True
        try:
            pipeline()
        finally:
            metric_utils.generation_overlaps = saved

    runs = (("generator", generate), ("detector", detect), ("pipeline", pipeline),
            ("pipeline, overlapped (the GPU form)", pipeline_overlapped))
    return {name: dict(run=lambda fn=fn: timing.seconds(fn) / images) for name, fn in runs}


@click.command()
@click.option("--images", type=click.IntRange(min=GENERATOR_BATCH), default=256, show_default=True,
              help="Generated images per timed run")
@click.option("--repeats", type=click.IntRange(min=1), default=2, show_default=True)
def main(images, repeats):
    """Seconds per image of FID's generator, detector and overlapped pipeline, with the same-run peak."""
    G = demo_generator()
    with tempfile.TemporaryDirectory() as workdir:
        detector_path = os.path.join(workdir, "inception-shaped.pt")
        detector_flops = save_detector(detector_path)
        data = gpu_train.write_dataset(os.path.join(workdir, "real"), G.img_resolution, 4)
        cases = {"peak fp32": timing.matmul_case("fp32"), **fid_cases(G, detector_path, data, images)}
        median = timing.measure(cases, repeats, budget_s=1e9)
    print(json.dumps(dict(peaks=timing.peaks_of(median, ["fp32"]), images=images,
                          detector_flops_per_image=detector_flops,
                          generator_flops_per_image=flop_count.generator_flops(G),
                          cases={name: list(v) for name, v in median.items() if not name.startswith("peak")})))


if __name__ == "__main__":
    main()
