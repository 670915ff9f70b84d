"""Driving app.py in a real browser: start the server, open headless Chromium (Debian's chromium and
chromium-driver through Selenium; nothing is downloaded), read the images the page shows.

Shared by tests/test_app_browser.py and benchmarks/app_start.py.
"""
import importlib.util
import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import PIL.Image

from helpers import ROOT
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def missing_browser():
    """Why the browser tests cannot run here, or None when they can."""
    if importlib.util.find_spec("gradio") is None:
        return "gradio is not installed (pip install .[app])"
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install .[test])"
    if not any(shutil.which(name) for name in BROWSERS):
        return "no Chromium found (apt-get install chromium chromium-driver)"
    if not shutil.which("chromedriver"):
        return "no chromedriver found (apt-get install chromium-driver)"
    return None


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AppServer:
    """python app.py in a subprocess on 127.0.0.1 and a free port; `seconds` = time until it answered HTTP."""

    def __init__(self, network, log_path, *extra_args, timeout=120):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", GRADIO_ANALYTICS_ENABLED="False")
        self.log_path = log_path
        self.log = open(log_path, "w")
        start = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "app.py"), f"--network={network}", "--host=127.0.0.1",
             f"--port={self.port}", "--device=cpu", *extra_args],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_until_up(timeout)
        self.seconds = time.perf_counter() - start

    def _wait_until_up(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"app.py exited with {self.process.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.url, timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"app.py did not answer within {timeout} s:\n{self.output()}")

    def output(self):
        with open(self.log_path) as f:
            return f.read()

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def open_browser(width=1400, height=1000, download_dir=None):
    """Headless Chromium through chromedriver (Selenium); downloads go to download_dir."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = next(shutil.which(name) for name in BROWSERS if shutil.which(name))
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    if download_dir:
        options.add_experimental_option("prefs", {"download.default_directory": os.path.abspath(download_dir),
                                                  "download.prompt_for_download": False})
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


# ----------------------------------------------------------------------------
# Reading and changing the page.


def wait_for(condition, timeout=60, what="the page"):
    """Poll condition() until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"{what}: nothing after {timeout} s")


def image_src(driver, elem_id):
    """The src of the <img> inside the component with this elem_id, or None while there is none."""
    from selenium.webdriver.common.by import By
    images = driver.find_elements(By.CSS_SELECTOR, f"#{elem_id} img")
    return images[0].get_attribute("src") if images else None


def wait_for_new_image(driver, elem_id, old_src=None, timeout=60):
    """The src of the component's image once it differs from old_src (the server wrote a new file)."""
    return wait_for(lambda: (image_src(driver, elem_id) or old_src) != old_src and image_src(driver, elem_id),
                    timeout, f"#{elem_id}")


def read_pixels(src):
    """HWC uint8 pixels of the file the page shows (served by the app)."""
    with urllib.request.urlopen(src, timeout=30) as response:
        return np.array(PIL.Image.open(io.BytesIO(response.read())))


def text_of(driver, elem_id):
    from selenium.webdriver.common.by import By
    found = driver.find_elements(By.ID, elem_id)
    return found[0].text if found else ""


def wait_for_text(driver, elem_id, needle, timeout=60):
    return wait_for(lambda: needle in text_of(driver, elem_id) and text_of(driver, elem_id), timeout,
                    f"'{needle}' in #{elem_id}")


def set_number(driver, elem_id, value):
    """Type a value into the number input of a component and leave the field (gradio fires change)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    field = driver.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type=number]")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(str(value), Keys.ENTER)


def open_tab(driver, title):
    from selenium.webdriver.common.by import By
    tabs = [tab for tab in driver.find_elements(By.CSS_SELECTOR, "button[role=tab]") if tab.text.strip() == title]
    tabs[0].click()


def click(driver, elem_id):
    from selenium.webdriver.common.by import By
    driver.find_element(By.ID, elem_id).click()


def upload(driver, elem_id, path):
    """Put a file into an upload component (clearing the one it holds first)."""
    from selenium.webdriver.common.by import By
    for button in driver.find_elements(By.CSS_SELECTOR, f"#{elem_id} button[aria-label=Clear]"):
        button.click()
    field = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, f"#{elem_id} input[type=file]"), 10,
                     f"#{elem_id} upload field")
    field[0].send_keys(os.path.abspath(path))
