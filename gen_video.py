"""Interpolation videos: `python gen_video.py --help` (installed as sg2-gen-video).

The command lives in sg2_cli/gen_video.py; this file keeps `python gen_video.py ...` working in a checkout.
"""
from sg2_cli.gen_video import cli

if __name__ == "__main__":
    cli()
