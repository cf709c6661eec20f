"""The streaming KV cache: named segments ``prefix | sink | history`` and the visibility policy.

Keys are stored *before* RoPE, one tensor per layer and segment, shaped (batch, heads, frames, hw, head_dim).
Positions are never stored: every time the visible window changes, keys are rotated at their place in
it, laid out exactly like a training sequence:

    position:  0 .. P-1      P .. P+S-1     P+S .. P+S+H-1      then the query block
               prefix        sink           history (rolling)

so no position ever exceeds ``P + sink + window + block`` however long the stream runs, and the same
visible content gives the same output at frame 100 and at frame 10,000 (translation invariance).

The same policy (which earlier frames a block sees) builds the block-causal masks of training, so the
masked full-sequence pass and the cached block-by-block pass compute the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .rope import apply_rope, rope_rotation

SEGMENTS = ("prefix", "sink", "history")


class LayerCapture:
    """Collects the keys (pre-RoPE) and values each layer computes for the current frames."""

    def __init__(self) -> None:
        self.keys: dict[int, torch.Tensor] = {}
        self.values: dict[int, torch.Tensor] = {}

    def capture(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        self.keys[layer] = keys
        self.values[layer] = values

    @property
    def frames(self) -> int:
        return next(iter(self.keys.values())).shape[2] if self.keys else 0

    def frames_slice(self, start: int, stop: int) -> "LayerCapture":
        out = LayerCapture()
        for i in self.keys:
            out.capture(i, self.keys[i][:, :, start:stop], self.values[i][:, :, start:stop])
        return out


@dataclass(frozen=True)
class WindowPolicy:
    """Which committed frames a block sees: the first ``sink`` frames and the last ``window`` others."""

    sink: int
    window: int

    def visible(self, committed: int) -> list[int]:
        """Indices of earlier frames visible to a block when ``committed`` frames precede it."""
        sink = list(range(min(self.sink, committed)))
        return sink + list(range(max(self.sink, committed - self.window), committed))


def block_causal_mask(num_frames: int, block: int, policy: WindowPolicy, context_frames: int = 0,
                      teacher_forcing: bool = False) -> torch.Tensor:
    """Frame-level boolean mask (queries, context + keys) for a block-causal pass.

    Plain: ``num_frames`` frames in blocks; block j sees the context (the prefix), the frames the policy keeps
    before it, and itself. Teacher forcing: the sequence is ``[clean 0..N-1 | noisy 0..N-1]``; clean frames
    follow the plain rule, and noisy block j sees the context, the policy's clean frames before it and itself.
    """
    n = num_frames
    rows = 2 * n if teacher_forcing else n
    mask = torch.zeros(rows, context_frames + rows, dtype=torch.bool)
    mask[:, :context_frames] = True
    for start in range(0, n, block):
        stop = min(start + block, n)
        earlier = [context_frames + i for i in policy.visible(start)]
        for offset in ([0, n] if teacher_forcing else [0]):
            q = slice(offset + start, offset + stop)
            mask[q, earlier] = True
            mask[q, context_frames + offset + start: context_frames + offset + stop] = True
    return mask


class KVCache:
    """Bounded per-layer KV storage with segments ``prefix``, ``sink`` and ``history``.

    ``commit`` fills the sink first, then the rolling history (oldest evicted beyond ``window``), so memory is
    bounded by ``prefix + sink + window`` frames. ``context(layer)`` returns the visible keys rotated at their
    window positions plus values; it is memoised until the cache changes (all denoising steps of a block share
    it). ``extend`` appends a pass's own keys/values to it; without autograd it writes them into the tail of
    a per-layer buffer that already holds the context, so the context is not copied again at every step.
    """

    def __init__(self, num_layers: int, head_dim: int, grid: tuple[int, int], policy: WindowPolicy,
                 prefix_frames: int = 2) -> None:
        self.num_layers = num_layers
        self.head_dim = head_dim
        self.grid = grid  # (height, width) in tokens
        self.policy = policy
        self.prefix_frames = prefix_frames
        self.keys: dict[str, list[torch.Tensor | None]] = {s: [None] * num_layers for s in SEGMENTS}
        self.values: dict[str, list[torch.Tensor | None]] = {s: [None] * num_layers for s in SEGMENTS}
        self.committed_frames = 0  # frames committed since the stream (re)started, for bookkeeping
        # the prefix's reference latent (b, C, 1, h, w) for models that concatenate it to every frame
        # (ModelConfig.reference_channels); set with the prefix, None otherwise
        self.reference: torch.Tensor | None = None
        # per layer: buffers (keys, values) holding the rotated context in their first `n` tokens, and `n`
        self._memo: dict[int, tuple[torch.Tensor, torch.Tensor, int]] = {}
        self._rotation: torch.Tensor | None = None  # shared by all layers until the cache changes

    # -- inspection -------------------------------------------------------------------------------------------
    def frames(self, segment: str) -> int:
        k = self.keys[segment][0]
        return 0 if k is None else k.shape[2]

    @property
    def visible_frames(self) -> int:
        return sum(self.frames(s) for s in SEGMENTS)

    def query_positions(self, num_frames: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Temporal positions of the next block, right after the visible frames."""
        v = self.visible_frames
        return torch.arange(v, v + num_frames, device=device)

    def memory_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for store in (self.keys, self.values)
                   for seg in store.values() for t in seg if t is not None)

    def fork(self) -> "KVCache":
        """A cache that shares this one's frames (no copy) and changes apart from it: every mutation here
        replaces list entries rather than writing into tensors, so neither sees the other's later changes."""
        other = KVCache(self.num_layers, self.head_dim, self.grid, self.policy, self.prefix_frames)
        other.keys = {seg: list(layers) for seg, layers in self.keys.items()}
        other.values = {seg: list(layers) for seg, layers in self.values.items()}
        other.committed_frames = self.committed_frames
        other.reference = self.reference
        return other

    # -- mutation ---------------------------------------------------------------------------------------------
    def _changed(self) -> None:
        self._memo.clear()
        self._rotation = None

    def write(self, segment: str, capture: LayerCapture) -> None:
        """Replace a whole segment with captured keys/values."""
        for i in range(self.num_layers):
            self.keys[segment][i] = capture.keys[i]
            self.values[segment][i] = capture.values[i]
        self._changed()

    def set_prefix(self, capture: LayerCapture) -> None:
        """(Re)write the condition prefix (reference + garment), e.g. after a garment switch."""
        if capture.frames != self.prefix_frames:
            raise ValueError(f"prefix has {self.prefix_frames} frames, got {capture.frames}")
        self.write("prefix", capture)

    def history_capacity(self) -> int:
        """The window, plus any sink room left unused (a sink withdrawn at a switch is not refilled while
        history exists, since positions must stay in temporal order: prefix | sink | history)."""
        return self.policy.window + self.policy.sink - self.frames("sink")

    def commit(self, capture: LayerCapture, to_history: bool = False) -> None:
        """Append clean frames. While the history is empty, the sink fills first; the rest rolls through the
        history (oldest evicted). ``to_history`` skips the sink (frames re-cached after a switch)."""
        n = capture.frames
        room = self.policy.sink - self.frames("sink")
        to_sink = 0 if to_history or self.frames("history") else max(0, min(n, room))
        cap = self.history_capacity() - to_sink
        for i in range(self.num_layers):
            k, v = capture.keys[i], capture.values[i]
            if to_sink:
                self.keys["sink"][i] = _cat(self.keys["sink"][i], k[:, :, :to_sink])
                self.values["sink"][i] = _cat(self.values["sink"][i], v[:, :, :to_sink])
            if n > to_sink:
                hk = _cat(self.keys["history"][i], k[:, :, to_sink:])
                hv = _cat(self.values["history"][i], v[:, :, to_sink:])
                self.keys["history"][i] = hk[:, :, hk.shape[2] - min(cap, hk.shape[2]):]
                self.values["history"][i] = hv[:, :, hv.shape[2] - min(cap, hv.shape[2]):]
        self.committed_frames += n
        self._changed()

    def keep_history(self, frames: int) -> None:
        """Shrink the history to its last ``frames`` frames (0 drops it all)."""
        for i in range(self.num_layers):
            for store in (self.keys, self.values):
                t = store["history"][i]
                if t is not None:
                    store["history"][i] = t[:, :, t.shape[2] - min(frames, t.shape[2]):]
        self._changed()

    def clear(self, segment: str) -> None:
        self.keys[segment] = [None] * self.num_layers
        self.values[segment] = [None] * self.num_layers
        self._changed()

    def reset(self) -> None:
        for s in SEGMENTS:
            self.clear(s)
        self.committed_frames = 0
        self.reference = None

    # -- reading (the model's KVContext) ---------------------------------------------------------------------------
    def context(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Visible keys rotated at their window positions, and values, each (batch, heads, tokens, head_dim)."""
        k, v, n = self._layer_memo(layer)
        return k[:, :, :n], v[:, :, :n]

    def extend(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The visible context followed by ``keys``/``values`` (the pass's own, keys already rotated)."""
        if torch.is_grad_enabled() and (keys.requires_grad or values.requires_grad):
            ck, cv = self.context(layer)     # autograd: no in-place writes into a shared buffer
            return torch.cat([ck.to(keys.dtype), keys], 2), torch.cat([cv.to(values.dtype), values], 2)
        k, v, n = self._layer_memo(layer, keys.shape[2], keys.dtype)
        k[:, :, n:] = keys
        v[:, :, n:] = values
        return k, v

    def _layer_memo(self, layer: int, tail: int | None = None,
                    dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The layer's buffers with room for ``tail`` more tokens after the context (any room if None; rebuilt
        when the room or the dtype differs; the tail is scratch space)."""
        memo = self._memo.get(layer)
        if memo is not None and tail in (None, memo[0].shape[2] - memo[2]) and dtype in (None, memo[0].dtype):
            return memo
        if memo is not None:
            ck, cv, n = memo[0][:, :, :memo[2]], memo[1][:, :, :memo[2]], memo[2]
        else:
            ks = [self.keys[s][layer] for s in SEGMENTS if self.keys[s][layer] is not None]
            vs = [self.values[s][layer] for s in SEGMENTS if self.values[s][layer] is not None]
            if not ks:
                raise RuntimeError("the KV cache is empty: prefill the condition prefix first")
            k, v = torch.cat(ks, dim=2), torch.cat(vs, dim=2)
            b, h, f, hw, d = k.shape
            if self._rotation is None:      # every layer sees the same f frames until the cache changes
                self._rotation = rope_rotation(torch.arange(f), *self.grid, self.head_dim).to(k.device)
            ck, cv, n = apply_rope(k.reshape(b, h, f * hw, d), self._rotation), v.reshape(b, h, f * hw, d), f * hw
        dtype, tail = dtype or ck.dtype, tail or 0
        k = ck.new_empty(ck.shape[:2] + (n + tail, ck.shape[3]), dtype=dtype)
        v = cv.new_empty(cv.shape[:2] + (n + tail, cv.shape[3]), dtype=dtype)
        k[:, :, :n], v[:, :, :n] = ck, cv
        self._memo[layer] = (k, v, n)
        return self._memo[layer]


def _cat(a: torch.Tensor | None, b: torch.Tensor) -> torch.Tensor:
    return b if a is None else torch.cat([a, b], dim=2)
