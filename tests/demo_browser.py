"""Driving `dsaml demo` in the system's Chromium (Playwright): the server in its own process with every address it
connects to logged, the page's controls, and what the page shows."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from dsaml.demo.songs import DEMO_SONGS

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


# `dsaml demo` in its own process, with an audit hook that logs every address the server connects to or looks up
SERVER = textwrap.dedent(
    """
    import os, sys

    log = open(os.environ["DSAML_TEST_NET_LOG"], "a", buffering=1)

    def record(event, args):
        if event == "socket.connect":
            log.write("connect " + repr(args[1]) + "\\n")
        elif event == "socket.getaddrinfo":
            log.write("getaddrinfo " + repr(args[0]) + "\\n")

    sys.addaudithook(record)
    from dsaml.cli import main

    sys.exit(main(["demo", *sys.argv[1:]]))
    """
)
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def is_local(url: str) -> bool:
    """A request that stays on this machine: to a loopback host, or a data:/blob: URL (no network)."""
    if url.startswith(("data:", "blob:")):
        return True
    from urllib.parse import urlsplit

    return urlsplit(url).hostname in LOCAL_HOSTS


def browser() -> str:
    """The system's Chromium, for Playwright; skip (outside CI) or fail (in CI) when it cannot be had."""
    def unavailable(reason: str):
        if IN_CI:
            pytest.fail(f"CI=true but {reason}; .ci/run installs chromium and .ci/install the demo/test extras")
        pytest.skip(f"{reason}: the demo's browser test needs it (apt-get install chromium; pip install -e .[test,demo])")

    for module in ("gradio", "playwright"):
        try:
            __import__(module)
        except ImportError:
            unavailable(f"the Python package {module!r} is not installed")
    for name in (os.environ.get("DSAML_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        path = name and shutil.which(name)
        if path:
            return path
    unavailable("no Chromium executable found (chromium, chromium-browser, $DSAML_CHROMIUM)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`dsaml demo` running in a subprocess until `stop()`; its output collected in `lines`."""

    def __init__(self, args: list[str], cwd: Path, env: dict):
        self.lines: list[str] = []
        self.process = subprocess.Popen([sys.executable, "-c", SERVER, *args], cwd=cwd, env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line)

    def url(self, timeout: float = 180.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if line.startswith("dsaml demo: open "):
                    return line.split()[3].rstrip(";")
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError("dsaml demo did not start:\n" + "".join(self.lines)[-4000:])

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def curve(page, who: str, dim: str = "arousal") -> np.ndarray:
    card = page.locator(f".dsaml-card[data-who='{who}']")
    return np.array([float(x) for x in card.get_attribute(f"data-{dim}").split()])


def choose(page, dropdown: str, option: str) -> None:
    page.click(f"{dropdown} input")
    page.get_by_role("option", name=option, exact=True).click()


def status(page, box: str, timeout: float = 60_000) -> tuple[str, str]:
    """The message that appears in a status box: ("ok" | "error", text)."""
    page.wait_for_selector(f"{box} .dsaml-status", timeout=timeout)
    node = page.locator(f"{box} .dsaml-status")
    return ("error" if "dsaml-error" in node.get_attribute("class") else "ok"), node.inner_text()


def clear_status(page, box: str) -> None:
    page.evaluate(f"document.querySelectorAll('{box} .dsaml-status').forEach(n => n.remove())")


def play(page, rate: float = 4.0) -> None:
    page.evaluate(f"(() => {{ const a = document.querySelector('.dsaml-view audio'); a.currentTime = 0; "
                  f"a.playbackRate = {rate}; return a.play(); }})()")


def upload(page, component: str, path: Path) -> None:
    """Upload `path` in a file component, clearing the file it shows first (it hides its file input meanwhile)."""
    clear = page.locator(f"{component} button[aria-label='Clear']")
    if clear.count():
        clear.first.click()
    page.set_input_files(f"{component} input[type=file]", path)


def title(key: str) -> str:
    return next(song.title for song in DEMO_SONGS if song.key == key)
