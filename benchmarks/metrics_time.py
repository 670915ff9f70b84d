"""Per-image cost of the metrics' parts, and what it makes of a 50k metric; prints Markdown.

    python benchmarks/metrics_time.py --device=cpu        # CPU, the threads torch uses (2 here): a few minutes
    python benchmarks/metrics_time.py                     # on a GPU where there is one

Measured with networks of the real detectors' shapes and random weights (the real files are not needed for a
time): Inception-v3 (torchvision's layout, 299x299 input, 2048 pool features; needs torchvision, which the test
extra brings with timm), DINOv2 ViT-L/14 (metrics/dinov2.py at 224x224) and the SHHQ 512x256 generator. The
50k estimates multiply the per-image times out (50,000 generated images, 40,000 real ones read once and then
cached); they are not timings of whole runs.
"""
import os
import sys
import time

import click
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from benchmarks import timing  # noqa: E402
from benchmarks.generator_speed import shhq_generator  # noqa: E402
from metrics import dinov2  # noqa: E402
from metrics import image_resize  # noqa: E402
from sg2_cli.options import shared  # noqa: E402
from torch_utils import distributed  # noqa: E402


def per_image(fn, batch, device, repeats=3):
    """Median seconds per image of fn() on a batch, after one warm-up call (each call waits for the device)."""
    fn = timing.finished(fn, device)
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) / batch)
    return sorted(times)[len(times) // 2]


def inception_shaped(device):
    import torchvision  # an optional extra (the test extra brings it with timm); only this timing needs it
    net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
    net.fc = torch.nn.Identity()  # the 2048 pool features, as the detector file returns them
    return net.eval().requires_grad_(False).to(device)


def timings(device, batch):
    images = torch.randint(0, 256, [batch, 3, 512, 256], dtype=torch.uint8, device=device)
    G = shhq_generator(512).to(device)
    z, c = torch.randn([batch, 512], device=device), torch.zeros([batch, 0], device=device)
    inception = inception_shaped(device)
    vit = dinov2.DINOv2Detector(dinov2.VisionTransformer()).eval().requires_grad_(False).to(device)
    bilinear = torch.nn.functional.interpolate
    with torch.no_grad():
        return {
            "generator 512x256": per_image(lambda: G(z, c, noise_mode="random"), batch, device),
            "Inception-v3 (with its bilinear resize to 299x299)": per_image(
                lambda: inception(bilinear(images.float(), size=(299, 299), mode="bilinear")), batch, device),
            "DINOv2 ViT-L/14 (with the bicubic resize to 224x224)": per_image(lambda: vit(images), batch, device),
            "clean resize to 299x299 (PIL, CPU)": per_image(lambda: image_resize.clean_resize(images, (299, 299)),
                                                            batch, device),
            "clean resize to 224x224 (PIL, CPU)": per_image(lambda: image_resize.clean_resize(images, (224, 224)),
                                                            batch, device),
        }


def estimates(t):
    """Seconds of a first run (real side not yet cached) for the metrics, from the per-image times."""
    gen, real = 50000, 40000
    fid = (gen + real) * t["Inception-v3 (with its bilinear resize to 299x299)"] + gen * t["generator 512x256"]
    fd = (gen + real) * t["DINOv2 ViT-L/14 (with the bicubic resize to 224x224)"] + gen * t["generator 512x256"]
    both = fid + fd - gen * t["generator 512x256"]  # one generator pass for both
    clean = both + (gen + real) * (t["clean resize to 299x299 (PIL, CPU)"] + t["clean resize to 224x224 (PIL, CPU)"])
    return {"fid50k_full": fid, "fd_dinov2_50k_full": fd, "fid50k_full,fd_dinov2_50k_full (one call)": both,
            "the same with --resize=clean": clean}


def hours(seconds):
    return f"{seconds / 3600:.1f} h"


@click.command()
@shared("--device", param="device")
@click.option("--batch", type=click.IntRange(min=1), default=4, show_default=True)
def main(device, batch):
    device = distributed.resolve_device(device)
    t = timings(device, batch)
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"device {device}, {torch.get_num_threads()} threads, batch {batch}, torch {torch.__version__}, "
          f"load average after the run {load}\n")
    print("| part | s/img |\n|---|---|")
    for name, value in t.items():
        print(f"| {name} | {value:.4f} |")
    print("\n| metric (first run, 40k real + 50k generated) | estimate |\n|---|---|")
    for name, value in estimates(t).items():
        print(f"| {name} | {hours(value)} |")


if __name__ == "__main__":
    main()
