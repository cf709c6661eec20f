"""Image and video I/O shared by every layer (data, streaming, app, CLIs).

Images: any size, RGBA, grayscale, 16-bit, EXIF rotation; clear errors for everything else, and a pixel
limit checked from the header before anything is decoded. The person image is resized and centre-cropped (it
is a frame of the video); the garment image is padded on white to the frame's aspect (a product photo).

Video: H.264 through PyAV, whole mp4 files (written under a temporary name, renamed when complete) and the
short chunk files a streaming player consumes (each starts on a keyframe).
"""

from __future__ import annotations

import io
import os
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 40_000_000     # larger images are refused as decompression bombs
MIN_SIDE = 8


class InputImageError(ValueError):
    """An input image that cannot be used; the message names the problem."""


def load_image(src, name: str | None = None) -> np.ndarray:
    """RGB uint8 (H, W, 3) from a path, bytes, a PIL image or an array."""
    label = name or (str(src) if isinstance(src, (str, os.PathLike)) else "image")
    if isinstance(src, np.ndarray):
        return _from_array(src, label)
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if not path.is_file():
            raise InputImageError(f"{label}: no such file")
        data = path.read_bytes()
    elif isinstance(src, (bytes, bytearray)):
        data = bytes(src)
    elif isinstance(src, Image.Image):
        return _from_pil(src, label)
    else:
        raise InputImageError(f"{label}: unsupported input type {type(src).__name__}")
    try:
        with warnings.catch_warnings():     # Pillow warns on large headers; the limit below is ours
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
        with im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise InputImageError(f"{label}: {w}x{h} pixels is too large (limit {MAX_PIXELS:,}; "
                                      "a decompression bomb?)")
            im.load()
            return _from_pil(im, label)
    except InputImageError:
        raise
    except UnidentifiedImageError:
        raise InputImageError(f"{label}: not an image (unrecognised format)") from None
    except Image.DecompressionBombError:
        raise InputImageError(f"{label}: too many pixels (a decompression bomb?)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputImageError(f"{label}: corrupt or truncated image ({e})") from None


def _from_pil(im: Image.Image, label: str) -> np.ndarray:
    if im.width * im.height > MAX_PIXELS:
        raise InputImageError(f"{label}: {im.width}x{im.height} pixels is too large (limit {MAX_PIXELS:,})")
    im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        im = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
    elif im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        im = Image.fromarray(np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0) + 0.5, 0, 255).astype(np.uint8))
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    im = im.convert("RGB")
    if min(im.size) < MIN_SIDE:
        raise InputImageError(f"{label}: {im.width}x{im.height} is too small (at least {MIN_SIDE} pixels a side)")
    return np.asarray(im, dtype=np.uint8).copy()


def _from_array(a: np.ndarray, label: str) -> np.ndarray:
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
        raise InputImageError(f"{label}: array of shape {a.shape} is not an image")
    if a.dtype == np.uint16:
        a = (a.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)
    elif a.dtype != np.uint8:
        a = np.clip(a.astype(np.float64) * (255.0 if a.max() <= 1.0 else 1.0) + 0.5, 0, 255).astype(np.uint8)
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, -1)
    if a.shape[-1] == 4:
        alpha = a[..., 3:].astype(np.float64) / 255.0
        a = (a[..., :3] * alpha + 255.0 * (1 - alpha) + 0.5).astype(np.uint8)
    if min(a.shape[:2]) < MIN_SIDE:
        raise InputImageError(f"{label}: {a.shape[1]}x{a.shape[0]} is too small (at least {MIN_SIDE} pixels a side)")
    return np.ascontiguousarray(a)


def fit_person(img: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize so the image covers (W, H) and centre-crop."""
    w, h = (size, size) if isinstance(size, int) else size
    ih, iw = img.shape[:2]
    scale = max(w / iw, h / ih)
    nw, nh = max(w, round(iw * scale)), max(h, round(ih * scale))
    im = Image.fromarray(img).resize((nw, nh), Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC)
    x0, y0 = (nw - w) // 2, (nh - h) // 2
    return np.asarray(im.crop((x0, y0, x0 + w, y0 + h)), dtype=np.uint8)


def fit_garment(img: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Pad on white to the target aspect ratio, then resize (the whole garment stays visible)."""
    w, h = (size, size) if isinstance(size, int) else size
    ih, iw = img.shape[:2]
    scale = min(w / iw, h / ih)
    nw, nh = max(1, round(iw * scale)), max(1, round(ih * scale))
    im = Image.fromarray(img).resize((nw, nh), Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (w, h), (255, 255, 255))
    canvas.paste(im, ((w - nw) // 2, (h - nh) // 2))
    return np.asarray(canvas, dtype=np.uint8)


# -- video -------------------------------------------------------------------------------------------------------

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
