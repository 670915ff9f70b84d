"""Project a photo into a generator (W, W+, pivotal tuning): `python projector.py --help` (installed as
sg2-projector).

The command lives in sg2_cli/projector.py; this file keeps `python projector.py ...` working in a checkout.
"""
from sg2_cli.projector import cli

if __name__ == "__main__":
    cli()
