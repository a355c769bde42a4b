"""`dsaml demo`: the page's work (songs, live annotation, personalizing through the CLI's code path) and the page
itself, driven in a real headless Chromium (the system's, through Playwright) against `dsaml demo` in its own
process, with every request the browser makes and every connection the server opens recorded."""

from __future__ import annotations

import json
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
import pandas as pd
import pytest
import soundfile as sf

from dsaml.data.annotation_files import read_annotations
from dsaml.demo.songs import DEMO_SONGS, SECONDS, render_demo_song
from dsaml.errors import AnnotationError

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
TARGET_AROUSAL = 0.8  # the live annotation holds arousal here: far above what the base model predicts


def _rms_db(path: Path) -> float:
    wave, _ = sf.read(path, dtype="float32")
    return float(20 * np.log10(np.sqrt(np.mean(wave.astype(np.float64) ** 2))))


def test_demo_songs_render_once_and_differ_where_the_model_listens(tmp_path):
    paths = {song.key: render_demo_song(song.key, tmp_path) for song in DEMO_SONGS}
    for path in paths.values():
        info = sf.info(path)
        assert abs(info.frames / info.samplerate - SECONDS) < 0.01
    stamp = paths["calm_minor"].stat().st_mtime_ns
    assert render_demo_song("calm_minor", tmp_path).stat().st_mtime_ns == stamp  # not rendered again
    assert _rms_db(paths["bright_major"]) - _rms_db(paths["calm_minor"]) > 10  # loud vs quiet, by design
    with pytest.raises(ValueError, match="unknown demo song 'nope'"):
        render_demo_song("nope", tmp_path)


@pytest.fixture(scope="module")
def demo_model(trained_tiny, tmp_path_factory) -> Path:
    """The session's trained tiny model with the README main job model's inner loop (the output layer refitted
    by ridge regression on the support song), which a held annotation such as arousal +0.8 moves at once."""
    from dsaml import DSAMLConfig, DSAMLFeatureExtractor, DSAMLForDynamicEmotionRecognition

    config = DSAMLConfig.from_pretrained(trained_tiny, adaptation_method="ridge", adaptation_ridge=0.1,
                                         adapted_parameters=["predictor.out"])
    folder = tmp_path_factory.mktemp("demo_model") / "model"
    DSAMLForDynamicEmotionRecognition.from_pretrained(trained_tiny, config=config).save_pretrained(folder)
    DSAMLFeatureExtractor.from_pretrained(trained_tiny).save_pretrained(folder)
    return folder


@pytest.fixture
def session(demo_model, tmp_path):
    from dsaml.demo.session import DemoSession

    return DemoSession(str(demo_model), tmp_path / "adapters", tmp_path / "work")


def test_live_annotation_becomes_a_personalize_csv_and_bad_ones_are_refused(session):
    song = session.demo_song("slow_build")
    values = [None, None] + [[0.8, -0.25]] * 10
    path = session.live_annotation(json.dumps({"song": song.song_id, "values": values}), song)
    curve = read_annotations(path)  # the reader of `dsaml personalize`
    assert curve["start_seconds"] == 1.0 and np.allclose(curve["arousal"], 0.8) and np.allclose(curve["valence"], -0.25)
    with pytest.raises(AnnotationError, match="no live annotation of 'A slow build"):
        session.live_annotation(json.dumps({"song": song.song_id, "values": [None] * 5}), song)
    with pytest.raises(AnnotationError, match="no live annotation"):  # the samples of another song
        session.live_annotation(json.dumps({"song": "demo-calm_minor", "values": values}), song)
    with pytest.raises(AnnotationError, match=r"misses 3 half-second step\(s\) between 0 s and 2 s \(the first at 0.5 s\)"):
        session.live_annotation(json.dumps({"song": song.song_id, "values": [[0, 0], None, None, None, [0, 0]]}), song)
    with pytest.raises(AnnotationError, match="cannot be read"):
        session.live_annotation("{not json", song)


