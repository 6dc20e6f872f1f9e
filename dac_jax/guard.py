"""Exact codes from the fast (Winograd) encoder: check each code, recompute the doubtful ones.

The Winograd convolutions (:mod:`dac_jax.nn.winograd`) compute the encoder's output ``z`` with a
float32 error ``dz`` the direct convolutions do not have. A code changes only if that error moves
the quantiser's encoding across the boundary between its nearest codeword and another. The bound
(derived in :func:`dac_jax.nn.quantize.nearest_code_checked`): each quantiser stage's input is
the direct path's plus ``dz`` (while the stages before agree), its in-projection stretches that by
at most its operator norm ``W``, normalising by at most ``2 / |z_e|``, and a score difference
``s_j - s_k`` by at most ``2 |c_j - c_k|`` per unit of the normalised encoding. So code ``j``
holds whenever, for every other row ``k``,

    s_j - s_k  >  2 |c_j - c_k| * 2 W |dz| / |z_e|  +  score rounding.

``|dz|`` is not known without the direct path. It is bounded per item as ``rho * max_t |z_t|``, with
``rho`` measured for this model when the fast path is switched on (:func:`calibrate`: both paths
on a fixed calibration signal, the largest stage-input error over its frames) times
:data:`SAFETY`. Frames whose codes fail the test (their ``slack``) are recomputed with the direct
path on a short crop around them that holds their whole receptive field; on XLA's CPU backend a
frame's direct encoding on such a crop is bit for bit its encoding in the full window (tested), so
the codes are the direct path's exactly. :class:`GuardStats` counts how often that runs.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Optional

import numpy as np

#: Safety factor on the calibrated error bound (the calibration signal is not the user's audio).
SAFETY = 10.0
#: Float32 rounding of a score ``-|e - c|^2`` of unit vectors and of a difference of two: a few
#: ulps of 1 (6e-8) each; eight times that.
SCORE_TOLERANCE = 4e-6
#: Frames of each recomputed crop beyond the receptive field's context on both sides: neighbouring
#: doubtful frames share a crop.
CROP_EXTRA = 8
#: Crops recomputed per call of the direct encoder (a fixed shape: one compilation).
CROP_BATCH = 4


@dataclasses.dataclass
class GuardStats:
    """How often the guard recomputed codes with the direct path, since the model was loaded
    (or the counters were reset with :meth:`reset`)."""

    items: int = 0  # windows or chunks encoded on the fast path
    frames: int = 0  # their frames
    flagged_frames: int = 0  # frames whose codes were doubtful
    crops: int = 0  # crops recomputed with the direct path
    crop_frames: int = 0  # the frames those crops encoded (the fallback's cost, in frames)
    whole_items: int = 0  # items too short for a crop, recomputed whole
    seconds: float = 0.0  # wall time of the fallback
    changed_codes: int = 0  # codes the fallback changed (the fast path's would-be errors)

    def reset(self) -> None:
        for field in dataclasses.fields(self):
            setattr(self, field.name, type(field.default)())

    @property
    def flagged_fraction(self) -> float:
        return self.flagged_frames / self.frames if self.frames else 0.0

    @property
    def cost_fraction(self) -> float:
        """The fallback's frames as a fraction of the frames encoded on the fast path."""
        return self.crop_frames / self.frames if self.frames else 0.0


def calibration_signal(sample_rate: int, seconds: float = 2.0) -> np.ndarray:
    """A fixed signal with what stresses the error: silence, a tone, a chirp, white and quiet
    noise, loud and soft: ``[1, 1, samples]`` float32."""
    n = int(sample_rate * seconds)
    t = np.arange(n) / sample_rate
    rng = np.random.default_rng(0)
    parts = np.array_split(np.arange(n), 5)
    x = np.zeros(n)
    x[parts[1]] = 0.5 * np.sin(2 * np.pi * 440 * t[parts[1]])
    x[parts[2]] = 0.5 * np.sin(2 * np.pi * (100 + 4000 * t[parts[2]]) * t[parts[2]])
    x[parts[3]] = 0.3 * rng.standard_normal(len(parts[3]))
    x[parts[4]] = 0.01 * rng.standard_normal(len(parts[4]))
    return x.astype(np.float32)[None, None]


def calibrate(run: Callable[[str], tuple[np.ndarray, np.ndarray, np.ndarray]]) -> float:
    """``rho``: the largest stage-input error of the fast path relative to the item's largest
    frame norm on :func:`calibration_signal`, times :data:`SAFETY`.

    ``run(path)`` (``"direct"`` or ``"fast"``) encodes that signal and returns ``(codes [N, T],
    stage inputs [N, T, D], max frame norm)``. Stages after a code that differs are left out:
    their inputs differ by a codeword, not by rounding.
    """
    codes_d, inputs_d, scale = run("direct")
    codes_f, inputs_f, _ = run("fast")
    return SAFETY * stage_input_error(codes_d, inputs_d, codes_f, inputs_f) / max(float(scale), 1e-30)


