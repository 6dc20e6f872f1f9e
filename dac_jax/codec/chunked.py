"""Chunked encoding and decoding at the model's sample rate, in bounded device memory.

Arrays here are numpy on the host: ``audio [items, samples]`` (an item is one channel of one
signal), ``codes [items, n_codebooks, frames]`` (DAC) and ``m``, ``logs``, ``z [items, latent_dim,
frames]`` (DAC-VAE; window-independent mode only). Windows are cut on the host, stacked into
batches of a fixed shape (the last batch padded), and pushed through one compiled function per
(model, window, batch) shape; only one batch lives on the device at a time.

The models are the runtime's (:class:`dac_jax.runtime.Model`): windows go through their
``encode_frames`` / ``decode_frames``, so one windowing serves DAC's codes and DAC-VAE's latents.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator, Optional

import numpy as np

from dac_jax.runtime import DACModel, Model, VAEModel
from dac_jax.codec.plan import FaithfulPlan, IndependentPlan, independent_plan

Progress = Optional[Callable[[int], None]]  # called with the number of chunks just finished


def _batches(n: int, batch_size: int) -> Iterator[range]:
    for start in range(0, n, batch_size):
        yield range(start, min(start + batch_size, n))


def run_batched(
    fn, fill: Callable[[int, np.ndarray], None], shape: tuple[int, ...], dtype, n: int, batch_size: int,
    progress: Progress,
) -> Iterator[tuple[int, np.ndarray]]:
    """Apply ``fn`` to fixed-shape stacks of windows ``i < n``; yield ``(i, output)`` per window.

    ``fill(i, row)`` cuts window ``i`` straight into its zeroed row of the batch, and only when the
    batch is due, so host memory holds two batches, not all of them. Batch k+1 is dispatched before
    batch k's result is fetched (JAX dispatches asynchronously): the host cuts the next windows and
    lays out the last results while the device computes.
    """
    pending = None
    for group in _batches(n, batch_size):
        stack = np.zeros((batch_size, *shape), dtype)  # a new buffer each time: the last may still be read
        for j, i in enumerate(group):
            fill(i, stack[j])
        dispatched = (group, fn(stack))
        if pending is not None:
            yield from _fetched(*pending, progress)
        pending = dispatched
    if pending is not None:
        yield from _fetched(*pending, progress)


def _fetched(group: range, result, progress: Progress) -> Iterator[tuple[int, np.ndarray]]:
    out = np.asarray(result)
    for j, i in enumerate(group):
        yield i, out[j]
    if progress:
        progress(len(group))


# --------------------------------------------------------------------------------------------
# Faithful mode: the original's chunks
# --------------------------------------------------------------------------------------------


def encode_faithful(
    codec: DACModel, audio: np.ndarray, plan: FaithfulPlan, n_quantizers: Optional[int] = None,
    batch_size: int = 1, progress: Progress = None,
) -> np.ndarray:
    """The original's chunk loop: ``audio [items, samples]`` -> codes ``[items, n, chunks * chunk_length]``."""
    items, length = audio.shape
    if plan.padded:
        codes = np.asarray(codec.encode_frames(audio[:, None, :], n_quantizers))
        if progress:
            progress(1)
        return codes
    starts = list(plan.starts())
    n = len(starts)

    def fill(i: int, row: np.ndarray) -> None:
        # chunk i of the signal zero-padded by `delay` on both sides, itself zero-padded to n_samples
        item, k = divmod(i, n)
        begin, end = starts[k] - plan.delay, starts[k] - plan.delay + plan.n_samples
        src = audio[item, max(begin, 0) : max(min(end, length), 0)]
        row[0, max(-begin, 0) : max(-begin, 0) + len(src)] = src

    fn = lambda x: codec.encode_frames(x, n_quantizers, padded=False)  # noqa: E731
    out = None
    for i, c in run_batched(fn, fill, (1, plan.n_samples), np.float32, items * n, batch_size, progress):
        if out is None:
            out = np.zeros((items, c.shape[0], n * c.shape[1]), np.int32)
        item, k = divmod(i, n)
        out[item, :, k * c.shape[1] : (k + 1) * c.shape[1]] = c
    return out


