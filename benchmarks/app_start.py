"""Times the web app (app.py) as a user meets it: the server start, the first image in a real browser, and
a new image after each seed change. Needs gradio, selenium, chromium and chromedriver (see .ci/run).

    python3 benchmarks/app_start.py                          # a tiny 32x16 network made here, on the CPU
    python3 benchmarks/app_start.py --network=SHHQ-1.0_sg2_512.pkl --changes=10

start: `python app.py` launched until its page answers over HTTP (imports, network loading, gradio setup);
first image: the browser opens the page until the Sample tab's image is there (the page's own load time
included, not the browser's start); seed change: a new seed typed until its image is shown (median).
"""
import os
import statistics
import sys
import tempfile
import time

import click

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]
import helpers_browser as browser  # noqa: E402
from helpers_latent import save_generator, tiny_generator  # noqa: E402
from sg2_cli.options import network  # noqa: E402


def measure(network, changes):
    """dict of seconds: start, browser (its own start, for reference), first_image, seed_change (median)."""
    with tempfile.TemporaryDirectory() as tmp:
        if network is None:
            network = save_generator(tiny_generator(res=32), os.path.join(tmp, "G.pkl"))
        server = browser.AppServer(network, os.path.join(tmp, "app.log"))
        driver = None
        try:
            start = time.perf_counter()
            driver = browser.open_browser()
            opened = time.perf_counter()
            driver.get(server.url)
            src = browser.wait_for_new_image(driver, "sample-image", timeout=300)
            first = time.perf_counter()
            times = []
            for seed in range(1, changes + 1):
                begin = time.perf_counter()
                browser.set_number(driver, "seed", seed)
                src = browser.wait_for_new_image(driver, "sample-image", src, timeout=300)
                times.append(time.perf_counter() - begin)
        finally:
            if driver is not None:
                driver.quit()
            server.stop()
        return dict(start=server.seconds, browser=opened - start, first_image=first - opened,
                    seed_change=statistics.median(times) if times else float("nan"))


@click.command()
@network(required=False)
@click.option("--changes", type=click.IntRange(min=0), default=5, show_default=True, help="Seed changes to time")
def main(network_pkl, sha256, changes):
    """Print the app's start time and the time until its first image appears in headless Chromium."""
    reason = browser.missing_browser()
    if reason:
        sys.exit(f"cannot run: {reason}")
    network = network_pkl if sha256 is None or network_pkl is None else f"{network_pkl}#sha256={sha256}"
    result = measure(network, changes)
    print(f"network:                          {network_pkl or 'tiny 32x16 (made here)'}")
    print(f"app start (until HTTP answers):   {result['start']:.1f} s")
    print(f"browser start (for reference):    {result['browser']:.1f} s")
    print(f"page load until the first image:  {result['first_image']:.1f} s")
    print(f"seed change until its image:      {result['seed_change'] * 1000:.0f} ms (median of {changes})")


if __name__ == "__main__":
    main()