def test_demo_saves_the_same_adapter_as_dsaml_personalize(session, demo_model, tmp_path):
    """One code path: the demo's personalization and the CLI's give the same adapter files for the same input."""
    from safetensors.torch import load_file

    from dsaml.commands.personalize import main as personalize_main
    from dsaml.errors import FolderExistsError, UserNameError

    song = session.demo_song("calm_minor")
    steps = int(SECONDS / 0.5)
    csv = tmp_path / "alice.csv"
    pd.DataFrame({"time": 0.5 * np.arange(steps), "arousal": TARGET_AROUSAL, "valence": -0.5}).to_csv(csv, index=False)
    result, folder = session.personalize(song, csv, "alice")
    assert folder == tmp_path / "adapters" / "alice" and result.support_loss_after < result.support_loss_before
    code = personalize_main(["--model", str(demo_model), "--audio", str(song.path), "--annotations", str(csv),
                             "--user", "alice", "--output", str(tmp_path / "cli")])
    assert code == 0
    demo_tensors = load_file(folder / "adapter_model.safetensors")
    cli_tensors = load_file(tmp_path / "cli" / "alice" / "adapter_model.safetensors")
    assert demo_tensors.keys() == cli_tensors.keys()
    assert all(np.array_equal(demo_tensors[k].numpy(), cli_tensors[k].numpy()) for k in demo_tensors)
    info = json.loads((folder / "dsaml_adapter.json").read_text())
    assert info["base_fingerprint"] == json.loads((tmp_path / "cli" / "alice" / "dsaml_adapter.json").read_text())[
        "base_fingerprint"]
    # the CLI's refusals, before any work
    with pytest.raises(FolderExistsError, match="the adapter of user 'alice' exists"):
        session.personalize(song, csv, "alice")
    with pytest.raises(UserNameError, match="user name 'a b' is not allowed"):
        session.personalize(song, csv, "a b")
    # the personal curve moved toward the annotation, on another song too
    other = session.demo_song("bright_major")
    base, personal = session.curves(other), session.curves(other, "alice")
    assert np.abs(personal["arousal"] - TARGET_AROUSAL).mean() < np.abs(base["arousal"] - TARGET_AROUSAL).mean()