def decode_faithful(
    codec: DACModel, codes: np.ndarray, chunk_length: int, padding: bool, batch_size: int = 1,
    progress: Progress = None,
) -> np.ndarray:
    """The original's decompress loop: each ``chunk_length`` slice decoded on its own, concatenated."""
    items, _, total = codes.shape
    starts = list(range(0, total, chunk_length))
    if len(starts) == 1 or total % chunk_length:
        # a single chunk, or a ragged last chunk (never written by the original): one shape each
        parts = [np.asarray(codec.decode_frames(codes[:, :, s : s + chunk_length], padding)) for s in starts]
        if progress:
            progress(len(starts))
        return np.concatenate(parts, axis=-1)
    n = len(starts)

    def fill(i: int, row: np.ndarray) -> None:
        item, k = divmod(i, n)
        row[...] = codes[item, :, starts[k] : starts[k] + chunk_length]

    fn = lambda c: codec.decode_frames(c, padding)  # noqa: E731
    out = None
    shape = (codes.shape[1], chunk_length)
    for i, a in run_batched(fn, fill, shape, codes.dtype, items * n, batch_size, progress):
        if out is None:
            out = np.zeros((items, n * a.shape[-1]), np.float32)
        item, k = divmod(i, n)
        out[item, k * a.shape[-1] : (k + 1) * a.shape[-1]] = a
    return out


# --------------------------------------------------------------------------------------------
# Window-independent mode
# --------------------------------------------------------------------------------------------


def frames_for_window(model: Model, win_duration: float) -> int:
    return max(1, round(win_duration * model.sample_rate / model.hop_length))


def encode_windows(
    model: Model, audio: np.ndarray, win_duration: float, fn=None, batch_size: int = 4, progress: Progress = None,
) -> np.ndarray:
    """Any per-frame encoding of the whole signal at once (padded mode), computed in windows.

    ``fn`` (default: the model's ``encode_frames``) maps a batch of windows ``[batch, 1, window * hop]``
    to ``[batch, ..., window]`` (one output per frame along the last axis); ``audio [items, samples]`` -> ``[items, ..., ceil(samples / hop)]``.
    Each window carries the encoder's receptive field of context, so the result does not depend
    on the window (up to float rounding).
    """
    hop = model.hop_length
    items, length = audio.shape
    total = math.ceil(length / hop)
    plan = independent_plan(total, frames_for_window(model, win_duration), model.encoder_context)

    def fill(i: int, row: np.ndarray) -> None:
        # the signal right-padded with zeros to whole frames, as padded-mode encoding does
        item, k = divmod(i, plan.n_chunks)
        begin = plan.window_start(k) * hop
        src = audio[item, begin : min(begin + plan.window * hop, length)]
        row[0, : len(src)] = src

    batches = run_batched(fn or model.encode_frames, fill, (1, plan.window * hop), np.float32,
                           items * plan.n_chunks, batch_size, progress)
    return _assemble(plan, batches, items, hop_out=1)


def decode_windows(
    model: Model, frames: np.ndarray, win_duration: float, fn=None, batch_size: int = 4, progress: Progress = None,
) -> np.ndarray:
    """Decoding of a whole frame sequence at once (padded mode), computed in windows.

    ``fn`` (default: the model's ``decode_frames``) maps ``[batch, ..., window]`` frames to audio ``[batch, window * hop]``;
    ``frames [items, ..., total]`` -> ``audio [items, samples]`` with the padded decoder's length.
    """
    items, total = frames.shape[0], frames.shape[-1]
    plan = independent_plan(total, frames_for_window(model, win_duration), model.decoder_context)

    def fill(i: int, row: np.ndarray) -> None:
        item, k = divmod(i, plan.n_chunks)
        row[...] = frames[item, ..., plan.window_start(k) : plan.window_start(k) + plan.window]

    batches = run_batched(fn or model.decode_frames, fill, (*frames.shape[1:-1], plan.window), frames.dtype,
                           items * plan.n_chunks, batch_size, progress)
    out = _assemble(plan, batches, items, hop_out=model.hop_length)
    # the padded decoder's own length (320 * frames - 8 for DAC's stride-5 decoders)
    return out[:, : model.decoder_samples(total)]


