"""Style mixing grids: `python style_mixing.py --help` (installed as sg2-style-mixing).

The command lives in sg2_cli/style_mixing.py; this file keeps `python style_mixing.py ...` working in a checkout.
"""
from sg2_cli.style_mixing import cli

if __name__ == "__main__":
    cli()
