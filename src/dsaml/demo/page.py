"""The demo's Gradio page: its layout, what each click calls in `DemoSession`, and how the page is served.

Every handler runs under `_reported`: bad input (what the command line reports as one line, `dsaml.errors`)
becomes a message in the page's status box with the temporary folders cut from file names, a bug becomes a
message pointing at the terminal (which has the traceback); the page never shows a stack trace. The page works
offline: analytics off, the default theme's fonts are served by Gradio itself, the page's own script and style
are inline, server-side rendering (a Node server) off; `launch` serves only the session's working folder.
"""

from __future__ import annotations

import functools
import html
import logging
import re
from importlib import resources
from pathlib import Path
from types import SimpleNamespace

from dsaml.audio.reader import AUDIO_EXTENSIONS
from dsaml.demo.curves import empty_view
from dsaml.demo.session import DemoSession
from dsaml.demo.songs import DEMO_SONGS
from dsaml.errors import expected_errors, one_line
from dsaml.utils.storage import USER_NAME_RULE

logger = logging.getLogger(__name__)

__all__ = ["build_page", "launch"]

NO_LISTENER = "(base model only)"
INTRO = """# How does this music feel, to you?
The model predicts **arousal** (calm to excited) and **valence** (negative to positive) every half second.
Pick a song and press play: the marker follows the music. Then annotate it your way, and get a model of your own."""
MAKE_IT_YOURS = """## Make it yours
While the song above plays, hold the point on the pad where the music takes you (up: more aroused, right: more
positive); it is sampled every half second. Or upload a CSV with `time`, `arousal`, `valence` columns (one row
per half second, values in [-1, 1]), as for `dsaml personalize`. One click adapts the model to you and saves it
under your name; then pick another song and compare your model with the base model."""
PAD_HTML = """<div class="dsaml-pad-box">
<div id="dsaml-pad" class="dsaml-pad" tabindex="0" role="application"
     aria-label="live control: valence from left to right, arousal from bottom to top; arrow keys move it">
<span class="dsaml-pad-label top">aroused</span><span class="dsaml-pad-label bottom">calm</span>
<span class="dsaml-pad-label left">negative</span><span class="dsaml-pad-label right">positive</span>
<div class="dsaml-pad-dot"></div></div>
<div id="dsaml-pad-readout" class="dsaml-pad-readout" data-annotated="0">move the point to start</div>
<button type="button" id="dsaml-pad-clear" class="dsaml-pad-clear">Start over</button>
</div>"""
# the personalize button's browser half: the live control's samples go in place of the hidden `live` input
COLLECT_LIVE = ("(song, source, live, file, user, overwrite) => "
                "[song, source, window.dsamlDemo ? window.dsamlDemo.liveAnnotation() : '', file, user, overwrite]")


def _asset(name: str) -> str:
    return resources.files("dsaml.demo").joinpath(name).read_text(encoding="utf-8")


def _status(text: str, ok: bool = True) -> str:
    kind = "dsaml-ok" if ok else "dsaml-error"
    return f'<div class="dsaml-status {kind}" role="status">{html.escape(text)}</div>'


def _reported(status, hidden_roots: list[Path], also=None):
    """Run a handler; its errors become a message in `status` (plus the updates `also()` returns, if given)."""
    pattern = re.compile("|".join(re.escape(str(root)) for root in hidden_roots) + r"(?:/[^/\s'\"]+)*/")
    errors = expected_errors()

    def decorate(handler):
        @functools.wraps(handler)  # Gradio reads the handler's signature (its gr.Progress argument)
        def run(*args, **kwargs):
            try:
                return handler(*args, **kwargs)
            except errors as exc:
                return {**(also() if also else {}), status: _status(pattern.sub("", one_line(exc)), ok=False)}
            except Exception:
                logger.exception("dsaml demo: %s failed", handler.__name__)
                return {status: _status("Something went wrong inside the demo (a bug): the terminal running "
                                        "`dsaml demo` shows the details.", ok=False)}

        return run

    return decorate


