"""Chunk plans: which samples and frames each chunk covers. Plain Python, no JAX.

Two plans, one per mode:

**Faithful** (the original's ``compress``, DAC_SPEC section 3). The signal is zero-padded by
``delay`` on both sides; chunks of ``n_samples`` (the window rounded up to whole hops) start every
``hop = output_length(n_samples)`` samples, for ``i in range(0, length, hop)`` over the *unpadded*
length; each chunk is encoded in unpadded mode into ``frames_per_chunk`` frames. Neighbouring
chunks overlap by ``2 * delay`` samples, so the codes carry redundant frames::

    padded signal  |<delay>|================ signal ================|<delay>|
    chunk 0        [---------- n_samples ----------]
    chunk 1                 [---------- n_samples ----------]
                   |<- hop->|

**Independent** (window-independent). Frame ``k`` covers samples ``[k * hop, (k + 1) * hop)`` of the
whole signal, exactly as whole-file padded-mode encoding. Each chunk owns ``frames`` frames and is
computed in padded mode from a window with ``context`` extra frames on each side, so that no
frame it keeps can see the window's edge; windows are shifted inward at the file edges (where the
true edge is the window edge) so that every window has the same length::

    frames     0                    k0          k0 + F                  total
    window               [ context |  kept F  | context ]
    first      [  kept F  | context | context ]                # shifted, same length

**Covering frames** (window-independent files). The original's ``decompress`` decodes, resamples
to the file's rate, crops to ``original_length`` without padding, then reshapes to exactly that
length. The 16 and 24 kHz decoders give ``320 * frames - 8`` samples, fewer than the ``320 * frames``
a whole number of frames holds, so a file of ``ceil(length / 320)`` frames crashes it whenever
``length % 320`` is 0 or above 312 (model-rate input; resampled inputs, about as often, and for the
44 kHz models too, 0.2 % of 48 kHz lengths, where resampling there and back loses a sample).
:func:`covering_frames` says how many frames a file needs instead (one more, there)::

    signal     |================ length ================|
    T frames   |=============== 320 T - 8 ==========|      -> too short: the original crashes
    T+1 frames |=============== 320 T + 312 ===================|   cropped to length
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np

from dac_jax.errors import AudioError


@dataclasses.dataclass(frozen=True)
class FaithfulPlan:
    """The original's chunking of ``length`` samples (at the model rate)."""

    length: int  # samples of the (resampled) signal, before the delay padding
    padded: bool  # True: one padded-mode pass over the whole signal (it fits in the window)
    n_samples: int  # chunk length in samples (the whole signal when padded)
    hop: int  # samples between chunk starts
    delay: int  # zero padding on each side (0 when padded)
    frames_per_chunk: int  # the file's chunk_length

    @property
    def n_chunks(self) -> int:
        return len(range(0, self.length, self.hop))

    def starts(self) -> range:
        """Chunk start offsets into the delay-padded signal."""
        return range(0, self.length, self.hop)


def faithful_plan(
    length: int,
    sample_rate: int,
    hop_length: int,
    win_duration: float | None,
    delay: int,
    output_length: Callable[[int], int],
    encoder_frames: Callable[[int], int],
) -> FaithfulPlan:
    """Plan the original's chunked compression of ``length`` samples.

    ``output_length`` is the model's unpadded length arithmetic; ``encoder_frames(n)`` the unpadded
    encoder's frames for ``n`` samples. Raises :class:`AudioError` for a window so small that
    the chunk hop would not be positive (the original fails there), naming the smallest window
    that works.
    """
    if length < 1:
        raise AudioError("the signal is empty")
    if win_duration is None or length / sample_rate <= win_duration:
        frames = math.ceil(length / hop_length)
        return FaithfulPlan(length, True, length, length, 0, frames)
    n_samples = math.ceil(int(win_duration * sample_rate) / hop_length) * hop_length
    hop = output_length(n_samples)
    if hop <= 0:
        smallest = n_samples
        while output_length(smallest) <= 0:
            smallest += hop_length
        # the least window w with ceil(int(w * sr) / hop_length) * hop_length == smallest
        window = (smallest - hop_length + 1) / sample_rate
        raise AudioError(
            f"a window of {win_duration} s is too small for this model: chunks of {n_samples} samples "
            f"lose all their samples to context (hop {hop}); use --win_duration {math.ceil(window * 100) / 100} or more"
        )
    return FaithfulPlan(length, False, n_samples, hop, delay, encoder_frames(n_samples))


def resampled_length(length: int, old_sr: int, new_sr: int) -> int:
    """Samples the original's ``AudioSignal.resample`` returns for ``length`` samples.

    ``julius.resample_frac`` reduces the rates by their gcd and keeps
    ``floor(float32(new * length / old))`` samples: the quotient is computed in float64 and then
    rounded to float32 by ``torch.as_tensor``, so above 2**24 output samples the result can exceed
    the exact floor by a few samples. Equal rates return ``length`` unchanged.
    """
    if old_sr == new_sr:
        return int(length)
    g = math.gcd(old_sr, new_sr)
    old, new = old_sr // g, new_sr // g
    return int(math.floor(np.float32(new * length / old)))


def covering_frames(frames: int, original_length: int, decoder_samples: Callable[[int], int], model_rate: int,
                    file_rate: int) -> int:
    """The least frame count ``>= frames`` whose decoding covers ``original_length`` samples.

    ``decoder_samples(n)``: samples that decoding ``n`` frames in padded mode gives at ``model_rate``;
    the original's ``decompress`` resamples them to ``file_rate`` (:func:`resampled_length`) and
    crops to ``original_length``, which they must not fall short of. ``frames`` itself, or
    ``frames + 1`` where the decoding falls short (see the module docstring).
    """
    n = frames
    while resampled_length(decoder_samples(n), model_rate, file_rate) < original_length:
        n += 1
    return n


@dataclasses.dataclass(frozen=True)
class IndependentPlan:
    """Window-independent chunking of ``total`` frames (see the module docstring).

    ``window`` frames are computed per chunk and ``frames`` of them are kept. Chunk ``i`` keeps
    frames ``[i * frames, min((i + 1) * frames, total))``; its window starts at frame ``window_start(i)``,
    and the kept frames begin ``offset(i)`` frames into the window. When ``total <= window`` a
    single window covers everything (``window == total``).
    """

    total: int  # frames of the whole signal
    frames: int  # frames kept per chunk
    context: int  # frames of context on each side
    window: int  # frames computed per chunk (frames + 2 * context, or total)

    @property
    def n_chunks(self) -> int:
        return math.ceil(self.total / self.frames)

    def kept(self, i: int) -> tuple[int, int]:
        return i * self.frames, min((i + 1) * self.frames, self.total)

    def window_start(self, i: int) -> int:
        start = i * self.frames - self.context
        return max(0, min(start, self.total - self.window))

    def offset(self, i: int) -> int:
        return i * self.frames - self.window_start(i)


def independent_plan(total: int, frames: int, context: int) -> IndependentPlan:
    if total < 1:
        raise AudioError("the signal is empty")
    if frames < 1 or context < 0:
        raise ValueError(f"frames must be >= 1 and context >= 0; got {frames}, {context}")
    window = frames + 2 * context
    if total <= window:
        return IndependentPlan(total, total, 0, total)
    return IndependentPlan(total, frames, context, window)
