"""`dsaml demo`: a local web page to see a song's curves, annotate it while it plays and get a model of one's own.

The page (`dsaml.demo`) is served by Gradio on 127.0.0.1 unless told otherwise. Everything it writes besides the
adapters (`--adapter_dir`) goes to one temporary folder: Gradio's uploads (`GRADIO_TEMP_DIR`, which Gradio reads
when it is imported, so it is set here, in the command's own process, before the import), the demo songs and the
live annotations. The folder is removed when the command stops (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from dsaml.commands.boundary import reports_errors
from dsaml.utils.files import check_output_folder

DEFAULT_MODEL = "outputs/synthetic_small/best"  # where the README's main job puts its model
SHARE_WARNING = ("dsaml demo: warning: --share makes this page reachable by anyone who has its link, through "
                 "Gradio's tunnel servers (requests then leave this machine): they can play and upload songs and "
                 "save adapters into {adapters}. Stop the command to close the link.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dsaml demo",
        description="A local web page: pick a song, see its arousal/valence curves, annotate it while it plays and "
                    "save a model of your own (needs the demo extra: pip install \"dsaml[demo]\").",
    )
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"model folder (save_pretrained) or Hub repo id (default: {DEFAULT_MODEL}, the README's "
                             "main job)")
    parser.add_argument("--adapter_dir", default="adapters",
                        help="folder of per-user adapters: listeners saved there are listed, new ones saved there "
                             "(as by dsaml personalize; default: adapters)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--share", action="store_true",
                        help="also publish the page through a temporary public link of Gradio's (off by default)")
    parser.add_argument("--max_upload_mb", type=float, default=50.0, help="largest upload accepted (default 50 MB)")
    parser.add_argument("--max_song_minutes", type=float, default=15.0,
                        help="longest uploaded song accepted (default 15 minutes)")
    return parser


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check(args: argparse.Namespace) -> None:
    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be between 1 and 65535, got {args.port}")
    for flag in ("max_upload_mb", "max_song_minutes"):
        if not getattr(args, flag) > 0:
            raise ValueError(f"--{flag} must be > 0, got {getattr(args, flag)}")
    check_output_folder(args.adapter_dir)


@reports_errors("dsaml demo")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _check(args)
    if importlib.util.find_spec("gradio") is None:
        print('dsaml demo: error: the demo needs Gradio: pip install "dsaml[demo]"', file=sys.stderr)
        return 1
    if args.share:
        print(SHARE_WARNING.format(adapters=Path(args.adapter_dir).resolve()), file=sys.stderr)
    if not _is_loopback(args.host):
        print(f"dsaml demo: warning: binding to {args.host}: other machines that reach this one can open the page",
              file=sys.stderr)
    root = Path(tempfile.mkdtemp(prefix="dsaml-demo-"))
    saved_env = {name: os.environ.get(name) for name in ("GRADIO_TEMP_DIR", "GRADIO_ANALYTICS_ENABLED")}
    previous_term = signal.getsignal(signal.SIGTERM)
    page = None
    try:
        os.environ["GRADIO_TEMP_DIR"] = str(root / "uploads")
        os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # Gradio's version check and telemetry call home
        from dsaml.demo.page import build_page, launch
        from dsaml.demo.session import DemoSession

        session = DemoSession(args.model, args.adapter_dir, root / "work", max_song_seconds=60 * args.max_song_minutes)
        page = build_page(session, max_upload_mb=args.max_upload_mb, upload_dir=root / "uploads")
        # SIGTERM stops like Ctrl-C, so the temporary folder is removed either way
        signal.signal(signal.SIGTERM, _interrupt)
        local_url, share_url = launch(page, files_dir=root, host=args.host, port=args.port, share=args.share,
                                      max_upload_mb=args.max_upload_mb)
        print(f"dsaml demo: model {args.model}, listeners' adapters in {Path(args.adapter_dir).resolve()}, "
              f"temporary files in {root} (removed on exit)")
        print(f"dsaml demo: open {local_url}" + (f" (public link: {share_url})" if share_url else "")
              + "; Ctrl-C stops", flush=True)
        page.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        if page is not None:
            page.close()
        shutil.rmtree(root, ignore_errors=True)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
