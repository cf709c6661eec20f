"""H.264 through PyAV: whole mp4 files (written under a temporary name, renamed when complete) and the
short chunk files a streaming player consumes (each starts on a keyframe)."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np

AI_LABEL = "AI-generated with FashionChameleon"


def _even(frames: np.ndarray) -> np.ndarray:
    h, w = frames.shape[1:3]
    return frames[:, : h - h % 2, : w - w % 2]


def upscale(frames: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling (crisp pixels, no blur) of (T, H, W, 3) frames."""
    if factor <= 1:
        return frames
    return frames.repeat(factor, axis=1).repeat(factor, axis=2)


def write_mp4(frames: np.ndarray, path: str | os.PathLike, fps: float = 16, crf: int = 18,
              metadata: dict[str, str] | None = None) -> Path:
    """Write uint8 (T, H, W, 3) frames as H.264 mp4; the file appears only when complete."""
    import av

    path = Path(path)
    frames = _even(np.asarray(frames, dtype=np.uint8))
    if frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
        raise ValueError(f"expected (T, H, W, 3) uint8 frames, got {frames.shape}")
    tmp = path.with_name(f".{path.name}.partial.mp4")
    try:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            for k, v in {"comment": AI_LABEL, **(metadata or {})}.items():
                container.metadata[k] = v
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf), "preset": "veryfast"}
            for f in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_frames(path: str | os.PathLike) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def encode_segment(frames: np.ndarray, fps: float, path: str | os.PathLike | None = None, crf: int = 20,
                   container_format: str = "mpegts") -> bytes:
    """One self-contained H.264 segment (starts on a keyframe) for a streaming player; also written to
    ``path`` when given. Returns the encoded bytes."""
    import io

    import av

    frames = _even(np.asarray(frames, dtype=np.uint8))
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container_format) as container:
        container.metadata["comment"] = AI_LABEL
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "ultrafast", "tune": "zerolatency",
                          "g": str(max(1, len(frames))), "keyint_min": "1"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = buf.getvalue()
    if path is not None:
        tmp = Path(path).with_name(f".{Path(path).name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return data
