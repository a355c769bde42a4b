"""Audio files -> per-step model inputs, decoded block by block, optionally in a background thread.

`file_steps` yields, for each file in turn, `(index, "steps", inputs)` as blocks are decoded (the model inputs
of the steps each block completes, `StepFeatureStream.push_inputs`), then `(index, "end", None)`, or
`(index, "error", AudioError)` as soon as the file turns out unusable. With `background=True` a thread does
the decoding, resampling and log-mel work ahead of the caller through a bounded queue, so the caller's model
compute overlaps it (soundfile and torch release the GIL); memory holds at most `queue_blocks` blocks ahead.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator, Sequence

from dsaml.audio.reader import BLOCK_FRAMES, AudioReader
from dsaml.errors import AudioError

__all__ = ["file_steps"]

_POLL_SECONDS = 0.1


def _decode(paths: Sequence[str | os.PathLike], extractor, block_frames: int) -> Iterator[tuple]:
    for index, path in enumerate(paths):
        try:
            with AudioReader(path) as reader:
                stream = extractor.stream(reader.sample_rate, name=str(path))
                for block in reader.blocks(block_frames):
                    yield index, "steps", stream.push_inputs(block)
                yield index, "steps", stream.flush_inputs()
        except AudioError as exc:
            yield index, "error", exc
            continue
        except ValueError as exc:  # the feature stream's checks (silent, shorter than a step) name the file
            yield index, "error", AudioError(str(exc))
            continue
        yield index, "end", None


def file_steps(paths: Sequence[str | os.PathLike], extractor, *, background: bool = True,
               block_frames: int = BLOCK_FRAMES, queue_blocks: int = 8) -> Iterator[tuple]:
    """See the module docstring. Closing the iterator early stops the thread."""
    if not background:
        yield from _decode(paths, extractor, block_frames)
        return
    items: queue.Queue = queue.Queue(maxsize=queue_blocks)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in _decode(paths, extractor, block_frames):
                if not put(item):
                    return
        except BaseException as exc:  # noqa: BLE001  handed to the caller's thread, raised there
            put((None, "fatal", exc))
            return
        put((None, "done", None))

    thread = threading.Thread(target=work, name="dsaml-decoding", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item[1] == "done":
                return
            if item[1] == "fatal":
                raise item[2]
            yield item
    finally:
        stop.set()
        thread.join()
