"""Persons onto a white background: `python bg_white.py --help` (installed as sg2-bg-white).

The command lives in sg2_cli/bg_white.py; this file keeps `python bg_white.py ...` working in a checkout.
"""
from sg2_cli.bg_white import cli

if __name__ == "__main__":
    cli()
