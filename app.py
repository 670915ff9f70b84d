"""A web app for exploring a checkpoint: `python app.py --help` (installed as sg2-app).

The command lives in sg2_cli/app.py; this file keeps `python app.py ...` working in a checkout.
"""
from sg2_cli.app import cli

if __name__ == "__main__":
    cli()
