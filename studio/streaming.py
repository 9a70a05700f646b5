"""Hearing a clip while it is generated: its codes through the codec in chunks, as the frames arrive.

EnCodec's decoder is not causal: its convolutions look a few frames ahead, and its LSTM carries state from the start.
So a chunk of frames [a, b) is decoded from the window [a - CONTEXT, b + LOOKAHEAD) and cut to [a, b): LOOKAHEAD frames
cover the convolutions' reach to the right, CONTEXT frames let the LSTM's state settle to what it is in one decode
of the whole clip. The joins are then inaudible: the chunks equal the one-shot decode within float tolerance
(tests/studio/test_streaming.py measures it on a trained and a musicgen-small-shaped codec). A chunk waits for
LOOKAHEAD frames after it, except the clip's last one.

The first chunk is short, so that the first sound comes soon after Generate; later ones are longer, since each decode
pays for its context.
"""

from __future__ import annotations

import numpy as np
import torch

from studio.model import LoadedModel

CONTEXT = 50  # frames before a chunk that its decode sees (1 s at 50 Hz): the LSTM forgets the cut by then
LOOKAHEAD = 5  # frames after a chunk that its decode sees: more than the convolutions reach
FIRST_CHUNK = 10  # frames (0.2 s): the first sound, soon
CHUNK = 25  # frames (0.5 s) of each later chunk


class AudioStream:
    """Feed it the codes of the frames made so far (``push``); it returns the audio of the frames it can now decode
    exactly, each sample once, in order. ``push(codes, last=True)`` returns the rest."""

    def __init__(self, loaded: LoadedModel, first_chunk: int = FIRST_CHUNK, chunk: int = CHUNK):
        self.loaded, self.first_chunk, self.chunk = loaded, first_chunk, chunk
        self.done = 0  # frames whose audio was returned
        self.hop = loaded.sample_rate // loaded.frame_rate

    def due(self, frames: int, last: bool = False) -> bool:
        """Whether pushing the first `frames` frames of the clip would return audio (a cheap check before reading
        them off the device)."""
        end = frames if last else frames - LOOKAHEAD
        return end - self.done >= (self.first_chunk if self.done == 0 else self.chunk) or (last and end > self.done)

    def push(self, codes: torch.Tensor, last: bool = False) -> np.ndarray | None:
        """`codes` [K, F]: every frame made so far (a prefix of the clip). Audio float32 [samples] or None."""
        frames = int(codes.shape[-1])
        if not self.due(frames, last):
            return None
        end = frames if last else frames - LOOKAHEAD
        start = max(0, self.done - CONTEXT)
        audio = self.loaded.decode_codes(codes[:, start : min(frames, end + LOOKAHEAD)])
        out = audio[(self.done - start) * self.hop : (end - start) * self.hop]
        self.done = end
        return out
