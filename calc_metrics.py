"""Quality metrics of a network snapshot: `python calc_metrics.py --help` (installed as sg2-calc-metrics).

The command lives in sg2_cli/calc_metrics.py; this file keeps `python calc_metrics.py ...` (and torchrun ...
calc_metrics.py) working in a checkout.
"""
from sg2_cli.calc_metrics import cli

if __name__ == "__main__":
    cli()
