"""Show what an augmentation pipeline does to real images: one row per image, the original first.

By default the reals are the synthetic standing figures of the CPU demo (make_demo_data.py), at
128x64; --data takes a dataset folder or zip instead. The default writes the README's picture:
  python scripts/augment_grid.py --out docs/images/augment-body.png --force
"""
import os
import sys

import click
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # Run from anywhere.
import dnnlib  # noqa: E402
from dnnlib.image_grid import save_png  # noqa: E402
from make_demo_data import draw_figure  # noqa: E402  (this script's folder is on sys.path)
from sg2_cli import outputs, runner  # noqa: E402
from sg2_cli.options import Number, shared  # noqa: E402
from training import augment  # noqa: E402


def synthetic_reals(num, height, width, seed):
    """`num` standing figures, uint8 NHWC."""
    rnd = np.random.RandomState(seed)
    return np.stack([draw_figure(rnd, height, width) for _ in range(num)])


def dataset_reals(path, num, seed):
    """`num` random images of a dataset, uint8 NHWC."""
    from training.dataset import ImageFolderDataset
    dataset = ImageFolderDataset(path)
    if dataset.num_channels not in (1, 3):
        raise dnnlib.util.UserError(f"{path}: images have {dataset.num_channels} channels; "
                                    "use RGB or grayscale images")
    indices = np.random.RandomState(seed).choice(len(dataset), size=min(num, len(dataset)), replace=False)
    return np.stack([dataset[int(i)][0].transpose(1, 2, 0) for i in indices])


def augment_grid(reals, augpipe='body', p=1.0, num_augmented=7, seed=0, gap=2):
    """Tile each real (uint8 NHWC) followed by `num_augmented` augmentations of it, `gap` gray pixels
    apart; returns uint8 HWC."""
    pipe = dnnlib.util.construct_class_by_name(**augment.augpipe_kwargs(augpipe))
    pipe.p.fill_(p)
    torch.manual_seed(seed)
    images = torch.from_numpy(reals).permute(0, 3, 1, 2).float() / 127.5 - 1
    batch, channels, height, width = images.shape
    with torch.no_grad():
        augmented = pipe(images.repeat_interleave(num_augmented, dim=0))
    augmented = augmented.reshape(batch, num_augmented, channels, height, width)
    tiles = torch.cat([images[:, None], augmented], dim=1)  # [row, column, C, H, W]
    tiles = (tiles * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    tiles = torch.nn.functional.pad(tiles, [0, gap, 0, gap], value=128)
    rows, cols = batch * (height + gap), (num_augmented + 1) * (width + gap)
    grid = tiles.permute(0, 3, 1, 4, 2).reshape(rows, cols, channels)
    return grid[:rows - gap, :cols - gap].numpy()


@click.command()
@shared('--out', default='docs/images/augment-body.png', required=False, show_default=True, detail='a PNG')
@shared('--data', note='synthetic figures')
@click.option('--augpipe', help='Pipeline name', type=click.Choice(list(augment.augpipe_specs)), default='body',
              show_default=True)
@click.option('--p', 'p', help='Augmentation probability', type=Number(0, 1), default=1.0, show_default=True)
@click.option('--rows', help='Number of real images', type=click.IntRange(1, 256), default=4, show_default=True)
@click.option('--cols', help='Augmented versions of each', type=click.IntRange(1, 256), default=7, show_default=True)
@click.option('--height', help='Synthetic image height (width is half)', type=click.IntRange(16, 1024), default=128,
              show_default=True)
@shared('--seed')
@shared('--force')
@shared('--verbose')
def main(out_path, data, augpipe, p, rows, cols, height, seed, force):
    """Write a grid of augmented real images."""
    outputs.check_new([out_path], force, '--out')
    reals = dataset_reals(data, rows, seed) if data else synthetic_reals(rows, height, height // 2, seed)
    grid = augment_grid(reals, augpipe=augpipe, p=p, num_augmented=cols, seed=seed)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    save_png(grid, out_path)  # atomically: a failed run keeps an older grid whole
    print(f'Wrote {out_path}: {rows} reals, each followed by {cols} augmentations ({augpipe}, p={p})')


if __name__ == '__main__':
    runner.run(main)
