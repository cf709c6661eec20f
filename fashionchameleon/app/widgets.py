"""Gradio components the app needs beyond the stock ones."""

from __future__ import annotations

import base64
import binascii
import hashlib
from pathlib import Path

import gradio as gr

MAX_DATA_URL_BYTES = 10 * 1024 * 1024     # the same limit as uploads (launch's max_file_size)


class ImageFile(gr.Image):
    """An image input handed to the handler as the uploaded file's path, NOT decoded.

    Stock ``gr.Image`` opens (and for most modes decodes) the upload before the app sees it: a 13,000 x
    13,000 PNG of half a megabyte costs gigabytes there, and a broken file ends in Gradio's generic error.
    Here the handler gets the path and decodes it with the project's loader (pixel limit first, clear
    messages, EXIF). Inline ``data:`` URLs are written to the cache as bytes, still undecoded."""

    # No __init__ of its own: Gradio builds a component's browser config from its constructor's signature.
    # Create it with type="filepath" (what the API reports); preprocess returns a path whatever the type.

    def get_block_name(self) -> str:
        return "image"          # the browser side is the stock image component

    def preprocess(self, payload) -> str | None:
        if payload is None:
            return None
        if payload.url and payload.url.startswith("data:"):
            return self._data_url_to_file(payload.url)
        if payload.path is None:
            raise gr.Error("The image upload is empty.", print_exception=False)
        return str(payload.path)

    def _data_url_to_file(self, url: str) -> str:
        head, _, data = url.partition(",")
        if ";base64" not in head or len(data) > MAX_DATA_URL_BYTES * 4 // 3 + 4:
            raise gr.Error("The inline image is not base64 or is larger than 10 MB.", print_exception=False)
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise gr.Error("The inline image is not valid base64.", print_exception=False) from None
        folder = Path(self.GRADIO_CACHE) / "inline-images"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{hashlib.sha256(raw).hexdigest()[:32]}.img"
        path.write_bytes(raw)
        return str(path)
