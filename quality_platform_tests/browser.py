"""A real browser on the real Dagster UI, for tests that check what a governance user sees
(issue 13, item 7).

``dagster_ui`` starts ``dagster-webserver`` on 127.0.0.1 (a free port) over the project's
workspace.yaml, with the caller's environment (so it shows the installation the test built), and
stops it by its own process group. ``chromium`` drives Debian's Chromium (``/usr/bin/chromium``)
through its ChromeDriver (``/usr/bin/chromedriver``), headless, with a fresh profile and the
flags this machine needs (no background networking: the network is closed). Both are installed
by ``make browser`` (a prerequisite of ``make test``). Every page a test looks at is saved as a
screenshot under ``test-artifacts/ui/`` (git-ignored), also when an expectation fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from quality_platform.location import PROJECT_ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "ui"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,1000",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def dagster_ui(log: Path, timeout: float = 120.0) -> Iterator[str]:
    """``dagster-webserver -h 127.0.0.1`` on workspace.yaml; yields its base URL once it answers.
    Its output goes to ``log``."""
    port = _free_port()
    exe = Path(sys.executable).parent / "dagster-webserver"
    cmd = [str(exe), "-h", "127.0.0.1", "-p", str(port), "-w", str(PROJECT_ROOT / "workspace.yaml")]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"dagster-webserver exited with {proc.returncode}; see {log}")
            try:
                with urllib.request.urlopen(f"{base}/server_info", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"dagster-webserver did not answer in {timeout:.0f} s; see {log}"
                )
            time.sleep(1)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


class Page:
    """One Chromium window on the UI at ``base``: open a path, wait for what a user would read,
    follow links, and keep a screenshot of each step."""

    def __init__(self, driver: webdriver.Chrome, base: str) -> None:
        self.driver, self.base = driver, base

    def open(self, path: str, expect: str, name: str, timeout: float = 90.0) -> str:
        """Open ``path`` and wait until the page shows ``expect``; returns the page's text."""
        self.driver.get(self.base + path)
        return self.wait_for(expect, name, timeout)

    def wait_for(self, expect: str, name: str, timeout: float = 90.0) -> str:
        """Wait until the page's text contains ``expect``; screenshot ``name`` either way."""
        try:
            WebDriverWait(self.driver, timeout, poll_frequency=0.5).until(
                lambda d: expect in d.find_element(By.TAG_NAME, "body").text
            )
        except TimeoutException:
            self.shot(f"{name}-FAILED")
            raise AssertionError(
                f"{self.driver.current_url} never showed {expect!r} in {timeout:.0f} s; "
                f"screenshot {ARTIFACTS / (name + '-FAILED.png')}"
            ) from None
        self.dismiss()
        time.sleep(1)  # let the rest of the page (graphs, plots) render
        self.shot(name)
        return self.text()

    def text(self) -> str:
        return str(self.driver.find_element(By.TAG_NAME, "body").text)

    def dismiss(self) -> None:
        """Close the UI's first-visit "Join the Dagster community" dialog if it is shown."""
        for b in self.driver.find_elements(By.XPATH, "//button[normalize-space()='Skip']"):
            with contextlib.suppress(Exception):
                b.click()

    def links_to(self, fragment: str) -> list[WebElement]:
        """Anchors whose href contains ``fragment``."""
        return [
            a
            for a in self.driver.find_elements(By.TAG_NAME, "a")
            if fragment in (a.get_attribute("href") or "")
        ]

    def click(self, xpath: str) -> None:
        self.dismiss()
        self.driver.find_element(By.XPATH, xpath).click()

    def graph_nodes(self, kind: str | None = None) -> list[str]:
        """First line of each node of the lineage graph on the page (``kind="group"``: group
        boxes only)."""
        nodes = self.driver.find_elements(By.XPATH, "//*[local-name()='foreignObject']")
        return [
            n.text.splitlines()[0]
            for n in nodes
            if n.text and (kind is None or n.get_attribute("class") == kind)
        ]

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path


@contextlib.contextmanager
def chromium(base: str) -> Iterator[Page]:
    """Headless Debian Chromium with a new empty profile, on the UI at ``base``."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} missing: run `make browser` (apt-get install)")
    with tempfile.TemporaryDirectory(prefix="qp-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in (*FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
        try:
            yield Page(driver, base)
        finally:
            driver.quit()