def encode_independent(
    codec: DACModel, audio: np.ndarray, win_duration: float = 5.0, n_quantizers: Optional[int] = None,
    batch_size: int = 4, progress: Progress = None, padding_frames: int = 0,
) -> np.ndarray:
    """Codes equal to whole-signal padded-mode encoding, whatever the window.

    ``audio [items, samples]`` -> ``codes [items, n, ceil(samples / hop) + padding_frames]``.

    The ``padding_frames`` appended frames (see :func:`~dac_jax.codec.plan.covering_frames`) are the
    last frames of the signal followed by ``padding_frames`` hops of silence, encoded whole: a real
    encoding of what padded-mode encoding assumes lies past the end (zeros). The frames before them
    are not changed by it: they stay exactly the whole-signal encoding.
    """
    fn = lambda x: codec.encode_frames(x, n_quantizers)  # noqa: E731
    codes = encode_windows(codec, audio, win_duration, fn, batch_size, progress)
    if not padding_frames:
        return codes
    # The extended signal's last frames see only its last `context` frames: encode its last window
    # alone, as long as the windows above (one compiled shape for both), unless that window is too
    # short to give them their context (a signal shorter than about one context: then all of it).
    hop, frames, context = codec.hop_length, codes.shape[-1], codec.encoder_context
    total = frames + padding_frames
    window = independent_plan(frames, frames_for_window(codec, win_duration), context).window
    if window - padding_frames < context:
        window = total
    start = (total - window) * hop
    tail = np.zeros((audio.shape[0], window * hop), np.float32)
    tail[:, : audio.shape[-1] - start] = audio[:, start:]
    extra = encode_windows(codec, tail, win_duration, fn, batch_size, progress)[..., -padding_frames:]
    return np.concatenate([codes, extra.astype(codes.dtype)], axis=-1)


def decode_independent(
    codec: DACModel, codes: np.ndarray, win_duration: float = 5.0, batch_size: int = 4,
    progress: Progress = None,
) -> np.ndarray:
    """Audio equal to decoding the whole code sequence at once (padded mode), in windows.

    ``codes [items, n, frames]`` -> ``audio [items, samples]`` with the padded decoder's length.
    """
    return decode_windows(codec, codes, win_duration, None, batch_size, progress)


def encode_latents(
    vae: VAEModel, audio: np.ndarray, win_duration: float = 5.0, batch_size: int = 4, progress: Progress = None,
) -> tuple[np.ndarray, np.ndarray]:
    """DAC-VAE's mean and log-scale equal to whole-signal encoding, whatever the window.

    ``audio [items, samples]`` -> ``(m, logs)``, each ``[items, latent_dim, ceil(samples / hop)]``.
    """
    both = encode_windows(vae, audio, win_duration, None, batch_size, progress)
    dim = vae.config.latent_dim
    m = np.ascontiguousarray(both[:, :dim])
    both = both[:, dim:]  # drops the reference to the mean's half: an hour of latents is 100+ MB
    return m, np.ascontiguousarray(both)


def decode_latents(
    vae: VAEModel, z: np.ndarray, win_duration: float = 5.0, batch_size: int = 4, progress: Progress = None,
) -> np.ndarray:
    """Audio equal to decoding the whole latent sequence at once, in windows.

    ``z [items, latent_dim, frames]`` -> ``audio [items, hop * frames]``.
    """
    return decode_windows(vae, z, win_duration, None, batch_size, progress)


def _assemble(plan: IndependentPlan, batches: Iterator[tuple[int, np.ndarray]], items: int, hop_out: int) -> np.ndarray:
    """Keep each window's own frames (``hop_out`` outputs per frame) and lay them end to end."""
    out = None
    for i, result in batches:
        item, k = divmod(i, plan.n_chunks)
        first, last = plan.kept(k)
        off = plan.offset(k)
        if out is None:
            out = np.zeros((items, *result.shape[:-1], plan.total * hop_out), result.dtype)
        piece = result[..., off * hop_out : (off + last - first) * hop_out]
        out[item, ..., first * hop_out : first * hop_out + piece.shape[-1]] = piece
    return out
