"""app.py / sg2-app: a web app for exploring a checkpoint in the browser: sample, truncate, mix, edit, project.

Examples:
  python app.py --network=SHHQ-1.0_sg2_512.pkl                  # then open http://127.0.0.1:7860
  python app.py --network=run/network-snapshot-000100.pkl --device=cpu --port=8080
  make app                                                       # the CPU demo's last snapshot

It serves on this machine only (127.0.0.1) unless --host or --share says otherwise. The page is
webapp/page.py; every image comes from the library the command-line tools use (webapp/session.py over
latent.space, directions and projection): a seed gives the pixels generate.py writes for it. Needs gradio
(pip install .[app]).
"""
import ipaddress
import os

import click

import dnnlib
from dnnlib.util import UserError
from webapp import page
from webapp.session import Session
from torch_utils.distributed import resolve_device

from .options import flag, network, shared
from .runner import run


def is_loopback(host):
    """Is `host` this machine only (127.0.0.0/8, ::1, localhost)?"""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command()
@network()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to serve on; anything but loopback exposes the app to other machines")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True, help="Port to serve on")
@flag("--share", help="Also publish a temporary public gradio.live link")
@shared("--device")
@shared("--vgg16", param="vgg16_spec", detail="for the Project tab")
@shared("--verbose")
def main(network_pkl, sha256, host, port, share, device_name, vgg16_spec):
    """Serve a web app to explore a network: sample, truncate, mix, edit with directions, project photos."""
    page.check_gradio()
    device = resolve_device(device_name)
    if vgg16_spec and not dnnlib.util.is_url(vgg16_spec) and not os.path.isfile(vgg16_spec):
        raise UserError(f"--vgg16: {vgg16_spec} is not a file")
    if share or not is_loopback(host):
        where = "through a public gradio.live link" if share else f"from other machines on {host}"
        print(f"warning: the app will be reachable {where}; anyone who reaches it can run the network and "
              f"upload files", flush=True)
    print(f'Loading network from "{network_pkl}"...', flush=True)
    session = Session.open(network_pkl, device=device, sha256=sha256, vgg16_spec=vgg16_spec)
    print(f"Network: {session.describe()}")
    demo = page.build_app(session)
    demo.queue(default_concurrency_limit=1)
    try:
        demo.launch(server_name=host, server_port=port, share=share, css=page.CSS,
                    allowed_paths=[session.outdir], show_error=True)
    except OSError as err:  # gradio: the port is taken, or the host is not an address of this machine
        raise UserError(f"--host/--port: cannot serve on {host}:{port} ({str(err).split('. ')[0]}); "
                        f"choose another --port, or an address of this machine for --host") from None


def cli() -> None:
    """Entry point of `python app.py` and the sg2-app console script."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    run(main)
