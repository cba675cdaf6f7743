"""Splitting a clip into independently rendered chunks, and hiding the seams between them.

Every frame warm-starts from the previous one, so a chunk that starts cold does not match the
end of the chunk before it. Each chunk therefore starts `overlap` frames early (its warm-up)
so its chain settles, and over those frames the final picture cross-fades from the previous
chunk's frames to this chunk's warm-up frames: the jump between two chains is spread over
`overlap + 1` frame pairs instead of landing on one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Chunk:
    """Frames [first, last) are this chunk's own; [first - warmup, first) only settle its chain."""

    first: int
    last: int
    warmup: int = 0

    @property
    def begin(self) -> int:
        return self.first - self.warmup

    def __str__(self) -> str:
        return f"frames {self.first}-{self.last - 1}"


def plan_chunks(start: int, end: int, size: int, overlap: int) -> list[Chunk]:
    """Chunks of `size` own frames covering [start, end); all but the first warm up `overlap` frames."""
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, got {size}")
    return [Chunk(first, min(first + size, end), min(overlap, first - start)) for first in range(start, end, size)]


def chunk_for_range(start: int, first: int, last: int, overlap: int) -> Chunk:
    """The chunk a farm task renders for its frame range (the clip's range starts at `start`)."""
    return Chunk(first, last, min(overlap, first - start))


def blend_weight(chunk: Chunk, index: int) -> float:
    """How much of `chunk`'s warm-up frame `index` the final frame takes: rising linearly
    from 1/(warmup+1) to warmup/(warmup+1), so the next frame (its first own) is the last step."""
    return (index - chunk.begin + 1) / (chunk.warmup + 1)


def blend(earlier: np.ndarray, warmup: np.ndarray, weight: float) -> np.ndarray:
    mixed = (1.0 - weight) * earlier.astype(np.float32) + weight * warmup.astype(np.float32)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
