"""Latent editing (SeFa directions, direction files): `python edit.py --help` (installed as sg2-edit).

The command lives in sg2_cli/edit.py; this file keeps `python edit.py ...` working in a checkout.
"""
from sg2_cli.edit import cli

if __name__ == "__main__":
    cli()