def build_page(session: DemoSession, *, max_upload_mb: float, upload_dir: str | Path | None = None):
    """The page (a `gradio.Blocks`) on `session`. `upload_dir`: where Gradio keeps uploads (cut from file names in messages)."""
    import gradio as gr

    roots = [session.work_dir.resolve(), session.work_dir] + ([Path(upload_dir)] if upload_dir else [])
    with gr.Blocks(title="dsaml demo", analytics_enabled=False) as page:
        ui = _controls(gr, max_upload_mb)
        handlers = _handlers(gr, session, ui, roots)
        page.load(lambda: handlers.listeners(), outputs=ui.listener)
        ui.demo_pick.change(handlers.pick_demo, inputs=[ui.demo_pick, ui.listener],
                            outputs=[ui.song, ui.view, ui.song_status])
        ui.upload.upload(handlers.pick_upload, inputs=[ui.upload, ui.listener],
                         outputs=[ui.song, ui.view, ui.song_status])
        ui.listener.input(handlers.pick_listener, inputs=[ui.song, ui.listener],
                          outputs=[ui.view, ui.song_status, ui.listener])
        ui.annotation.upload(lambda: "csv", outputs=ui.source)
        ui.go.click(handlers.personalize, inputs=[ui.song, ui.source, ui.live, ui.annotation, ui.user, ui.overwrite],
                    outputs=[ui.personal_status, ui.listener, ui.view], js=COLLECT_LIVE)
    return page


def _controls(gr, max_upload_mb: float) -> SimpleNamespace:
    """The page's components, laid out: the song and listener pickers, the view, the pad and the form."""
    ui = SimpleNamespace(song=gr.State(None))
    gr.Markdown(INTRO)
    with gr.Row():
        ui.demo_pick = gr.Dropdown(choices=[(s.title, s.key) for s in DEMO_SONGS], value=None, label="A demo song",
                                   elem_id="demo-song")
        ui.upload = gr.File(label=f"... or your own song ({', '.join(e[1:] for e in AUDIO_EXTENSIONS)}; "
                                  f"up to {max_upload_mb:g} MB)",
                            file_types=list(AUDIO_EXTENSIONS), type="filepath", elem_id="song-upload")
        # custom values pass: a name whose adapter went away (or a stale one in a second tab) reaches
        # the session, which answers "unknown user", instead of Gradio's own validation error
        ui.listener = gr.Dropdown(choices=[NO_LISTENER], value=NO_LISTENER, label="Compare with a listener's model",
                                  allow_custom_value=True, elem_id="listener")
    ui.song_status = gr.HTML("", elem_id="song-status")
    ui.view = gr.HTML(empty_view(), elem_id="dsaml-view")
    gr.Markdown(MAKE_IT_YOURS)
    with gr.Row():
        with gr.Column():
            gr.HTML(PAD_HTML, elem_id="dsaml-pad-box")
        with gr.Column():
            ui.source = gr.Radio([("the live control", "live"), ("an uploaded CSV", "csv")], value="live",
                                 label="Annotation to learn from", elem_id="annotation-source")
            ui.annotation = gr.File(label="Annotation CSV (time, arousal, valence)", file_types=[".csv", ".json"],
                                    type="filepath", elem_id="annotation-upload")
            ui.user = gr.Textbox(label="Your name", placeholder="e.g. alice", info=USER_NAME_RULE, elem_id="user-name")
            ui.overwrite = gr.Checkbox(label="Replace my saved model if there is one", elem_id="overwrite")
            ui.go = gr.Button("Personalize on this song and save", variant="primary", elem_id="personalize")
            ui.live = gr.Textbox(visible=False)
            ui.personal_status = gr.HTML("", elem_id="personalize-status")
    return ui


