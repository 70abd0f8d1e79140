"""Headless Chromium for tests that look at the report as a person's browser would.

Chromium and its driver come from Debian's packages (``chromium``, ``chromium-driver``);
when they are missing and we are root, they are installed once. Selenium is told where the
driver is, so it never tries to download one.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

CHROMIUM = "/usr/bin/chromium"
DRIVER = "/usr/bin/chromedriver"


def ensure_chromium() -> None:
    """Install Debian's chromium + chromium-driver when missing (skip the test when impossible)."""
    if os.path.exists(CHROMIUM) and os.path.exists(DRIVER):
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, capture_output=True, timeout=600)
    proc = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"],
        env=env, capture_output=True, text=True, timeout=900,
    )
    if proc.returncode != 0 or not os.path.exists(DRIVER):
        pytest.skip(f"could not install chromium: {proc.stderr[-500:]}")


def chrome_driver(tmp_path):
    """A headless Chromium WebDriver with browser logging on."""
    ensure_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chrome-profile'}", "--window-size=1400,1000",
        "--allow-file-access-from-files",
    ):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(DRIVER), options=opts)
