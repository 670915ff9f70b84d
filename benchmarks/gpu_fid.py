"""Wall time of fid50k_full for a 512x256 SHHQ-config generator, with a stand-in detector of Inception's cost.

    python benchmarks/gpu_fid.py --time-limit=240          # on a GPU machine; --device=cpu works too

No real detector or checkpoint is needed (none can be downloaded on the benchmark machines):
  - generator: the SHHQ 512x256 config (z/w 512, 8 mapping layers, channel_base 32768, channel_max 512,
    fp16 on the 4 highest resolutions, conv_clamp 256), randomly initialised, or --network=PKL;
  - detector: a random Inception-v3 (torchvision) behind the real detector's TorchScript interface, resized to
    299x299 inside like the real file (11.4 GFLOP per image); without torchvision a strided convolution stack of
    about that cost (13.5 GFLOP); the figure is printed from PyTorch's FLOP counter;
  - real data: --real synthetic 512x256 images (their statistics are cached by the metric after the first pass).
The metric runs exactly as calc_metrics.py runs it (metrics.metric_main.calc_metric). If the 50k images would
not fit in --time-limit (estimated from a calibration pass of --calibrate images), the script prints the
estimate instead of running them.
"""

import os
import sys
import tempfile
import time
import warnings

import click
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import dnnlib  # noqa: E402
from benchmarks import gpu_train  # noqa: E402
from benchmarks.generator_speed import shhq_generator  # noqa: E402
from metrics import metric_main  # noqa: E402
from sg2_cli.options import network, shared  # noqa: E402
from torch_utils import distributed  # noqa: E402


class CostlyStandInDetector(torch.nn.Module):
    """Inception-v3's interface and roughly its cost; the features mean nothing."""

    def __init__(self, num_features=2048):
        super().__init__()
        widths = [(3, 32, 2), (32, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 1), (512, 512, 1)]
        layers = []
        for c_in, c_out, stride in widths:
            layers += [torch.nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), torch.nn.ReLU()]
        layers += [torch.nn.Conv2d(512, num_features, 1, stride=2), torch.nn.ReLU()]
        self.body = torch.nn.Sequential(*layers)

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = img.to(torch.float32) / 127.5 - 1
        x = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        features = self.body(x).mean(dim=[2, 3])
        if return_features:
            return features
        return torch.softmax(features, dim=1)


def save_detector(path):
    try:  # Inception-v3's own shapes (benchmarks/fid_speed.py), where torchvision is installed
        from benchmarks.fid_speed import InceptionShaped
        detector = InceptionShaped().eval()
    except ImportError:
        torch.manual_seed(0)
        detector = CostlyStandInDetector().eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        detector(torch.zeros(1, 3, 512, 256, dtype=torch.uint8), return_features=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch calls TorchScript deprecated; the real files use it
        torch.jit.save(torch.jit.script(detector), path)
    return counter.get_total_flops()


def timed_fid(G, dataset_kwargs, detector, device, max_gen=None):
    start = time.time()
    result = metric_main.calc_metric("fid50k_full", G=G, dataset_kwargs=dataset_kwargs, device=device,
                                     detectors=dict(inception=detector), max_gen=max_gen)
    return time.time() - start, result


@click.command()
@network(required=False)
@shared("--device", param="device")
@click.option("--resolution", type=int, default=512, show_default=True, help="Height of the random SHHQ-config G")
@click.option("--real", type=click.IntRange(min=16), default=500, show_default=True, help="Synthetic real images")
@click.option("--calibrate", type=click.IntRange(min=8), default=2000, show_default=True,
              help="Generated images of the calibration pass")
@click.option("--time-limit", type=float, default=300, show_default=True,
              help="Seconds the whole fid50k_full may take; otherwise only the estimate is printed")
def main(network_pkl, sha256, device, resolution, real, calibrate, time_limit):
    """Time fid50k_full of a 512x256 SHHQ-config network with a detector of Inception's cost."""
    start = time.time()
    device = distributed.resolve_device(device)
    if network_pkl:
        import legacy
        G = legacy.load_network(network_pkl, sha256=sha256)
    else:
        G = shhq_generator(resolution)
    with tempfile.TemporaryDirectory() as workdir:
        os.environ["DNNLIB_CACHE_DIR"] = os.path.join(workdir, "cache")  # a fresh real-statistics cache
        detector = os.path.join(workdir, "detector.pt")
        flops = save_detector(detector)
        data = gpu_train.write_dataset(os.path.join(workdir, "real"), G.img_resolution, real)
        dataset_kwargs = dnnlib.EasyDict(class_name="training.dataset.ImageFolderDataset", path=data,
                                         resolution=G.img_resolution, use_labels=False)
        print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
              f"stand-in detector {flops / 1e9:.1f} GFLOP/img, {real} real images", flush=True)
        first, _ = timed_fid(G, dataset_kwargs, detector, device, max_gen=calibrate)
        second, _ = timed_fid(G, dataset_kwargs, detector, device, max_gen=calibrate)  # real statistics cached
        rate = calibrate / second
        estimate = 50000 / rate
        print(f"calibration: {calibrate} generated images in {second:.1f} s ({rate:.0f} img/s); the first pass, "
              f"with the {real} real images, took {first:.1f} s", flush=True)
        left = time_limit - (time.time() - start)
        if estimate > left:
            print(f"fid50k_full: estimated {estimate:.0f} s for the 50k generated images (real statistics cached); "
                  f"not run, {left:.0f} s of --time-limit left")
            return
        total, result = timed_fid(G, dataset_kwargs, detector, device)
        print(f"fid50k_full: {total:.1f} s wall time (real statistics cached), estimate was {estimate:.0f} s; "
              f"result {result.results.fid50k_full:.3f} (meaningless: random networks and detector)")


if __name__ == "__main__":
    main()
