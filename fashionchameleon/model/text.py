"""Prompt embeddings for the real shapes: umT5 through transformers, from a local folder, cached so the
streaming loop never runs the text encoder per block (a session embeds its prompt once)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

DOWNLOAD_HINT = ("download Wan's text encoder, e.g. `huggingface-cli download Wan-AI/Wan2.1-T2V-1.3B-Diffusers "
                 "--include 'text_encoder/*' 'tokenizer/*' --local-dir ./wan2.1` on a machine with network access, "
                 "and pass ./wan2.1 (a folder with text_encoder/ and tokenizer/, or one holding both)")


class PromptEncoder:
    """umT5 encoder + tokenizer from a local folder; ``encode(prompt)`` -> (1, max_length, dim), cached."""

    def __init__(self, folder: str | os.PathLike, *, max_length: int = 512, device: str = "cpu",
                 dtype: torch.dtype = torch.float32):
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such folder; {DOWNLOAD_HINT}")
        enc_dir = folder / "text_encoder" if (folder / "text_encoder").is_dir() else folder
        tok_dir = folder / "tokenizer" if (folder / "tokenizer").is_dir() else folder
        try:
            from transformers import AutoTokenizer, UMT5EncoderModel
        except ImportError as e:  # pragma: no cover
            raise ImportError("the prompt encoder needs `transformers` (pip install transformers)") from e
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
            self.encoder = UMT5EncoderModel.from_pretrained(str(enc_dir), local_files_only=True,
                                                            torch_dtype=dtype).to(device).eval()
        except (OSError, ValueError) as e:
            raise FileNotFoundError(f"{folder}: no usable umT5 encoder/tokenizer ({e}); {DOWNLOAD_HINT}") from None
        self.max_length, self.device = max_length, device
        self._cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def encode(self, prompt: str) -> torch.Tensor:
        """Padded token embeddings, zeroed past the prompt's length (as Wan does)."""
        if prompt not in self._cache:
            tok = self.tokenizer([prompt], padding="max_length", max_length=self.max_length, truncation=True,
                                 return_tensors="pt")
            ids, mask = tok.input_ids.to(self.device), tok.attention_mask.to(self.device)
            out = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            self._cache[prompt] = out * mask[..., None].to(out.dtype)
        return self._cache[prompt]

    def __len__(self) -> int:
        return len(self._cache)
