"""The demo page in a real headless Chromium against `dsaml demo` in its own process: a song's curves, live
annotation while it plays, personalizing, a second listener from a CSV, switching listeners, bad input shown as
messages; every request the browser makes and every connection the server opens recorded, none leaving the
machine."""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from demo_browser import (
    LOCAL_HOSTS,
    Server,
    browser,
    choose,
    clear_status,
    curve,
    free_port,
    is_local,
    play,
    status,
    title,
    upload,
)
from test_demo import TARGET_AROUSAL, demo_model  # noqa: F401  (demo_model: a fixture)

from dsaml.demo.songs import SECONDS

USER_FIELD = "#user-name textarea, #user-name input"


@contextmanager
def demo_page(model: Path, tmp_path: Path):
    """`dsaml demo` on a free port and a Chromium page on it; yields (page, folders, requests), then checks that the
    server stopped cleanly, nothing left the machine and the temporary folder is gone."""
    from playwright.sync_api import sync_playwright

    executable = browser()
    folders = {name: tmp_path / name for name in ("adapters", "cwd", "tmp", "screenshots")}
    for name in ("cwd", "tmp", "screenshots"):
        folders[name].mkdir()
    net_log = tmp_path / "server_connections.log"
    env = {**os.environ, "TMPDIR": str(folders["tmp"]), "DSAML_TEST_NET_LOG": str(net_log), "OMP_NUM_THREADS": "1"}
    server = Server(["--model", str(model), "--adapter_dir", str(folders["adapters"]), "--port", str(free_port()),
                     "--max_upload_mb", "1"], folders["cwd"], env)
    requests: list[str] = []

    def only_local(route):  # record every request; let none leave the machine, even if the test is wrong
        requests.append(route.request.url)
        route.continue_() if is_local(route.request.url) else route.abort()

    try:
        url = server.url()
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=executable, headless=True,
                                                  args=["--autoplay-policy=no-user-gesture-required"])
            context = chromium.new_context(viewport={"width": 1280, "height": 1000})
            context.route("**/*", only_local)
            page = context.new_page()
            page.goto(url)
            yield page, folders
            assert "Traceback" not in page.inner_text("body")
            chromium.close()
    finally:
        code = server.stop()
    log = "".join(server.lines)
    assert code == 0 and "Traceback" not in log, log[-4000:]
    assert requests and all(is_local(u) for u in requests), sorted(set(requests))
    outward = [line for line in net_log.read_text().splitlines()
               if not any(f"'{host}'" in line for host in LOCAL_HOSTS) and "connect '/" not in line]
    assert outward == [], outward
    assert "connect ('127.0.0.1'" in net_log.read_text()  # the hook saw the server's own start-up check
    assert list(folders["tmp"].iterdir()) == [] and list(folders["cwd"].iterdir()) == []


def _song_and_marker(page, shots: Path) -> np.ndarray:
    """Load a song, see its curves, the marker follow playback; returns the base arousal curve."""
    choose(page, "#demo-song", title("slow_build"))
    assert status(page, "#song-status") == ("ok", f"{title('slow_build')}: press play.")
    base = curve(page, "base")
    assert base.size == int(SECONDS / 0.5) and np.isfinite(base).all()
    assert page.locator(".dsaml-card").count() == 1
    page.screenshot(path=shots / "1_song.png", full_page=True)
    marker = page.locator(".dsaml-card[data-who='base'] svg.dsaml-time line.dsaml-now")
    start = float(marker.get_attribute("x1"))
    play(page)
    page.wait_for_function("document.querySelector('.dsaml-view audio').currentTime > 3")
    page.evaluate("document.querySelector('.dsaml-view audio').pause()")
    assert float(marker.get_attribute("x1")) > start + 20
    return base


def _annotate_live_and_personalize(page, folders: dict, steps: int) -> None:
    """Annotate with the live control while the song plays (arousal held at +0.8, valence 0), save as alice."""
    pad = page.locator("#dsaml-pad")
    pad.scroll_into_view_if_needed()
    box = pad.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * (1 - TARGET_AROUSAL) / 2)
    play(page)
    page.wait_for_function("document.querySelector('.dsaml-view audio').ended", timeout=60_000)
    readout = page.locator("#dsaml-pad-readout")
    assert readout.get_attribute("data-annotated") == str(steps), readout.inner_text()
    live = json.loads(page.evaluate("window.dsamlDemo.liveAnnotation()"))["values"]
    assert all(abs(a - TARGET_AROUSAL) < 0.02 and abs(v) < 0.02 for a, v in live)
    page.screenshot(path=folders["screenshots"] / "2_annotated.png", full_page=True)
    page.fill(USER_FIELD, "alice")
    page.click("#personalize")
    kind, text = status(page, "#personalize-status")
    assert kind == "ok" and text.startswith(f"Saved alice's model to {folders['adapters'] / 'alice'}"), text
    assert (folders["adapters"] / "alice" / "adapter_config.json").is_file()
    page.wait_for_selector(".dsaml-card[data-who='alice']")
    assert page.locator("#listener input").input_value() == "alice"