def test_demo_command_refuses_bad_options_in_one_line(tmp_path, capsys):
    from dsaml.commands.demo import main

    assert main(["--model", "x", "--port", "0"]) == 1
    assert capsys.readouterr().err.strip() == "dsaml demo: error: --port must be between 1 and 65535, got 0"
    assert main(["--model", str(tmp_path / "missing"), "--adapter_dir", str(tmp_path / "a"), "--port", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("dsaml demo: error:") and "missing" in err and "\n" not in err
    assert not list(tmp_path.iterdir())  # nothing written


# ---------------------------------------------------------------------------------------------------------------
# the page in a browser

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


def _is_local(url: str) -> bool:
    """A request that stays on this machine: to a loopback host, or a data:/blob: URL (no network)."""
    if url.startswith(("data:", "blob:")):
        return True
    from urllib.parse import urlsplit

    return urlsplit(url).hostname in LOCAL_HOSTS


def _browser() -> str:
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


def _free_port() -> int:
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


def _curve(page, who: str, dim: str = "arousal") -> np.ndarray:
    card = page.locator(f".dsaml-card[data-who='{who}']")
    return np.array([float(x) for x in card.get_attribute(f"data-{dim}").split()])


def _choose(page, dropdown: str, option: str) -> None:
    page.click(f"{dropdown} input")
    page.get_by_role("option", name=option, exact=True).click()


def _status(page, box: str, timeout: float = 60_000) -> tuple[str, str]:
    """The message that appears in a status box: ("ok" | "error", text)."""
    page.wait_for_selector(f"{box} .dsaml-status", timeout=timeout)
    node = page.locator(f"{box} .dsaml-status")
    return ("error" if "dsaml-error" in node.get_attribute("class") else "ok"), node.inner_text()


def _clear_status(page, box: str) -> None:
    page.evaluate(f"document.querySelectorAll('{box} .dsaml-status').forEach(n => n.remove())")


def _play(page, rate: float = 4.0) -> None:
    page.evaluate(f"(() => {{ const a = document.querySelector('.dsaml-view audio'); a.currentTime = 0; "
                  f"a.playbackRate = {rate}; return a.play(); }})()")


def _upload(page, component: str, path: Path) -> None:
    """Upload `path` in a file component, clearing the file it shows first (it hides its file input meanwhile)."""
    clear = page.locator(f"{component} button[aria-label='Clear']")
    if clear.count():
        clear.first.click()
    page.set_input_files(f"{component} input[type=file]", path)


def _title(key: str) -> str:
    return next(song.title for song in DEMO_SONGS if song.key == key)


@pytest.mark.slow
def test_demo_page_in_a_headless_browser(demo_model, tmp_path):
    executable = _browser()
    from playwright.sync_api import sync_playwright

    adapters, cwd, tmp, shots = (tmp_path / name for name in ("adapters", "cwd", "tmp", "screenshots"))
    for folder in (cwd, tmp, shots):
        folder.mkdir()
    net_log = tmp_path / "server_connections.log"
    env = {**os.environ, "TMPDIR": str(tmp), "DSAML_TEST_NET_LOG": str(net_log), "OMP_NUM_THREADS": "1"}
    server = Server(["--model", str(demo_model), "--adapter_dir", str(adapters), "--port", str(_free_port()),
                     "--max_upload_mb", "1"], cwd, env)
    requests: list[str] = []

    def only_local(route):  # record every request; let none leave the machine, even if the test is wrong
        requests.append(route.request.url)
        route.continue_() if _is_local(route.request.url) else route.abort()

    try:
        url = server.url()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                                 args=["--autoplay-policy=no-user-gesture-required"])
            context = browser.new_context(viewport={"width": 1280, "height": 1000})
            context.route("**/*", only_local)
            page = context.new_page()
            page.goto(url)

            # load a song, see its curves and the marker follow playback
            _choose(page, "#demo-song", _title("slow_build"))
            assert _status(page, "#song-status") == ("ok", f"{_title('slow_build')}: press play.")
            base_support = _curve(page, "base")
            assert base_support.size == int(SECONDS / 0.5) and np.isfinite(base_support).all()
            assert page.locator(".dsaml-card").count() == 1
            page.screenshot(path=shots / "1_song.png", full_page=True)
            marker = page.locator(".dsaml-card[data-who='base'] svg.dsaml-time line.dsaml-now")
            start = float(marker.get_attribute("x1"))
            _play(page)
            page.wait_for_function("document.querySelector('.dsaml-view audio').currentTime > 3")
            page.evaluate("document.querySelector('.dsaml-view audio').pause()")
            assert float(marker.get_attribute("x1")) > start + 20

            # annotate with the live control while the song plays: arousal held at +0.8, valence at 0
            pad = page.locator("#dsaml-pad")
            pad.scroll_into_view_if_needed()
            box = pad.bounding_box()
            page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * (1 - TARGET_AROUSAL) / 2)
            _play(page)
            page.wait_for_function("document.querySelector('.dsaml-view audio').ended", timeout=60_000)
            readout = page.locator("#dsaml-pad-readout")
            assert readout.get_attribute("data-annotated") == str(base_support.size), readout.inner_text()
            live = json.loads(page.evaluate("window.dsamlDemo.liveAnnotation()"))["values"]
            assert all(abs(a - TARGET_AROUSAL) < 0.02 and abs(v) < 0.02 for a, v in live)
            page.screenshot(path=shots / "2_annotated.png", full_page=True)
            page.fill("#user-name textarea, #user-name input", "alice")
            page.click("#personalize")
            kind, text = _status(page, "#personalize-status")
            assert kind == "ok" and text.startswith(f"Saved alice's model to {adapters / 'alice'}"), text
            assert (adapters / "alice" / "adapter_config.json").is_file()
            page.wait_for_selector(".dsaml-card[data-who='alice']")
            assert page.locator("#listener input").input_value() == "alice"

            # on another song: base and personal side by side, the personal curve moved toward the annotation
            _clear_status(page, "#song-status")
            _choose(page, "#demo-song", _title("calm_minor"))
            _status(page, "#song-status")
            assert [c.get_attribute("data-who") for c in page.locator(".dsaml-card").all()] == ["base", "alice"]
            base, alice = _curve(page, "base"), _curve(page, "alice")
            gap_base, gap_alice = np.abs(base - TARGET_AROUSAL).mean(), np.abs(alice - TARGET_AROUSAL).mean()
            assert gap_alice < gap_base - 0.1, (gap_base, gap_alice)
            page.screenshot(path=shots / "3_base_and_alice.png", full_page=True)

            # annotate by uploading a CSV (calm but positive, where the base model hears calm and negative): a
            # second listener
            steps = int(SECONDS / 0.5)
            csv = tmp_path / "bob.csv"
            pd.DataFrame({"time": 0.5 * np.arange(steps), "arousal": -0.8, "valence": 0.8}).to_csv(csv, index=False)
            _upload(page, "#annotation-upload", csv)
            page.wait_for_function("document.querySelector('#annotation-source input[value=csv]').checked")
            page.fill("#user-name textarea, #user-name input", "bob")
            _clear_status(page, "#personalize-status")
            page.click("#personalize")
            kind, text = _status(page, "#personalize-status")
            assert kind == "ok" and "bob's model" in text, text
            bob, base_valence = _curve(page, "bob", "valence"), _curve(page, "base", "valence")
            assert np.abs(bob - 0.8).mean() < np.abs(base_valence - 0.8).mean() - 0.3, (bob, base_valence)
            assert (adapters / "bob" / "adapter_config.json").is_file()

            # switching between saved listeners
            _choose(page, "#listener", "alice")
            page.wait_for_selector(".dsaml-card[data-who='alice']")
            assert np.allclose(_curve(page, "alice"), alice, atol=1e-4)
            _choose(page, "#listener", "(base model only)")
            page.wait_for_function("document.querySelectorAll('.dsaml-card').length === 1")

            # bad input: a message on the page, never a stack trace
            broken = tmp_path / "broken.wav"
            broken.write_bytes(b"RIFF....WAVEfmt " + os.urandom(2000))
            _clear_status(page, "#song-status")
            _upload(page, "#song-upload", broken)
            kind, text = _status(page, "#song-status")
            assert kind == "error" and text.startswith("broken.wav:") and str(tmp) not in text, text
            empty = tmp_path / "empty.csv"
            empty.write_text("")
            _upload(page, "#annotation-upload", empty)
            page.fill("#user-name textarea, #user-name input", "carol")
            _clear_status(page, "#personalize-status")
            page.click("#personalize")
            kind, text = _status(page, "#personalize-status")
            assert kind == "error" and text.startswith("empty.csv: the annotation file is empty"), text
            page.fill("#user-name textarea, #user-name input", "bad name!")
            _clear_status(page, "#personalize-status")
            page.click("#personalize")
            assert _status(page, "#personalize-status") == (
                "error", "user name 'bad name!' is not allowed: use 1 to 64 letters, digits, '_' or '-', starting "
                         "with a letter or digit")
            shutil.rmtree(adapters / "bob")  # removed behind the page's back: an unknown user now
            _clear_status(page, "#song-status")
            _choose(page, "#listener", "bob")
            kind, text = _status(page, "#song-status")
            assert kind == "error" and text.startswith("unknown user 'bob'") and "alice" in text, text
            page.wait_for_function("document.querySelector('#listener input').value === '(base model only)'")
            too_big = tmp_path / "too_big.wav"
            sf.write(too_big, np.zeros(44100 * 15, dtype=np.float32), 44100)  # 2.6 MB > --max_upload_mb 1
            _upload(page, "#song-upload", too_big)
            page.get_by_text("exceed the maximum allowed size of 1.0 Mb").first.wait_for(timeout=20_000)
            page.screenshot(path=shots / "4_errors.png", full_page=True)
            assert "Traceback" not in page.inner_text("body")
            browser.close()
    finally:
        code = server.stop()
    log = "".join(server.lines)
    assert code == 0, log[-4000:]
    assert "Traceback" not in log, log[-4000:]
    # no request left the machine: the browser's, and the server's own connections and name look-ups
    assert requests and all(_is_local(url) for url in requests), sorted(set(requests))
    outward = [line for line in net_log.read_text().splitlines()
               if not any(f"'{host}'" in line for host in LOCAL_HOSTS) and "connect '/" not in line]
    assert outward == [], outward
    assert "connect ('127.0.0.1'" in net_log.read_text()  # the hook saw the server's own start-up check
    # the temporary folder is gone, nothing was written beside the adapters
    assert list(tmp.iterdir()) == [] and list(cwd.iterdir()) == []
    assert sorted(p.name for p in adapters.iterdir() if not p.name.startswith(".")) == ["alice"]
    assert sorted(p.name for p in shots.iterdir()) == ["1_song.png", "2_annotated.png", "3_base_and_alice.png",
                                                        "4_errors.png"]

