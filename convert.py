"""Export a checkpoint as safetensors: `python convert.py --help` (installed as sg2-convert).

The command lives in sg2_cli/convert.py; this file keeps `python convert.py ...` working in a checkout.
"""
from sg2_cli.convert import cli

if __name__ == "__main__":
    cli()
