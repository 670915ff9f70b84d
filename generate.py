"""Generate images from a pretrained network: `python generate.py --help` (installed as sg2-generate).

The command lives in sg2_cli/generate.py; this file keeps `python generate.py ...` working in a checkout.
"""
from sg2_cli.generate import cli

if __name__ == "__main__":
    cli()
