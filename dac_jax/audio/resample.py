"""Windowed-sinc polyphase resampling, equal to julius' ``resample_frac`` (what the original uses).

The original DAC resamples with ``AudioSignal.resample`` -> ``julius.resample_frac(x, old_sr,
new_sr)`` (zeros=24, rolloff=0.945). This module computes the same thing in JAX:

* Rates are reduced by their gcd to ``o = old_sr/g`` input and ``n = new_sr/g`` output samples
  per period. The cutoff is ``sr = min(o, n) * rolloff`` (in reduced units), the half-width
  ``W = ceil(zeros * o / sr)`` input samples, and for each output phase ``i < n`` the kernel over
  input offsets ``k = -W .. W+o-1`` is ``sinc(pi t) * cos(pi t / (2 zeros))**2`` with
  ``t = clip((k/o - i/n) * sr, -zeros, zeros)``, normalised to sum 1 (``kernel`` below, [n, K],
  ``K = 2W + o``). julius builds it in float32 arithmetic, and for some rate pairs that kernel is
  ~1e-5 away from the exact (float64) one (48000 -> 44100: up to 9.4e-6 per tap, 1.1e-5 in the
  output); so we repeat its float32 operations one by one in numpy, which reproduces its kernel
  to ~1e-7 (float32 sin/cos and summation order may differ by an ulp).
* The signal is padded by REPLICATING its edge samples, ``W`` on the left and ``W + o`` on the
  right, and convolved with stride ``o``::

      frame f:  input  x[f*o - W ... f*o + W + o - 1]   (indices clamped to [0, T-1])
                output y[f*n + i] = sum_k kernel[i, k] * x[f*o - W + k],   i = 0..n-1

  giving ``n * (T // o + 1)`` samples, then cut to the output length.
* Output length (julius' rule, float32 included): ``v = float32(n * T / o)``; the default is
  ``floor(v)``, ``full=True`` gives ``ceil(v)``, an explicit ``output_length`` must lie in
  ``[0, ceil(v)]``. julius builds ``v`` with ``torch.as_tensor`` (float32), so above ~4M output
  samples its floor can differ from the exact one: :func:`output_length` reproduces that.
* Equal rates: the input is returned unchanged, ``output_length`` and ``full`` ignored (as julius).

:func:`resample_frac` works on a whole ``[..., T]`` array and returns a **jax.Array** (float32);
it is traceable under ``jit`` with static rates and shapes. :func:`resample_long` /
:func:`iter_resample` take a long host signal (a numpy array, a memmap, or an
:class:`dac_jax.audio.io.AudioReader`) and compute it in blocks of frames, each block read with its
exact ``W``-sample context (replicated at the signal's ends), so the result equals the whole-signal
one while working memory stays bounded by the block; every block has the same shape (the last is
padded), so one compiled function serves the whole signal. They return **numpy** arrays.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from dac_jax.errors import AudioError

# Default input samples per row in one block of resample_long (about 24 s at 44.1 kHz).
DEFAULT_BLOCK_SAMPLES = 1 << 20


def _as_rate(value, name: str) -> int:
    try:
        rate = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if rate <= 0:
        raise ValueError(f"{name} must be positive, got {rate}")
    return rate


@dataclasses.dataclass(frozen=True)
class ResamplePlan:
    """The geometry of one ``old_sr -> new_sr`` resampler (rates already reduced by their gcd)."""

    old: int  # o: input samples per period
    new: int  # n: output samples per period
    zeros: int
    rolloff: float

    @staticmethod
    def make(old_sr, new_sr, zeros: int = 24, rolloff: float = 0.945) -> "ResamplePlan":
        old_sr, new_sr = _as_rate(old_sr, "old_sr"), _as_rate(new_sr, "new_sr")
        g = math.gcd(old_sr, new_sr)
        return ResamplePlan(old_sr // g, new_sr // g, int(zeros), float(rolloff))

    @property
    def identity(self) -> bool:
        return self.old == self.new

    @property
    def width(self) -> int:
        """W: input samples of context on each side of a period (julius' ``_width``)."""
        return math.ceil(self.zeros * self.old / (min(self.new, self.old) * self.rolloff))

    @property
    def kernel_size(self) -> int:
        return 2 * self.width + self.old

    def frames(self, length: int) -> int:
        """Periods computed for an input of ``length``: ``length // o + 1``."""
        return length // self.old + 1

    def output_length(self, length: int, output_length: int | None = None, full: bool = False) -> int:
        """julius' output length for an input of ``length`` (see the module docstring)."""
        if self.identity:
            return length
        value = float(np.float32(self.new * length / self.old))  # torch.as_tensor: float32
        max_length = math.ceil(value)
        if output_length is None:
            applied = max_length if full else math.floor(value)
        elif output_length < 0 or output_length > max_length:
            raise ValueError(f"output_length must be between 0 and {max_length}")
        elif full:
            raise ValueError("You cannot pass both full=True and output_length")
        else:
            applied = int(output_length)
        # julius slices y[..., :applied]; y holds n * frames samples
        return min(applied, self.new * self.frames(length))


@functools.lru_cache(maxsize=None)
def _kernel(plan: ResamplePlan) -> np.ndarray:
    """julius' kernel, op for op in float32 (see the module docstring for why not float64)."""
    f32 = np.float32
    o, n, zeros = plan.old, plan.new, plan.zeros
    sr = f32(min(n, o) * plan.rolloff)
    idx = np.arange(-plan.width, plan.width + o).astype(f32) / f32(o)
    kernels = []
    for i in range(n):
        t = (f32(-i / n) + idx) * sr  # torch: float32 tensor op python float -> float32
        t = np.clip(t, f32(-zeros), f32(zeros)) * f32(math.pi)
        window = np.cos(t / f32(zeros) / f32(2)) ** 2
        safe = np.where(t == 0, f32(1), t)
        kernel = np.where(t == 0, f32(1), np.sin(safe) / safe) * window
        kernels.append(kernel / kernel.sum(dtype=f32))  # a constant signal stays constant
    kernel = np.stack(kernels).astype(f32)
    kernel.setflags(write=False)
    return kernel


def resample_kernel(old_sr: int, new_sr: int, zeros: int = 24, rolloff: float = 0.945) -> np.ndarray:
    """The polyphase kernel ``float32 [n, 2W + o]`` (julius' ``ResampleFrac.kernel`` squeezed)."""
    plan = ResamplePlan.make(old_sr, new_sr, zeros, rolloff)
    if plan.identity:
        raise ValueError("equal rates need no kernel")
    return _kernel(plan)


def output_length(length: int, old_sr: int, new_sr: int, full: bool = False) -> int:
    """Samples that ``resample_frac`` returns for ``length`` input samples (julius' rule)."""
    return ResamplePlan.make(old_sr, new_sr).output_length(int(length), full=full)


def _polyphase(xpad: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """``xpad [B, L]`` (context included) -> ``[B, frames * n]``, frames = (L - K) // o + 1."""
    y = jax.lax.conv_general_dilated(
        xpad[:, None, :], kernel[:, None, :], window_strides=(stride,), padding="VALID",
        precision=jax.lax.Precision.HIGHEST,
    )  # [B, n, frames]
    return jnp.swapaxes(y, 1, 2).reshape(xpad.shape[0], -1)


def resample_frac(x, old_sr: int, new_sr: int, zeros: int = 24, rolloff: float = 0.945,
                  output_length: int | None = None, full: bool = False) -> jax.Array:
    """Resample ``x [..., T]`` from ``old_sr`` to ``new_sr``: julius' ``resample_frac`` in JAX.

    Returns a float32 ``jax.Array [..., T']`` (``T'`` per :meth:`ResamplePlan.output_length`);
    with equal rates, ``x`` itself as a jax array. Traceable under ``jit`` when the rates,
    ``zeros``, ``rolloff``, ``output_length`` and ``full`` are static. Holds the whole signal and a
    padded copy in memory: for long signals use :func:`resample_long`.
    """
    plan = ResamplePlan.make(old_sr, new_sr, zeros, rolloff)
    x = jnp.asarray(x)
    if plan.identity:
        return x
    if x.ndim == 0:
        raise AudioError("cannot resample a scalar; expected [..., T]")
    length = x.shape[-1]
    if length == 0:
        raise AudioError("cannot resample an empty signal (0 samples)")
    return _resample_whole(x, plan, plan.output_length(length, output_length, full))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _resample_whole(x: jax.Array, plan: ResamplePlan, out_len: int) -> jax.Array:
    # one compiled function per (plan, shape) rather than one per operation when called eagerly;
    # under an outer jit it is simply inlined
    lead, length = x.shape[:-1], x.shape[-1]
    x2 = x.reshape(-1, length).astype(jnp.float32)
    xpad = jnp.pad(x2, ((0, 0), (plan.width, plan.width + plan.old)), mode="edge")
    y = _polyphase(xpad, jnp.asarray(_kernel(plan)), plan.old)
    return y[:, :out_len].reshape(*lead, out_len)


@functools.lru_cache(maxsize=None)
def _block_fn(plan: ResamplePlan):
    """One jitted block function per plan; XLA compiles it once per block shape."""
    kernel = _kernel(plan)

    @jax.jit
    def run(xpad):
        return _polyphase(xpad, jnp.asarray(kernel), plan.old)

    return run


class _ClampedStream:
    """Reads ``x[..., start:stop]`` with indices clamped to ``[0, T-1]`` (julius' replicate padding;
    inside the signal, a block's context is the signal itself), as float32 ``[rows, stop-start]``.

    Windows must come in order, each starting at or before the previous one's end: the part that
    overlaps the previous window is kept here, so the source is read strictly sequentially, once
    (a file reader never seeks, see dac_jax.audio.io).
    """

    def __init__(self, x, rows: int, length: int):
        self.x, self.rows, self.length = x, rows, length
        self.held = np.zeros((rows, 0), np.float32)  # the previous window, in clamped coordinates
        self.held_start = 0
        self.first = self.last = None  # x[..., 0] and x[..., T-1], once read

    def _read(self, lo: int, hi: int) -> np.ndarray:
        core = np.asarray(self.x[..., lo:hi], dtype=np.float32).reshape(self.rows, hi - lo)
        if lo == 0:
            self.first = core[:, :1].copy()
        if hi == self.length:
            self.last = core[:, -1:].copy()
        return core

    def window(self, start: int, stop: int) -> np.ndarray:
        parts, pos = [], start
        if self.held.shape[1]:
            held_end = self.held_start + self.held.shape[1]
            assert self.held_start <= start <= held_end, (start, self.held_start, held_end)
            parts.append(self.held[:, start - self.held_start:])
            pos = held_end
        left = max(0, min(stop, 0) - pos)  # positions before the signal
        lo, hi = max(pos, 0), min(stop, self.length)
        core = self._read(lo, hi) if lo < hi else None  # reads x[..., 0] first if left > 0
        if left:
            parts.append(np.repeat(self.first if self.first is not None else self._read(0, 1), left, axis=1))
        if core is not None:
            parts.append(core)
        right = (stop - start) - sum(p.shape[1] for p in parts)  # positions after the signal
        if right:
            last = self.last if self.last is not None else self._read(self.length - 1, self.length)
            parts.append(np.repeat(last, right, axis=1))
        out = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
        self.held, self.held_start = out, start
        return out


def _block_frames(plan: ResamplePlan, frames: int, block_samples: int) -> int:
    target = max(1, block_samples // plan.old)
    if frames >= target:
        return target
    # short signals: one block, rounded up to a power of two so lengths share compilations
    return min(target, 1 << (frames - 1).bit_length())


def iter_resample(x, old_sr: int, new_sr: int, *, zeros: int = 24, rolloff: float = 0.945,
                  output_length: int | None = None, full: bool = False,
                  block_samples: int = DEFAULT_BLOCK_SAMPLES) -> Iterator[np.ndarray]:
    """Yield the resampled signal as consecutive float32 numpy pieces ``[..., t_i]``.

    ``x`` is anything with ``.shape`` ``[..., T]`` that slices on its last axis: a numpy array,
    a memmap, an :class:`~dac_jax.audio.io.AudioReader`. It is read one block of about
    ``block_samples`` input samples per row (plus ``2W`` context) at a time, so memory is bounded
    by the block, not the signal. Concatenated, the pieces equal :func:`resample_frac` (julius)
    to float32 rounding (< 1e-6). Every block has the same shape, so one compilation serves all.
    """
    plan = ResamplePlan.make(old_sr, new_sr, zeros, rolloff)
    shape = tuple(x.shape)
    if len(shape) == 0:
        raise AudioError("cannot resample a scalar; expected [..., T]")
    lead, length = shape[:-1], shape[-1]
    if length == 0:
        raise AudioError("cannot resample an empty signal (0 samples)")
    if block_samples <= 0:
        raise ValueError(f"block_samples must be positive, got {block_samples}")
    rows = int(np.prod(lead, dtype=np.int64))
    if plan.identity:
        for start in range(0, length, block_samples):
            yield np.asarray(x[..., start:start + block_samples], dtype=np.float32)
        return
    total = plan.output_length(length, output_length, full)
    frames = -(-total // plan.new)  # periods needed to cover the output
    block = _block_frames(plan, frames, block_samples)
    run = _block_fn(plan)
    o, n, w = plan.old, plan.new, plan.width
    done = 0
    stream = _ClampedStream(x, rows, length)
    for f0 in range(0, frames, block):
        start = f0 * o - w
        xpad = stream.window(start, start + block * o + 2 * w)
        y = np.asarray(run(xpad))  # [rows, block * n]
        take = min(block * n, total - done)
        yield y[:, :take].reshape(*lead, take)
        done += take


def resample_long(x, old_sr: int, new_sr: int, *, zeros: int = 24, rolloff: float = 0.945,
                  output_length: int | None = None, full: bool = False,
                  block_samples: int = DEFAULT_BLOCK_SAMPLES, out: np.ndarray | None = None) -> np.ndarray:
    """:func:`resample_frac` for long host signals: float32 numpy ``[..., T']``, computed in blocks.

    Same arguments and result as :func:`resample_frac` (julius), block by block through
    :func:`iter_resample`; the only full-size allocation is the result (or ``out``, if given, a
    float32 array of the result's shape, e.g. a memmap).
    """
    plan = ResamplePlan.make(old_sr, new_sr, zeros, rolloff)
    shape = tuple(x.shape)
    if len(shape) == 0:
        raise AudioError("cannot resample a scalar; expected [..., T]")
    total = plan.output_length(shape[-1], output_length, full) if shape[-1] else 0
    want = shape[:-1] + (total,)
    if out is None:
        out = np.empty(want, np.float32)
    elif tuple(out.shape) != want:
        raise ValueError(f"out has shape {tuple(out.shape)}, expected {want}")
    pos = 0
    for piece in iter_resample(x, old_sr, new_sr, zeros=zeros, rolloff=rolloff, output_length=output_length,
                               full=full, block_samples=block_samples):
        out[..., pos:pos + piece.shape[-1]] = piece
        pos += piece.shape[-1]
    return out