def _handlers(gr, session: DemoSession, ui: SimpleNamespace, roots: list[Path]) -> SimpleNamespace:
    """What each control does: session calls, their errors shown in the control's status box."""

    def listeners(selected: str | None = None):
        return gr.update(choices=[NO_LISTENER, *session.users()], value=selected or NO_LISTENER)

    def who(listener: str | None) -> str | None:
        return None if listener in (None, "", NO_LISTENER) else listener

    def show(new_song, selected, progress):
        progress(0.05, desc=f"reading {new_song.title}")
        report = lambda fraction, text: progress(fraction, desc=text)  # noqa: E731
        return {ui.song: new_song, ui.view: session.view(new_song, who(selected), report),
                ui.song_status: _status(f"{new_song.title}: press play.")}

    @_reported(ui.song_status, roots)
    def pick_demo(key, selected, progress=gr.Progress()):
        return show(session.demo_song(key), selected, progress) if key else {}

    @_reported(ui.song_status, roots)
    def pick_upload(path, selected, progress=gr.Progress()):
        return show(session.uploaded_song(path), selected, progress) if path else {}

    # a listener whose adapter went away meanwhile: the message, and the list as it now is
    @_reported(ui.song_status, roots, also=lambda: {ui.listener: listeners()})
    def pick_listener(current, selected, progress=gr.Progress()):
        if current is None:
            return {}
        report = lambda fraction, text: progress(fraction, desc=text)  # noqa: E731
        return {ui.view: session.view(current, who(selected), report), ui.song_status: _status(
            f"{current.title}: " + (f"base model and {selected}'s model." if who(selected) else "base model."))}

    @_reported(ui.personal_status, roots)
    def personalize(current, kind, samples, path, name, replace, progress=gr.Progress()):
        name = (name or "").strip()
        result, folder = _personalize(session, current, kind, samples, path, name, replace, progress)
        message = (f"Saved {name}'s model to {folder} (fit to your annotation: loss "
                   f"{result.support_loss_before:.3f} -> {result.support_loss_after:.3f}). Pick another song "
                   "to compare it with the base model." + (f" Note: {result.info['note']}."
                                                             if "note" in result.info else ""))
        return {ui.personal_status: _status(message), ui.listener: listeners(name),
                ui.view: session.view(current, name, note=f"{name}'s model learned from this song.")}

    return SimpleNamespace(listeners=listeners, pick_demo=pick_demo, pick_upload=pick_upload,
                           pick_listener=pick_listener, personalize=personalize)


def _personalize(session: DemoSession, current, kind: str, samples, path, name: str, replace, progress):
    """Personalize on the current song from the live annotation or the uploaded CSV (a live one is written to a
    CSV for the time it takes, then removed)."""
    if current is None:
        raise ValueError("pick a song first: personalizing learns from one annotated song")
    if kind == "csv":
        if not path:
            raise ValueError("no annotation CSV uploaded (or choose the live control)")
        source_file, made = Path(path), None
    else:
        source_file = made = session.live_annotation(samples, current)
    progress(0.1, desc="checking the annotation")
    try:
        outcome = session.personalize(current, source_file, name, overwrite=bool(replace),
                                      report=lambda fraction, text: progress(fraction, desc=text))
    finally:
        if made is not None:
            made.unlink(missing_ok=True)
    progress(0.7, desc=f"predicting with {name}'s model")
    return outcome


def launch(page, *, files_dir: str | Path, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           max_upload_mb: float = 50.0) -> tuple[str, str | None]:
    """Start serving `page` on `host:port` (Gradio's `launch`, in a background thread; `page.block_thread()` waits,
    `page.close()` stops): only `files_dir` (demo songs, uploads) is served as files, uploads above
    `max_upload_mb` are refused, the page's script and style go inline in its head. Returns the local URL and
    the public one (with `share`)."""
    _, local_url, share_url = page.launch(
        server_name=host, server_port=port, share=share, prevent_thread_lock=True, quiet=True,
        head=f"<script>{_asset('page.js')}</script>", css=_asset("page.css"), allowed_paths=[str(files_dir)],
        max_file_size=int(max_upload_mb * 1024 * 1024), ssr_mode=False, pwa=False, mcp_server=False,
        show_error=False, footer_links=[], inbrowser=False,
    )
    return local_url, share_url
