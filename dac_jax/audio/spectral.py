"""STFT, inverse STFT and mel spectrogram in pure JAX (``jnp.fft``), equal to audiotools'.

What matches what (audiotools 0.7.2, ``audiotools/core/audio_signal.py``; torch 2.x):

* :func:`stft` = ``AudioSignal.stft(window_length, hop_length, window_type, match_stride,
  padding_type)``, which is ``torch.stft(n_fft=window_length, hop_length, window,
  center=True, return_complex=True)`` (onesided, unnormalised; ``torch.stft`` pads
  ``n_fft // 2`` on both sides with ``pad_mode="reflect"``). With ``match_stride=True`` (the DAC
  discriminator's setting; the losses use False) audiotools first pads the audio with
  ``padding_type`` by ``pad = (w - hop) // 2`` on the left and ``pad + right_pad`` on the right,
  ``right_pad = ceil(T / hop) * hop - T``, then drops the first two and last two frames, so that
  ``frames * hop == T`` rounded up to the hop (``hop`` must be ``w // 4``).
* :func:`istft` = ``AudioSignal.istft`` (``torch.istft(center=True, length=...)``: windowed
  overlap-add divided by the summed squared window), including audiotools' ``match_stride``
  handling (two zero frames put back on each side, then the padding cropped).
* :func:`mel_filters` = ``librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax, htk=False,
  norm="slaney", dtype=float32)`` (what ``AudioSignal.get_mel_filters`` calls), in numpy.
* :func:`mel_spectrogram` = ``AudioSignal.mel_spectrogram(n_mels, mel_fmin, mel_fmax,
  window_length=..., hop_length=..., window_type=...)``: ``|stft| `` projected on the mel basis.
* :func:`shift_phase` = audiotools' ``ShiftPhase`` transform (``signal.stft(); signal.phase +=
  shift; signal.istft()``) with the signal's default STFT parameters.
* Windows (:func:`get_window`) = ``AudioSignal.get_window``: scipy's periodic ("fftbins") windows
  in float64, cast to float32; ``"sqrt_hann"`` and ``"average"`` as audiotools defines them.

Layout: time is the last axis of the input, ``x: [..., T]`` (``[B, C, T]`` for DAC audio);
spectrograms are ``[..., bins, frames]`` with ``bins = n_fft // 2 + 1``, as torch and audiotools
lay them out (so ``stft(x)[..., 2:-2]`` means the same thing in both). Everything is jittable
(window and hop lengths, modes and sample rates are static Python values) and differentiable;
``jnp.abs`` of a zero bin has gradient 0 in JAX, so silence gives finite gradients.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from dac_jax.errors import UsageError

__all__ = [
    "get_window",
    "stft_padding",
    "num_frames",
    "stft_min_length",
    "pad_last",
    "stft",
    "istft",
    "magnitude",
    "mel_filters",
    "mel_spectrogram",
    "shift_phase",
    "default_window_length",
]


# ---------------------------------------------------------------------------------------------
# windows and geometry


@functools.lru_cache(maxsize=None)
def _window(window: str, length: int) -> np.ndarray:
    n = np.arange(length, dtype=np.float64)
    if window == "hann":  # scipy.signal.get_window("hann", N): periodic (fftbins=True)
        w = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / length)
    elif window == "sqrt_hann":
        w = np.sqrt(0.5 - 0.5 * np.cos(2.0 * np.pi * n / length))
    elif window == "hamming":
        w = 0.54 - 0.46 * np.cos(2.0 * np.pi * n / length)
    elif window in ("average", "boxcar", "ones", "rect"):
        w = np.ones(length) / length if window == "average" else np.ones(length)
    else:
        raise UsageError(f"unknown window {window!r}: use 'hann', 'sqrt_hann', 'hamming', 'average' or 'boxcar'")
    w = w.astype(np.float32)
    w.setflags(write=False)
    return w


def get_window(window: str, length: int) -> np.ndarray:
    """The ``[length]`` float32 window audiotools' ``AudioSignal.get_window`` makes: scipy's
    periodic window computed in float64 and cast to float32 (``"hann"``: ``0.5 - 0.5 cos(2 pi n /
    N)``), or ``"sqrt_hann"``, ``"average"`` (``1/N``), ``"hamming"``, ``"boxcar"``."""
    return _window(str(window), int(length))


def default_window_length(sample_rate: int) -> int:
    """audiotools' default STFT window: ``2 ** ceil(log2(0.032 * sample_rate))`` (2048 at 44.1
    kHz, 1024 at 24 kHz, 512 at 16 kHz); its default hop is a quarter of it, its window "hann"."""
    return int(2 ** (np.ceil(np.log2(0.032 * sample_rate))))


def stft_padding(length: int, window_length: int, hop_length: int, match_stride: bool) -> tuple[int, int]:
    """``(right_pad, pad)`` exactly as ``AudioSignal.compute_stft_padding``: ``(0, 0)`` unless
    ``match_stride``; then ``right_pad = ceil(T / hop) * hop - T`` and ``pad = (w - hop) // 2``,
    and the audio is padded by ``pad`` on the left and ``pad + right_pad`` on the right."""
    if not match_stride:
        return 0, 0
    if hop_length != window_length // 4:
        raise UsageError(f"match_stride needs hop_length == window_length // 4, got hop {hop_length} for window {window_length}")
    right_pad = math.ceil(length / hop_length) * hop_length - length
    pad = (window_length - hop_length) // 2
    return right_pad, pad


def num_frames(length: int, window_length: int, hop_length: int, center: bool = True, match_stride: bool = False) -> int:
    """Frames :func:`stft` gives for ``length`` samples: ``1 + T // hop`` (center, no match_stride;
    ``n_fft`` even), ``ceil(T / hop)`` with match_stride, ``1 + (T - n_fft) // hop`` uncentred."""
    right_pad, pad = stft_padding(length, window_length, hop_length, match_stride)
    n = length + 2 * pad + right_pad
    if center:
        n += 2 * (window_length // 2)
    frames = 1 + (n - window_length) // hop_length
    return frames - 4 if match_stride else frames


def stft_min_length(window_length: int, hop_length: int | None = None, center: bool = True, match_stride: bool = False) -> int:
    """The shortest signal :func:`stft` takes with these settings: each reflect pad shorter than
    what it pads (torch's rule) and at least one window in all. With ``match_stride`` the right
    pad grows with ``T``'s remainder, so a few longer lengths can still be refused."""
    hop_length = window_length // 4 if hop_length is None else hop_length
    n = 1
    while True:
        right_pad, pad = stft_padding(n, window_length, hop_length, match_stride)
        padded = n + 2 * pad + right_pad
        centre = 2 * (window_length // 2) if center else 0
        if pad + right_pad < n and (not center or window_length // 2 < padded) and padded + centre >= window_length:
            return n
        n += 1


def _check_hop(window_length: int, hop_length: int) -> None:
    if window_length < 2 or hop_length < 1:
        raise UsageError(f"need window_length >= 2 and hop_length >= 1, got {window_length}, {hop_length}")


def pad_last(x: jax.Array, left: int, right: int, mode: str) -> jax.Array:
    """``torch.nn.functional.pad(x, (left, right), mode)`` on the last axis (reflect: no edge
    repeat, as numpy's "reflect"); reflect needs each pad shorter than the signal, as torch does."""
    if left == 0 and right == 0:
        return x
    if mode == "reflect" and max(left, right) >= x.shape[-1]:
        raise UsageError(
            f"reflect padding by {max(left, right)} needs a longer signal than {x.shape[-1]} samples "
            "(torch refuses it too): use a longer excerpt or a smaller window"
        )
    if mode not in ("reflect", "constant", "replicate", "circular"):
        raise UsageError(f"unknown pad_mode {mode!r}")
    np_mode = {"reflect": "reflect", "constant": "constant", "replicate": "edge", "circular": "wrap"}[mode]
    widths = [(0, 0)] * (x.ndim - 1) + [(left, right)]
    return jnp.pad(x, widths, mode=np_mode)


def _frame(x: jax.Array, n_fft: int, hop: int) -> jax.Array:
    """``[..., T] -> [..., frames, n_fft]``, frame ``i`` = ``x[..., i*hop : i*hop + n_fft]``.

    When the hop divides ``n_fft`` (always in DAC: hop = w/4), frames are built from ``k = n_fft /
    hop`` shifted views of ``x`` reshaped to ``[..., blocks, hop]``: slices and a concatenation,
    whose gradient is a sum of pads (no scatter). Otherwise a gather."""
    T = x.shape[-1]
    frames = 1 + (T - n_fft) // hop
    if n_fft % hop == 0:
        k = n_fft // hop
        blocks = x[..., : (frames + k - 1) * hop].reshape(*x.shape[:-1], frames + k - 1, hop)
        return jnp.concatenate([blocks[..., j : j + frames, :] for j in range(k)], axis=-1)
    idx = np.arange(frames)[:, None] * hop + np.arange(n_fft)[None, :]
    return x[..., idx]


def _overlap_add(frames: jax.Array, hop: int) -> jax.Array:
    """Inverse of :func:`_frame` with summation: ``[..., F, n] -> [..., (F - 1) * hop + n]``."""
    F, n = frames.shape[-2:]
    lead = frames.shape[:-2]
    if n % hop == 0:
        k = n // hop
        parts = frames.reshape(*lead, F, k, hop)
        out = 0
        for j in range(k):
            widths = [(0, 0)] * len(lead) + [(j, k - 1 - j), (0, 0)]
            out = out + jnp.pad(parts[..., :, j, :], widths)
        return out.reshape(*lead, (F + k - 1) * hop)
    idx = (np.arange(F)[:, None] * hop + np.arange(n)[None, :]).reshape(-1)
    out = jnp.zeros((*lead, (F - 1) * hop + n), frames.dtype)
    return out.at[..., idx].add(frames.reshape(*lead, F * n))


@functools.lru_cache(maxsize=64)
def _window_envelope(window: str, n_fft: int, hop: int, n_frames: int) -> np.ndarray:
    """Overlap-added squared window (torch.istft's ``window_envelop``), float32, in numpy."""
    w2 = get_window(window, n_fft).astype(np.float32) ** 2
    env = np.zeros((n_frames - 1) * hop + n_fft, np.float32)
    idx = (np.arange(n_frames)[:, None] * hop + np.arange(n_fft)[None, :]).reshape(-1)
    np.add.at(env, idx, np.tile(w2, n_frames))
    env.setflags(write=False)
    return env


# ---------------------------------------------------------------------------------------------
# STFT / inverse STFT


def stft(
    x: jax.Array,
    window_length: int,
    hop_length: int | None = None,
    window: str = "hann",
    center: bool = True,
    pad_mode: str = "reflect",
    match_stride: bool = False,
) -> jax.Array:
    """Complex STFT ``[..., T] -> [..., window_length // 2 + 1, frames]`` (complex64 for float32).

    Equals audiotools' ``AudioSignal.stft(window_length, hop_length, window, match_stride,
    padding_type=pad_mode)`` (torch.stft with ``n_fft = win_length = window_length``, the periodic
    window, ``center=True`` with reflect padding of ``n_fft // 2``, onesided, unnormalised).
    ``hop_length`` defaults to ``window_length // 4``. ``pad_mode`` is audiotools'
    ``padding_type`` (the match_stride pre-padding); the centring pad is always reflect, as
    audiotools leaves torch.stft's default. ``center=False`` (no torch/audiotools counterpart in
    DAC) frames the signal as is. Frames: ``1 + T // hop`` (center), ``ceil(T / hop)`` with
    ``match_stride``. The signal must be longer than ``window_length // 2`` (reflect padding).
    """
    window_length = int(window_length)
    hop_length = window_length // 4 if hop_length is None else int(hop_length)
    _check_hop(window_length, hop_length)
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    right_pad, pad = stft_padding(x.shape[-1], window_length, hop_length, match_stride)
    x = pad_last(x, pad, pad + right_pad, pad_mode)
    if center:
        x = pad_last(x, window_length // 2, window_length // 2, "reflect")
    if x.shape[-1] < window_length:
        raise UsageError(f"a {window_length}-sample window needs at least {window_length} samples, got {x.shape[-1]}")
    w = jnp.asarray(get_window(window, window_length), x.dtype)
    spec = jnp.fft.rfft(_frame(x, window_length, hop_length) * w, axis=-1)  # [..., frames, bins]
    spec = jnp.swapaxes(spec, -1, -2)
    if match_stride:
        # audiotools: "Drop first two and last two frames, which are added because of padding."
        spec = spec[..., 2:-2]
    return spec


def istft(
    spec: jax.Array,
    window_length: int,
    hop_length: int | None = None,
    window: str = "hann",
    center: bool = True,
    match_stride: bool = False,
    length: int | None = None,
) -> jax.Array:
    """Inverse of :func:`stft`: ``[..., bins, frames] -> [..., length]`` (real).

    Equals audiotools' ``AudioSignal.istft(window_length, hop_length, window, match_stride)`` on a
    signal of ``length`` samples: ``torch.istft(center=True, length=...)``, i.e. each frame's
    ``irfft`` times the window, overlap-added, divided by the overlap-added squared window (where
    that is > 1e-11; torch raises instead), the centring pad cut off. ``length`` is the original
    signal length; without it: ``(frames - 1) * hop`` (torch's default), or ``frames * hop`` with
    ``match_stride``. With ``match_stride`` audiotools puts back two zero frames at each end before
    inverting and crops its padding after, so the first and last ~``3 w / 8`` samples are NOT
    reconstructed exactly there (we reproduce that); without it ``istft(stft(x)) == x``.
    """
    window_length = int(window_length)
    hop_length = window_length // 4 if hop_length is None else int(hop_length)
    _check_hop(window_length, hop_length)
    spec = jnp.asarray(spec)
    n_bins = window_length // 2 + 1
    if spec.shape[-2] != n_bins:
        raise UsageError(f"a {window_length}-sample window has {n_bins} bins, the spectrogram has {spec.shape[-2]}")
    if match_stride:
        if length is None:
            length = spec.shape[-1] * hop_length
        right_pad, pad = stft_padding(length, window_length, hop_length, True)
        spec = jnp.pad(spec, [(0, 0)] * (spec.ndim - 1) + [(2, 2)])
        out_len = length + 2 * pad + right_pad
    else:
        out_len = length
    n_frames = spec.shape[-1]
    frames = jnp.fft.irfft(jnp.swapaxes(spec, -1, -2), n=window_length, axis=-1)  # [..., F, n]
    w = get_window(window, window_length)
    y = _overlap_add(frames * jnp.asarray(w, frames.dtype), hop_length)
    env = _window_envelope(window, window_length, hop_length, n_frames)  # numpy, at trace time
    start = window_length // 2 if center else 0
    total = y.shape[-1]
    if out_len is None:
        end = total - start
    else:
        end = start + int(out_len)
    if end > total:  # torch.istft zero-pads when asked for more than the frames cover
        y = jnp.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, end - total)])
        env = np.pad(env, (0, end - total))
    y = y[..., start:end]
    env = env[start:end]
    y = jnp.where(env > 1e-11, y / np.where(env > 1e-11, env, 1.0), 0.0)
    if match_stride:
        y = y[..., pad : y.shape[-1] - (pad + right_pad)]
    return y


def magnitude(spec: jax.Array) -> jax.Array:
    """``|spec|`` (audiotools' ``AudioSignal.magnitude``); gradient 0 at exact zeros."""
    return jnp.abs(spec)


# ---------------------------------------------------------------------------------------------
# mel


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's (Auditory Toolbox) mel scale, as librosa's ``hz_to_mel(htk=False)``."""
    f = np.asarray(f, np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-300) / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@functools.lru_cache(maxsize=None)
def _mel_filters(sample_rate: float, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    if fmax is None:
        fmax = float(sample_rate) / 2
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    # librosa stores the triangles in float32, then scales them in place by the float64 norm
    weights = np.maximum(0, np.minimum(lower, upper)).astype(np.float32)
    enorm = 2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels])
    weights = (weights * enorm[:, None]).astype(np.float32)
    weights.setflags(write=False)
    return weights


def mel_filters(sample_rate: float, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Slaney mel filterbank ``[n_mels, n_fft // 2 + 1]`` float32 (read-only, cached): the same
    numbers as ``librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin,
    fmax=fmax, htk=False, norm="slaney")``: triangles uniformly spaced on Slaney's mel scale (linear
    below 1 kHz, logarithmic above), each divided by half its width in Hz (constant area).
    ``fmax=None`` is ``sample_rate / 2``. Like librosa, bands narrower than an FFT bin may come
    out empty (all zero) for many mels at small ``n_fft``."""
    fmin = 0.0 if fmin is None else float(fmin)
    return _mel_filters(float(sample_rate), int(n_fft), int(n_mels), fmin, None if fmax is None else float(fmax))


def mel_spectrogram(
    x: jax.Array,
    sample_rate: int,
    window_length: int,
    hop_length: int | None = None,
    n_mels: int = 80,
    fmin: float = 0.0,
    fmax: float | None = None,
    window: str = "hann",
    match_stride: bool = False,
) -> jax.Array:
    """Mel magnitude spectrogram ``[..., T] -> [..., n_mels, frames]``.

    Equals ``AudioSignal(x, sample_rate).mel_spectrogram(n_mels, mel_fmin=fmin, mel_fmax=fmax,
    window_length=..., hop_length=..., window_type=window)``: ``|stft(x)|`` (not squared) projected
    on :func:`mel_filters` for ``n_fft = window_length``. The projection runs at full float32
    precision (``Precision.HIGHEST``: no TF32/bf16 on accelerators, as torch's default matmul).
    """
    mag = magnitude(stft(x, window_length, hop_length, window=window, match_stride=match_stride))
    basis = jnp.asarray(mel_filters(sample_rate, window_length, n_mels, fmin, fmax), mag.dtype)
    return jnp.einsum("mf,...ft->...mt", basis, mag, precision=jax.lax.Precision.HIGHEST)


# ---------------------------------------------------------------------------------------------
# phase


def shift_phase(
    x: jax.Array,
    shift: jax.Array | float,
    window_length: int,
    hop_length: int | None = None,
    window: str = "hann",
) -> jax.Array:
    """Rotate the phase of every STFT bin by ``shift`` radians and resynthesise: ``[..., T] ->
    [..., T]``. ``shift`` is a scalar or has ``x``'s leading shape (e.g. ``[B, 1]`` or ``[B, C]``
    for ``x: [B, C, T]``), one angle per signal.

    Equals audiotools' ``ShiftPhase`` transform (``signal.stft(); signal.shift_phase(shift);
    signal.istft()``) when called with audiotools' default STFT for the rate (window
    :func:`default_window_length` (2048 at 44.1 kHz), hop a quarter, "hann", no match_stride).
    """
    x = jnp.asarray(x)
    spec = stft(x, window_length, hop_length, window=window)
    shift = jnp.asarray(shift, x.dtype)
    rot = jax.lax.complex(jnp.cos(shift), jnp.sin(shift))[..., None, None]
    return istft(spec * rot, window_length, hop_length, window=window, length=x.shape[-1])