def stage_input_error(codes_a: np.ndarray, inputs_a: np.ndarray, codes_b: np.ndarray, inputs_b: np.ndarray) -> float:
    """The largest l2 difference between two encodings' quantiser stage inputs (``codes [..., N, T]``,
    ``inputs [..., N, T, D]``), over the stages whose earlier codes agree: after a code that
    differs, the inputs differ by a codeword, not by rounding."""
    agree = np.cumprod(codes_a == codes_b, axis=-2).astype(bool)
    same_input = np.concatenate([np.ones_like(agree[..., :1, :]), agree[..., :-1, :]], axis=-2)
    return float(np.linalg.norm(inputs_b - inputs_a, axis=-1)[same_input].max(initial=0.0))


def crops_for(flagged: np.ndarray, total: int, length: int, context: int) -> list[int]:
    """Start frames of crops of ``length`` frames that cover the ``flagged`` frames (sorted) of an
    item of ``total`` frames (``length <= total``), each flagged frame with ``context`` frames on
    both sides inside the crop or the item's own edge there (padded mode: the item's first and last
    frames see its zero padding, and so do a crop's at the same edge). Unpadded, ``context`` is 0:
    a crop's input already holds every frame's receptive field."""
    starts: list[int] = []
    for t in flagged:
        if starts and exact_in_crop(int(t), starts[-1], length, total, context):
            continue
        starts.append(min(max(int(t) - context, 0), total - length))
    return starts


def exact_in_crop(t: int, start: int, length: int, total: int, context: int) -> bool:
    """Whether frame ``t`` of an item of ``total`` frames is exact in the crop at ``start``."""
    left = t - start >= context or start == 0
    right = start + length - 1 - t >= context or start + length == total
    return start <= t < start + length and left and right


def recompute(
    codes: np.ndarray, flagged: np.ndarray, audio: np.ndarray, valid: np.ndarray, frames: np.ndarray,
    hop: int, context: int, crop_samples: int, direct: Callable[..., np.ndarray], stats: GuardStats,
) -> None:
    """Replace the ``flagged [B, T]`` codes of ``codes [B, N, T]`` (in place) by the direct path's.

    ``audio [B, 1, S]`` is what was encoded, ``valid [B]`` each item's samples (zeros are encoded
    past them) and ``frames [B]`` its frames. ``direct(x, lengths)`` encodes with the direct
    convolutions, in the fast path's mode: crops ``[CROP_BATCH, 1, crop_samples]`` (``lengths``
    None) of ``2 * context + 1 + CROP_EXTRA`` frames, or one whole item ``[1, 1, S]`` (``lengths``
    its valid samples) when it is not longer than a crop.
    """
    began = time.perf_counter()
    length = 2 * context + 1 + CROP_EXTRA
    jobs: list[tuple[int, int]] = []  # (item, start frame)
    for b in np.flatnonzero(flagged.any(axis=1)):
        total = int(frames[b])
        where = np.flatnonzero(flagged[b, :total])
        if not len(where):
            continue
        stats.flagged_frames += len(where)
        if total <= length:
            fixed = np.asarray(direct(audio[b : b + 1], valid[b : b + 1]))[0, :, :total]
            stats.changed_codes += int(np.sum(fixed != codes[b, :, :total]))
            codes[b, :, :total] = fixed
            stats.whole_items += 1
            stats.crop_frames += total
            continue
        jobs.extend((int(b), start) for start in crops_for(where, total, length, context))
    for k in range(0, len(jobs), CROP_BATCH):
        group = jobs[k : k + CROP_BATCH]
        stack = np.zeros((CROP_BATCH, 1, crop_samples), np.float32)
        for j, (b, start) in enumerate(group):
            piece = audio[b, 0, start * hop : min(start * hop + crop_samples, int(valid[b]))]
            stack[j, 0, : len(piece)] = piece
        out = np.asarray(direct(stack, None))
        for j, (b, start) in enumerate(group):
            keep = [t for t in np.flatnonzero(flagged[b, start : start + length]) + start
                    if exact_in_crop(int(t), start, length, int(frames[b]), context)]
            fixed = out[j][:, np.asarray(keep) - start]
            stats.changed_codes += int(np.sum(fixed != codes[b][:, keep]))
            codes[b][:, keep] = fixed
        stats.crops += len(group)
        stats.crop_frames += len(group) * length
    stats.seconds += time.perf_counter() - began


class CheckedCodes:
    """The fast path's codes of a batch, fixed by the direct path where doubtful when first read
    (``np.asarray``): until then the device computes on, as the batch loop expects of codes."""

    def __init__(self, codes, unsafe, fix: Callable[[np.ndarray, np.ndarray], None]):
        self._codes, self._unsafe, self._fix = codes, unsafe, fix
        self._value: Optional[np.ndarray] = None

    @property
    def shape(self) -> tuple:
        return tuple(self._codes.shape)

    def __array__(self, dtype=None, copy=None):
        if self._value is None:
            codes = np.array(self._codes)
            self._fix(codes, np.asarray(self._unsafe))
            self._value = codes
            self._codes = self._unsafe = None
        return self._value if dtype is None else self._value.astype(dtype)
