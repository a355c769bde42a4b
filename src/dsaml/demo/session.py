"""The work behind the demo page: its songs, the base and personal curves, the live annotation, personalizing.

Nothing here knows about Gradio: the page (`dsaml.demo.page`) turns clicks into these calls and their errors into
messages. Personalizing goes through `dsaml.personalization.service.personalize_and_save`, the code path of
`dsaml personalize` (the same checks, the same adapter files under `<adapter_dir>/<user>/`), and personal curves
through `dsaml.personalization.adapters` (`load_personalized`, `add_user`, PEFT's `set_adapter`), as `dsaml predict` does.

One base model serves every page session; a lock keeps the clicks of several browser tabs from using the model
(and the one PEFT model that holds the listeners' adapters) at the same time.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dsaml.audio.reader import audio_duration
from dsaml.demo.curves import Card, song_view
from dsaml.demo.songs import DEMO_SONGS, render_demo_song
from dsaml.errors import AnnotationError, AudioError
from dsaml.inference.files import predict_file
from dsaml.inference.loading import load_extractor, load_model
from dsaml.personalization.adapters import add_user, known_users, load_personalized
from dsaml.personalization.service import check_request, personalize_and_save
from dsaml.utils.storage import check_user

__all__ = ["DemoSession", "Song"]

Report = Callable[[float, str], None]  # (fraction done, what is being done): the page's progress bar
CACHED_PREDICTIONS = 64  # curves kept per session: switching listeners or songs back and forth recomputes nothing


def _silent(fraction: float, text: str) -> None:
    pass


@dataclass(frozen=True)
class Song:
    """A song of the page: a demo song or an upload."""

    song_id: str  # what the live annotation is tied to
    title: str
    path: Path


class DemoSession:
    """The demo's model, folders and caches. `work_dir` is a folder the caller owns and cleans (demo songs and
    live annotations are written there); adapters are written only to `adapter_dir`."""

    def __init__(self, model_name: str, adapter_dir: str | os.PathLike, work_dir: str | os.PathLike, *,
                 max_song_seconds: float = 900.0) -> None:
        self.model_name = str(model_name)
        self.adapter_dir = Path(adapter_dir)
        self.work_dir = Path(work_dir)
        self.max_song_seconds = float(max_song_seconds)
        self.base = load_model(model_name)
        self.extractor = load_extractor(model_name, self.base.config)
        self.step_seconds = float(self.base.config.step_seconds)
        self._lock = threading.Lock()
        self._personal = None  # one PeftModel over a copy of the base, holding every loaded listener's adapter
        self._stamps: dict[str, tuple] = {}  # user -> adapter files' (size, mtime) when loaded
        self._curves: OrderedDict = OrderedDict()

    # -- songs -------------------------------------------------------------------------------------------------

    def demo_song(self, key: str) -> Song:
        song = next((s for s in DEMO_SONGS if s.key == key), None)
        if song is None:
            raise ValueError(f"unknown demo song {key!r}")
        folder = self.work_dir / "songs"
        folder.mkdir(parents=True, exist_ok=True)
        return Song(f"demo-{key}", song.title, render_demo_song(key, folder))

    def uploaded_song(self, path: str | os.PathLike) -> Song:
        """An uploaded file as a song; refused (AudioError naming it) if its header says it is not audio or it
        is longer than `max_song_seconds`. Decoding errors surface when its curves are computed."""
        path = Path(path)
        seconds = audio_duration(path, name=path.name)
        if seconds > self.max_song_seconds:
            raise AudioError(f"{path.name}: {seconds / 60:.1f} minutes long; the demo takes songs of up to "
                             f"{self.max_song_seconds / 60:g} minutes (use `dsaml predict` for longer ones)")
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
        return Song(f"upload-{digest}", path.name, path)

    # -- curves ------------------------------------------------------------------------------------------------

    def users(self) -> list[str]:
        return known_users(self.adapter_dir)

    def view(self, song: Song, user: str | None = None, report: Report = _silent, note: str = "") -> str:
        """The page's view of `song`: player, the base model's card, and `user`'s card beside it."""
        cards = [Card("base", "Base model", self.curves(song, None, report))]
        if user:
            cards.append(Card(user, f"{user}'s model", self.curves(song, user, report)))
        return song_view(song.song_id, song.title, str(song.path), cards, step_seconds=self.step_seconds, note=note)

    def curves(self, song: Song, user: str | None = None, report: Report = _silent):
        """The per-step predictions (`dsaml.inference.files.predict_file`) of the base model or of `user`'s model."""
        with self._lock:
            model = self.base if user is None else self._personal_model(user)
            key = (str(song.path), user, self._stamps.get(user))
            if key not in self._curves:
                report(0.3, f"predicting with {'the base model' if user is None else f'the model of {user}'}")
                self._curves[key] = predict_file(model, self.extractor, song.path)
                while len(self._curves) > CACHED_PREDICTIONS:
                    self._curves.popitem(last=False)
            self._curves.move_to_end(key)
            return self._curves[key]

    def _personal_model(self, user: str):
        """The PEFT model with `user`'s adapter active, (re)loading adapters that are new or changed on disk."""
        check_user(user)
        stamp = _stamp(self.adapter_dir / user)
        if user in self._stamps and self._stamps[user] != stamp:  # replaced since it was loaded
            self._personal, self._stamps = None, {}
        if self._personal is None:
            # a copy: PEFT wraps the modules of the model it is given, and the base must stay as it is
            self._personal = load_personalized(self.model_name, self.adapter_dir, user, model=copy.deepcopy(self.base))
            self._stamps = {user: stamp}
        elif user not in self._stamps:
            add_user(self._personal, self.adapter_dir, user)
            self._stamps[user] = stamp
        self._personal.set_adapter(user)
        return self._personal

    # -- making it yours ---------------------------------------------------------------------------------------

    def live_annotation(self, payload: str, song: Song) -> Path:
        """The live control's samples (`page.js`: `{"song": id, "values": [[arousal, valence] or null per
        half second]}`) as a CSV in the `dsaml personalize` format, in the work folder."""
        try:
            data = json.loads(payload) if payload else {}
            values = (data.get("values") or []) if data.get("song") == song.song_id else []
        except (ValueError, AttributeError) as exc:
            raise AnnotationError(f"the live annotation cannot be read ({exc})") from None
        steps = [i for i, value in enumerate(values) if value is not None]
        if not steps:
            raise AnnotationError(f"no live annotation of {song.title!r} yet: press play and move the point on the "
                                  "pad while the song plays (or choose an uploaded CSV)")
        first, last = steps[0], steps[-1]
        gaps = [i for i in range(first, last + 1) if values[i] is None]
        if gaps:
            raise AnnotationError(
                f"the live annotation of {song.title!r} misses {len(gaps)} half-second step(s) between "
                f"{first * self.step_seconds:g} s and {last * self.step_seconds:g} s (the first at "
                f"{gaps[0] * self.step_seconds:g} s): play those parts too, or start over")
        folder = self.work_dir / "annotations"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"live-{song.song_id}-{uuid.uuid4().hex[:8]}.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["time", "arousal", "valence"])
            for i in range(first, last + 1):
                arousal, valence = (float(x) for x in values[i])
                writer.writerow([f"{i * self.step_seconds:g}", f"{arousal:.4f}", f"{valence:.4f}"])
        return path

    def personalize(self, song: Song, annotation: str | os.PathLike, user: str, *, overwrite: bool = False,
                    report: Report = _silent):
        """Adapt the base to `user` on `song` and its annotation, save the adapter under `<adapter_dir>/<user>`
        (`dsaml personalize`'s code path, LoRA mode). Returns `(Personalization, folder)`."""
        check_request(user, self.adapter_dir, overwrite=overwrite)  # refused before the song is even decoded
        with self._lock:
            report(0.2, f"personalizing for {user} on {song.title}")
            result = personalize_and_save(self.base, self.extractor, song.path, annotation, user=user,
                                          model_name=self.model_name, output=self.adapter_dir, overwrite=overwrite)
            if user in self._stamps:  # the old adapter is loaded: drop it, the next curves load the new one
                self._personal, self._stamps = None, {}
        return result


def _stamp(folder: Path) -> tuple:
    """What changes when an adapter folder is written again (its files' sizes and modification times)."""
    files = sorted(p for p in folder.glob("*") if p.is_file()) if folder.is_dir() else []
    return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
