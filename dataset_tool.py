"""Build a training dataset: `python dataset_tool.py --help` (installed as sg2-dataset-tool).

The command lives in sg2_cli/dataset_tool.py; this file keeps `python dataset_tool.py ...` working in a checkout.
"""
from sg2_cli.dataset_tool import cli

if __name__ == "__main__":
    cli()
