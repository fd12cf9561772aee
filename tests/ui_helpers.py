"""For the `tf-mlp ui` browser tests: Debian's Chromium under Playwright, the page.

Playwright's own browser download is not reachable from the build machines, so it drives /usr/bin/chromium
(`make browser` installs it; Playwright 1.65 works with Debian's Chromium 156). In CI (CI=true) a missing
browser or data set fails the tests instead of skipping them.
"""

from __future__ import annotations

import os
import pathlib
import queue
import subprocess
import sys
import threading

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
CHROMIUM = pathlib.Path("/usr/bin/chromium")
# Headless, as root (no sandbox), and quiet: no GPU, no QUIC, no first-run, update, sync or background traffic.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 900}


def require(condition: bool, reason: str) -> None:
    """Skip with the reason when the condition fails; in CI, fail instead, since CI must run these tests."""
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI runs the page's browser tests, but {reason}")
    pytest.skip(reason)


def artifacts_dir() -> pathlib.Path:
    """Where the tests save screenshots of each state of the page (TF_MLP_TEST_ARTIFACTS, else test-artifacts/)."""
    directory = pathlib.Path(os.environ.get("TF_MLP_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts")) / "ui"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def launch_browser(playwright, profile_dir: pathlib.Path):
    """A Chromium context with a fresh profile directory (--user-data-dir, set by Playwright from profile_dir)."""
    return playwright.chromium.launch_persistent_context(
        str(profile_dir), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS, viewport=VIEWPORT)


class UiProcess:
    """`tf-mlp ui` as a real subprocess on a free port; url is read from the line it prints when it listens."""

    def __init__(self, log_path: pathlib.Path, *arguments: str):
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tf_mlp.cli", "ui", "--port", "0", *arguments],
                stdout=subprocess.PIPE, stderr=log, text=True)
        lines = queue.Queue()
        threading.Thread(target=lambda: lines.put(self.process.stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=60)
        except queue.Empty:
            self.stop()
            raise AssertionError(f"tf-mlp ui printed nothing: {log_path.read_text()}") from None
        assert line.startswith("Serving the page on "), f"{line!r} {log_path.read_text()}"
        self.url = line.split()[4]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.process.stdout.close()
