"""Frames from a video file for SfM: every Nth frame, decoded with PyAV (FFmpeg inside its wheel)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..protocol import EXIT_BAD_INPUT, BridgeError
from .inputs import WorkingImage, save_image, target_size
from .options import MIN_PHOTOS

_HINT = ("Convert the video to H.264 MP4 (any editor or HandBrake can), "
         "or export its frames as photos and pick that folder.")


def extract_frames(
    video: Path, work_dir: Path, every: int, max_size: int, on_progress: Callable[[int, int], None],
    should_stop: Callable[[], bool],
) -> list[WorkingImage]:
    """Write frames 0, N, 2N, ... of the video's first video stream as JPEGs into ``work_dir``.

    ``on_progress(frames_read, frames_total)`` (total 0 when the container does not say).
    """
    import av

    if not video.is_file():
        raise BridgeError("missing_input", f"{video}: no such file", "Check the video path.", EXIT_BAD_INPUT)
    if every < 1:
        raise BridgeError("bad_job", f"--every must be 1 or more, not {every}", "", EXIT_BAD_INPUT)
    try:
        container = av.open(str(video))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise _unreadable(video, exc) from exc
    out: list[WorkingImage] = []
    with container:
        if not container.streams.video:
            raise BridgeError("bad_input", f"{video}: the file has no video stream", _HINT, EXIT_BAD_INPUT)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        total = int(stream.frames or 0)
        work_dir.mkdir(parents=True, exist_ok=True)
        index = -1
        try:
            for index, frame in enumerate(container.decode(stream)):
                if should_stop():
                    break
                if index % every == 0:
                    image = frame.to_image()
                    size = target_size(image.width, image.height, max_size)
                    dest = work_dir / f"frame_{index:06d}.jpg"
                    save_image(image, dest, size)
                    out.append(WorkingImage(dest.name, f"{video.name}#frame {index}", *size))
                on_progress(index + 1, total)
        except av.error.FFmpegError as exc:
            if not out:
                raise _unreadable(video, exc) from exc
            raise BridgeError(
                "bad_input", f"{video}: decoding failed at frame {index + 1}: {exc}", _HINT, EXIT_BAD_INPUT,
            ) from exc
    if index < 0:
        raise BridgeError("bad_input", f"{video}: no frame could be decoded", _HINT, EXIT_BAD_INPUT)
    if len(out) < MIN_PHOTOS and not should_stop():
        raise BridgeError(
            "bad_input",
            f"{video}: only {len(out)} frame(s) taken with --every {every} ({index + 1} in the video)",
            "Take frames more often (a smaller 'every N frames').", EXIT_BAD_INPUT,
        )
    return out


def _unreadable(video: Path, exc: Exception) -> BridgeError:
    return BridgeError("bad_input", f"{video}: cannot read this video ({exc})", _HINT, EXIT_BAD_INPUT)
