"""Train a StyleGAN2 generator: `python train.py --help` (installed as sg2-train).

The command lives in sg2_cli/train.py; this file keeps `python train.py ...` (and torchrun ... train.py)
working in a checkout.
"""
from sg2_cli.train import cli

if __name__ == "__main__":
    cli()
