"""Splitting a clip into independently rendered chunks.

Every frame warm-starts from the previous one, so a chunk that starts cold does not match the
end of the chunk before it. Each chunk therefore starts `overlap` frames early (its warm-up):
its chain settles before its own frames, and the stitch of the border (stitch.py) has the
later chain's frames over the overlap to aim at. Its chain starts from the range's first frame,
rendered cold as the first chunk renders it and carried along the flow (chain.shared_start), so
the chains on both sides of a border place their strokes alike.
"""
from __future__ import annotations

from dataclasses import dataclass


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