def _personal_curve_on_another_song(page, shots: Path) -> np.ndarray:
    """On another song: base and personal side by side, the personal curve moved toward the annotation."""
    clear_status(page, "#song-status")
    choose(page, "#demo-song", title("calm_minor"))
    status(page, "#song-status")
    assert [c.get_attribute("data-who") for c in page.locator(".dsaml-card").all()] == ["base", "alice"]
    base, alice = curve(page, "base"), curve(page, "alice")
    assert np.abs(alice - TARGET_AROUSAL).mean() < np.abs(base - TARGET_AROUSAL).mean() - 0.1
    page.screenshot(path=shots / "3_base_and_alice.png", full_page=True)
    return alice


def _second_listener_from_a_csv(page, tmp_path: Path, adapters: Path) -> None:
    """A CSV annotation (calm but positive, where the base model hears calm and negative): listener bob."""
    steps = int(SECONDS / 0.5)
    csv = tmp_path / "bob.csv"
    pd.DataFrame({"time": 0.5 * np.arange(steps), "arousal": -0.8, "valence": 0.8}).to_csv(csv, index=False)
    upload(page, "#annotation-upload", csv)
    page.wait_for_function("document.querySelector('#annotation-source input[value=csv]').checked")
    page.fill(USER_FIELD, "bob")
    clear_status(page, "#personalize-status")
    page.click("#personalize")
    kind, text = status(page, "#personalize-status")
    assert kind == "ok" and "bob's model" in text, text
    bob, base_valence = curve(page, "bob", "valence"), curve(page, "base", "valence")
    assert np.abs(bob - 0.8).mean() < np.abs(base_valence - 0.8).mean() - 0.3, (bob, base_valence)
    assert (adapters / "bob" / "adapter_config.json").is_file()


def _switch_listeners(page, alice: np.ndarray) -> None:
    choose(page, "#listener", "alice")
    page.wait_for_selector(".dsaml-card[data-who='alice']")
    assert np.allclose(curve(page, "alice"), alice, atol=1e-4)
    choose(page, "#listener", "(base model only)")
    page.wait_for_function("document.querySelectorAll('.dsaml-card').length === 1")


def _personalize_error(page, user: str) -> tuple[str, str]:
    page.fill(USER_FIELD, user)
    clear_status(page, "#personalize-status")
    page.click("#personalize")
    return status(page, "#personalize-status")


def _bad_input_is_a_message(page, tmp_path: Path, folders: dict) -> None:
    """A broken song, an empty CSV, a bad user name, a user deleted behind the page's back, a too large upload:
    each a message on the page, never a stack trace."""
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEfmt " + os.urandom(2000))
    clear_status(page, "#song-status")
    upload(page, "#song-upload", broken)
    kind, text = status(page, "#song-status")
    assert kind == "error" and text.startswith("broken.wav:") and str(folders["tmp"]) not in text, text
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    upload(page, "#annotation-upload", empty)
    kind, text = _personalize_error(page, "carol")
    assert kind == "error" and text.startswith("empty.csv: the annotation file is empty"), text
    assert _personalize_error(page, "bad name!") == (
        "error", "user name 'bad name!' is not allowed: use 1 to 64 letters, digits, '_' or '-', starting "
                 "with a letter or digit")
    shutil.rmtree(folders["adapters"] / "bob")  # removed behind the page's back: an unknown user now
    clear_status(page, "#song-status")
    choose(page, "#listener", "bob")
    kind, text = status(page, "#song-status")
    assert kind == "error" and text.startswith("unknown user 'bob'") and "alice" in text, text
    page.wait_for_function("document.querySelector('#listener input').value === '(base model only)'")
    too_big = tmp_path / "too_big.wav"
    sf.write(too_big, np.zeros(44100 * 15, dtype=np.float32), 44100)  # 2.6 MB > --max_upload_mb 1
    upload(page, "#song-upload", too_big)
    page.get_by_text("exceed the maximum allowed size of 1.0 Mb").first.wait_for(timeout=20_000)
    page.screenshot(path=folders["screenshots"] / "4_errors.png", full_page=True)


@pytest.mark.slow
def test_demo_page_in_a_headless_browser(demo_model, tmp_path):  # noqa: F811  (demo_model: a fixture)
    with demo_page(demo_model, tmp_path) as (page, folders):
        base = _song_and_marker(page, folders["screenshots"])
        _annotate_live_and_personalize(page, folders, base.size)
        alice = _personal_curve_on_another_song(page, folders["screenshots"])
        _second_listener_from_a_csv(page, tmp_path, folders["adapters"])
        _switch_listeners(page, alice)
        _bad_input_is_a_message(page, tmp_path, folders)
    adapters = folders["adapters"]
    assert sorted(p.name for p in adapters.iterdir() if not p.name.startswith(".")) == ["alice"]
    assert sorted(p.name for p in folders["screenshots"].iterdir()) == [
        "1_song.png", "2_annotated.png", "3_base_and_alice.png", "4_errors.png"]
