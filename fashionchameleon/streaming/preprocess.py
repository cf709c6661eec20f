"""Input images: any size, RGBA, grayscale, 16-bit, EXIF rotation; clear errors for everything else.

The person image is resized and centre-cropped (it is a frame of the video); the garment image is padded
on white to a square (it is a product photo) and resized.
"""

from __future__ import annotations

import io
import os
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
        with Image.open(io.BytesIO(data)) as im:
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
