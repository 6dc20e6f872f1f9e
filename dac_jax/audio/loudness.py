"""Integrated loudness (ITU-R BS.1770) exactly as the original measures it, and its gain helpers.

The original DAC measures ``input_db = AudioSignal.loudness()`` (audiotools 0.7.2,
``audiotools/core/loudness.py``) and normalises with ``AudioSignal.normalize(db)`` and
``ensure_max_of_audio()``. On CPU, which is where compress/decompress run, audiotools computes:

1. **Short signals**: a signal shorter than 0.5 s is zero-padded at the end by
   ``int((0.5 - T/sr) * sr)`` samples BEFORE filtering (the filters ring into the padding).
2. **K-weighting**: pyloudnorm's two RBJ-cookbook biquads, a high shelf (+4 dB, Q=1/sqrt 2,
   1500 Hz) then a high pass (Q=0.5, 38 Hz), designed in float64 for the signal's rate, rounded to
   float32 (``torch.from_numpy(b).float()``), applied as IIR filters from rest
   (``torchaudio.functional.lfilter``, clamp=False; in this environment torchaudio's compiled
   extension is absent and it runs its pure-Python sample loop, which is why it is slow). Passband
   gain 1. Each channel of each item is filtered on its own.
3. **Blocks**: ``K = int(0.4 * sr)`` samples, stride ``S = int(0.4 * sr * 0.25)``,
   ``1 + ceil((max(T, K) - K) / S)`` blocks (julius ``unfold``: the end is zero-padded, after
   filtering, so that every sample is covered); block energy ``z = sum(y**2) / (0.4 * sr)``.
4. **Gating**, per item, channel gains ``G = (1, 1, 1, 1.41, 1.41)`` (so at most 5 channels):
   block loudness ``l = -0.691 + 10 log10(sum_c G_c z_c)``; absolute gate ``l > -70`` (strict);
   ``Gamma_r = -0.691 + 10 log10(sum_c G_c mean_abs(z_c)) - 10``; relative gate ``l > Gamma_r``
   (strict) as well; ``LUFS = -0.691 + 10 log10(sum_c G_c mean_gated(z_c))``. An empty gate
   (silence) gives the mean 0/0 = NaN, set to 0, so LUFS = -inf.
5. **Floor**: ``max(LUFS, -70)``: silence and anything quieter measure exactly -70.0.
   Input ``[B, C, T]`` gives ``[B]`` (``[C, T]`` and ``[T]`` are one item, as AudioSignal does).

We do the same in float64 numpy/scipy (``scipy.signal.lfilter`` with carried state) and return
float32: within 3.2e-4 LU of audiotools on the test signals (typically 1e-5; the largest on a 60 Hz
tone, where audiotools' float32 recursion of the 38 Hz high pass drifts), far inside 0.01 LU. :class:`LoudnessMeter` takes the signal in pieces of any size and keeps only
the filter state and one energy per 0.1 s stride, so a 1-hour stereo file is measured in seconds
with bounded memory, to the same value as the whole signal at once.

Why not jaxloudnorm: its IIR filter is a ``lax.scan`` (minutes for an hour of audio on CPU), its
coefficients are designed in float32 (not bit-equal to audiotools' float64-then-rounded ones), its
gates are ``>=`` rather than ``>`` with means over non-zero blocks, its block count rounds rather than
covering the tail, and it has neither the 0.5 s padding nor the -70 floor. What we share with it is
the filter design (RBJ cookbook, pyloudnorm's K-weighting parameters).

The gain helpers reproduce audiotools' float32 arithmetic: ``normalize`` is
``x * exp((target - loudness) * ln(10)/20)`` per item with the loudness as measured (audiotools
caches ``_loudness``: ``normalize`` after ``loudness()`` reuses it, nothing is re-measured
afterwards); ``ensure_max_of_audio`` scales each CHANNEL of each item (peak over time only) whose
peak exceeds ``max`` down to ``max``.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.signal

from dac_jax.errors import AudioError

MIN_LOUDNESS = -70.0  # audiotools LoudnessMixin.MIN_LOUDNESS, also the absolute gate
GAIN_FACTOR = np.log(10) / 20  # audiotools EffectMixin.GAIN_FACTOR
CHANNEL_GAINS = (1.0, 1.0, 1.0, 1.41, 1.41)  # BS.1770 G: L, R, C, Ls, Rs
BLOCK_SIZE = 0.400  # seconds
OVERLAP = 0.75
MIN_DURATION = 0.5  # shorter signals are zero-padded to this (AudioSignal.loudness)
DEFAULT_CHUNK = 1 << 20  # samples per row filtered at once by loudness()


def biquad(G: float, Q: float, fc: float, rate: float, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """RBJ cookbook biquad, as pyloudnorm's IIRfilter designs it (float64), normalised by a0."""
    A = 10 ** (G / 40.0)
    w0 = 2.0 * np.pi * (fc / rate)
    alpha = np.sin(w0) / (2.0 * Q)
    cos = np.cos(w0)
    if kind == "high_shelf":
        b0 = A * ((A + 1) + (A - 1) * cos + 2 * np.sqrt(A) * alpha)
        b1 = -2 * A * ((A - 1) + (A + 1) * cos)
        b2 = A * ((A + 1) + (A - 1) * cos - 2 * np.sqrt(A) * alpha)
        a0 = (A + 1) - (A - 1) * cos + 2 * np.sqrt(A) * alpha
        a1 = 2 * ((A - 1) - (A + 1) * cos)
        a2 = (A + 1) - (A - 1) * cos - 2 * np.sqrt(A) * alpha
    elif kind == "high_pass":
        b0 = (1 + cos) / 2
        b1 = -(1 + cos)
        b2 = (1 + cos) / 2
        a0 = 1 + alpha
        a1 = -2 * cos
        a2 = 1 - alpha
    else:
        raise ValueError(f"unknown filter kind {kind!r}")
    return np.array([b0, b1, b2]) / a0, np.array([a0, a1, a2]) / a0


def k_weighting(sample_rate: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The K-weighting stages ``[(b, a), ...]`` (high shelf, then high pass) as audiotools applies
    them on CPU: pyloudnorm's float64 design rounded to float32 (returned as float64 arrays
    holding those float32 values, for scipy)."""
    stages = [biquad(4.0, 1 / np.sqrt(2), 1500.0, sample_rate, "high_shelf"),
              biquad(0.0, 0.5, 38.0, sample_rate, "high_pass")]
    return [(b.astype(np.float32).astype(np.float64), a.astype(np.float32).astype(np.float64)) for b, a in stages]


class LoudnessMeter:
    """Streaming integrated loudness, equal to audiotools' ``AudioSignal.loudness()`` on CPU.

    Feed consecutive pieces ``[B, C, t]`` (any ``t``, same ``B`` and ``C``) with :meth:`update`;
    :meth:`result` gives ``float32 [B]`` LUFS for the concatenation. State: the filters' delay
    lines and two float64 numbers per 0.1 s stride per channel (~1.2 MB for an hour of stereo);
    working memory is the piece being filtered (in float64).

    How blocks are accumulated: with ``K = q*S + r`` (``q = K // S``; at the usual rates K = 4S,
    r = 0), block ``j`` is strides ``j .. j+q-1`` plus the first ``r`` samples of stride ``j+q``,
    so we keep per stride the sum of squares and the sum over its first ``r`` samples.
    """

    def __init__(self, sample_rate: int, block_size: float = BLOCK_SIZE):
        if sample_rate <= 0:
            raise AudioError(f"sample rate must be positive, got {sample_rate}")
        self.sample_rate = int(sample_rate)
        self.block_size = float(block_size)
        # audiotools Meter._unfold, with its float expressions
        self.kernel_size = int(self.block_size * self.sample_rate)
        self.stride = int(self.block_size * self.sample_rate * (1.0 - OVERLAP))
        if self.stride <= 0:
            raise AudioError(f"sample rate {sample_rate} Hz is too low for {block_size} s gating blocks")
        self._q, self._r = divmod(self.kernel_size, self.stride)
        self._stages = k_weighting(self.sample_rate)
        self._zi = None  # per stage [B*C, 2]
        self._shape = None  # (B, C)
        self._pending = None  # squared filtered samples of the unfinished stride [B*C, < S]
        self._sums: list[np.ndarray] = []  # [B*C, n] sums of squares per stride
        self._heads: list[np.ndarray] = []  # [B*C, n] sums over the first r samples per stride
        self.length = 0  # samples per row fed so far
        self._done = False

    def _filter(self, rows: np.ndarray) -> np.ndarray:
        y = rows
        for k, (b, a) in enumerate(self._stages):
            y, self._zi[k] = scipy.signal.lfilter(b, a, y, axis=-1, zi=self._zi[k])
        return y

    def _accumulate(self, y2: np.ndarray) -> None:
        if self._pending is not None and self._pending.shape[1]:
            y2 = np.concatenate([self._pending, y2], axis=1)
        s = self.stride
        full = y2.shape[1] // s
        if full:
            segs = y2[:, : full * s].reshape(y2.shape[0], full, s)
            self._sums.append(segs.sum(axis=2))
            self._heads.append(segs[:, :, : self._r].sum(axis=2))
        self._pending = y2[:, full * s:].copy()

    def update(self, x) -> "LoudnessMeter":
        """Add the next ``[B, C, t]`` piece (``[C, t]`` / ``[t]``: one item)."""
        if self._done:
            raise RuntimeError("LoudnessMeter.result() was already called")
        x = np.asarray(x)
        while x.ndim < 3:
            x = x[None]
        if x.ndim != 3:
            raise AudioError(f"loudness expects [batch, channels, time], got shape {x.shape}")
        nb, nch, t = x.shape
        if nch > len(CHANNEL_GAINS) or nch == 0:
            raise AudioError(f"loudness supports 1 to {len(CHANNEL_GAINS)} channels (BS.1770 gains), got {nch}")
        if self._shape is None:
            self._shape = (nb, nch)
            self._zi = [np.zeros((nb * nch, 2)) for _ in self._stages]
        elif self._shape != (nb, nch):
            raise AudioError(f"piece has batch/channels {(nb, nch)}, earlier pieces had {self._shape}")
        if t == 0:
            return self
        # audiotools measures data.float(): round to float32 first, then filter in float64
        rows = np.asarray(x, np.float32).reshape(nb * nch, t).astype(np.float64)
        y = self._filter(rows)
        self._accumulate(y * y)
        self.length += t
        return self

    def result(self) -> np.ndarray:
        """Integrated loudness of everything fed, ``float32 [B]``, floored at -70 LUFS."""
        if self._shape is None:
            raise AudioError("loudness of an empty signal (no samples)")
        if self._done:
            raise RuntimeError("LoudnessMeter.result() was already called")
        if self.length == 0:
            raise AudioError("loudness of an empty signal (0 samples)")
        nb, nch = self._shape
        length = self.length
        duration = length / self.sample_rate
        if duration < MIN_DURATION:  # AudioSignal.loudness zero-pads before filtering
            pad = int((MIN_DURATION - duration) * self.sample_rate)
            if pad:
                zeros = np.zeros((nb * nch, pad))
                y = self._filter(zeros)
                self._accumulate(y * y)
                length += pad
        self._done = True
        # the unfinished stride (the zero padding of julius' unfold adds nothing to it)
        sums, heads = list(self._sums), list(self._heads)
        rest = self._pending
        if rest.shape[1]:
            sums.append(rest.sum(axis=1, keepdims=True))
            heads.append(rest[:, : self._r].sum(axis=1, keepdims=True))
        sums = np.concatenate(sums, axis=1) if sums else np.zeros((nb * nch, 0))
        heads = np.concatenate(heads, axis=1) if heads else np.zeros((nb * nch, 0))
        k, s, q = self.kernel_size, self.stride, self._q
        n_blocks = math.ceil((max(length, k) - k) / s) + 1
        need = n_blocks + q
        sums = np.pad(sums, ((0, 0), (0, max(0, need - sums.shape[1]))))
        heads = np.pad(heads, ((0, 0), (0, max(0, need - heads.shape[1]))))
        energy = heads[:, q:q + n_blocks].copy()
        for i in range(q):
            energy += sums[:, i:i + n_blocks]
        z = (1.0 / (self.block_size * self.sample_rate)) * energy
        return gated_loudness(z.reshape(nb, nch, n_blocks))


def gated_loudness(z: np.ndarray) -> np.ndarray:
    """BS.1770 gating of block energies ``z [B, C, blocks]`` -> ``float32 [B]`` LUFS, audiotools'
    ``Meter.integrated_loudness`` after its ``unfold`` (strict gates, NaN -> 0) plus the -70 floor."""
    nb, nch, _ = z.shape
    g = np.asarray(CHANNEL_GAINS[:nch], np.float64)[None, :, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        l = -0.691 + 10.0 * np.log10((g * z).sum(axis=1, keepdims=True))  # [B, 1, blocks]
        masked = l > MIN_LOUDNESS
        z_abs = np.where(masked, z, 0.0).sum(axis=2) / masked.sum(axis=2)  # [B, C]
        gamma_r = -0.691 + 10.0 * np.log10((z_abs * g[..., 0]).sum(axis=-1)) - 10.0  # [B]
        masked = masked & (l > gamma_r[:, None, None])
        z_gated = np.where(masked, z, 0.0).sum(axis=2) / masked.sum(axis=2)
        z_gated = np.where(np.isnan(z_gated), 0.0, z_gated)
        z_gated = np.minimum(z_gated, np.finfo(np.float32).max)
        lufs = -0.691 + 10.0 * np.log10((g[..., 0] * z_gated).sum(axis=1))
    return np.maximum(lufs, MIN_LOUDNESS).astype(np.float32)


def loudness(x, sample_rate: int, chunk: int = DEFAULT_CHUNK) -> np.ndarray:
    """Integrated loudness ``float32 [B]`` of ``x [B, C, T]`` (or ``[C, T]``, ``[T]``: one item),
    equal to ``AudioSignal(x, sample_rate).loudness()`` on CPU (see the module docstring).

    ``x`` may be a numpy array, a memmap, a jax array or an ``io.AudioReader``; it is filtered
    ``chunk`` samples at a time with :class:`LoudnessMeter`, so only one chunk is ever held in
    float64. Host code (scipy), not traceable under ``jit``; about 5 s per hour of stereo 44.1 kHz.
    """
    x = x if hasattr(x, "shape") else np.asarray(x)
    shape = tuple(x.shape)
    if len(shape) == 0 or len(shape) > 3:
        raise AudioError(f"loudness expects [batch, channels, time], got shape {shape}")
    if shape[-1] == 0:
        raise AudioError("loudness of an empty signal (0 samples)")
    meter = LoudnessMeter(sample_rate)
    for start in range(0, shape[-1], chunk):
        meter.update(np.asarray(x[..., start:start + chunk]))
    return meter.result()


def normalize_gain(loudness_db, target_db) -> np.ndarray:
    """``exp((target - loudness) * ln(10)/20)`` per item, in float32 as audiotools computes it.

    ``loudness_db``: ``[B]`` (the measured loudness); ``target_db``: a number or an array that
    broadcasts against it (e.g. the ``.dac`` file's ``input_db``). Returns ``float32``. (torch does
    this in float32 for the original's targets, the int -16 or the float32 ``input_db`` array.)
    """
    ref = np.asarray(loudness_db, np.float32)
    target = np.asarray(target_db, np.float32)
    with np.errstate(over="ignore"):
        return np.exp((target - ref) * np.float32(GAIN_FACTOR)).astype(np.float32)


def normalize(x, target_db, loudness_db=None, sample_rate: int | None = None) -> np.ndarray:
    """audiotools' ``AudioSignal.normalize(target_db)`` on ``x [B, C, T]``: ``x * gain[:, None, None]``.

    ``loudness_db`` is the item loudness to use (audiotools uses its cached ``loudness()``); when
    None it is measured here, which needs ``sample_rate``. Returns float32 ``[B, C, T]``.
    """
    x = np.asarray(x, np.float32)
    if x.ndim != 3:
        raise AudioError(f"normalize expects [batch, channels, time], got shape {x.shape}")
    if loudness_db is None:
        if sample_rate is None:
            raise ValueError("normalize needs loudness_db or sample_rate")
        loudness_db = loudness(x, sample_rate)
    gain = normalize_gain(loudness_db, target_db)
    return x * gain.reshape(-1)[:, None, None].astype(np.float32)


def peak_gain(peak, max: float = 1.0) -> np.ndarray:
    """Per-channel gains of ``ensure_max_of_audio``: ``max / peak`` where ``peak > max``, else 1
    (float32). ``peak`` is ``abs(x).max(-1)`` (per item AND channel), which may be gathered block
    by block: scaling by a positive gain commutes with the float32 max, so the peak of a normalised
    signal is ``float32(peak * gain)``."""
    peak = np.asarray(peak, np.float32)
    with np.errstate(divide="ignore"):
        return np.where(peak > np.float32(max), np.float32(max) / peak, np.float32(1)).astype(np.float32)


def ensure_max_of_audio(x, max: float = 1.0) -> np.ndarray:
    """audiotools' ``ensure_max_of_audio``: scale each channel of each item so ``|x| <= max``.

    The peak is taken over time only (``abs(x).max(dim=-1)``): channels are limited independently,
    unlike ``normalize``'s per-item gain. Returns float32 ``[..., T]``.
    """
    x = np.asarray(x, np.float32)
    peak = np.abs(x).max(axis=-1, keepdims=True)
    return x * peak_gain(peak, max)
