"""Streaming encode and decode: the padded-mode (whole-signal) result, pushed a few frames at a time.

A streaming module is a state pytree plus a step function (as in moshi's ``StreamingModule``):
``step(spec, variables, state, block) -> (state, out)`` is pure and compiled once per block shape;
:class:`StreamDecoder` / :class:`StreamEncoder` hold the state on the device and trim what the
step gives on the host. Concatenated, the pushes equal one padded-mode ``decode`` / ``encode`` of
the whole sequence, for any split of it.

Nothing here describes the network a second time. :func:`plan` walks the same ``layers()`` the
forward pass runs and derives every buffer from each layer's :class:`ConvGeometry`. DAC is
non-causal, but every conv has a finite reach, so each one keeps the left context it needs and
emits an output as soon as the last input it reads has arrived::

    conv (stride s, span, padding p): output tau reads inputs [tau*s - p, tau*s - p + span)
        and is emitted with input tau*s + r, r = span - 1 - p (its lookahead)
    transposed (stride s, J taps):    input frame f completes outputs [f*s - p, (f + 1)*s - p)

So each layer's output is a stream that starts ``start`` samples before the signal does (a static
offset), ``rate`` samples per frame; the offsets compose down the stack, and the last one is the
algorithmic latency (:func:`latency`). The padded mode's zero padding is a mask on each conv's
input: times before 0 are zero (the left padding; what upstream layers computed there from their
own padding is discarded), and so are times at or past that layer's length once the stream has
ended (the right padding; :meth:`StreamDecoder.flush` sets the end and pushes zeros to drain).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from dac_jax import options
from dac_jax.errors import UsageError
from dac_jax.model.dac import DAC, Autoencoder, to_channels_first, to_channels_last
from dac_jax.model.vae import VAELatents
from dac_jax.nn import geometry as geo
from dac_jax.nn import precision, winograd
from dac_jax.nn.blocks import ResidualUnit
from dac_jax.nn.geometry import ConvGeometry
from dac_jax.nn.layers import FOLDED, Layer, Sequential, WNConv1d, fold_kernel, weight_norm

#: Traces of the facade's compiled step, keyed ``(spec, block shape)``: one each is the contract.
trace_counts: collections.Counter = collections.Counter()

_NO_END = np.iinfo(np.int32).max


# -- the plan: the layer list with stream offsets ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Conv:
    """A weight-normed conv in the stream: ``history`` input samples kept between steps."""

    path: tuple[str, ...]
    geometry: ConvGeometry
    channels: int  # input channels
    start: int  # time of the input stream's first sample, relative to the signal (<= 0)
    rate: int  # input samples per frame
    history: int
    prefix: tuple[ConvGeometry, ...]  # the convs before it in the stack: its input's length


@dataclasses.dataclass(frozen=True)
class Pointwise:
    path: tuple[str, ...]
    layer: Layer


@dataclasses.dataclass(frozen=True)
class Residual:
    """A residual unit: the branch, and the skip path delayed by ``delay`` samples to meet it."""

    path: tuple[str, ...]
    branch: tuple
    delay: int
    channels: int


class Stream(NamedTuple):
    ops: tuple
    start: int  # the output stream's offset (<= 0), in output samples
    rate: int  # output samples per frame


def _conv_out(g: ConvGeometry, start: int, rate: int) -> tuple[int, int, int]:
    """``(output start, output rate, history)`` of conv ``g`` on a stream (see the module docstring)."""
    p = g.padding
    if g.transposed:
        if g.dilation != 1:
            raise NotImplementedError(f"streaming a dilated transposed conv: {g}")
        return start * g.stride - p, rate * g.stride, -(-g.kernel // g.stride) - 1
    if rate % g.stride:
        raise ValueError(f"{rate} samples per frame do not divide by the stride of {g}")
    lookahead = g.span - 1 - p
    out = -(-(start - lookahead) // g.stride)  # the first output whose last input is in the stream
    return out, rate // g.stride, start - out * g.stride + p


def plan(layer: Layer, path: tuple[str, ...], start: int = 0, rate: int = 1,
         prefix: tuple[ConvGeometry, ...] = ()) -> Stream:
    """The stream of a padded-mode ``layer`` (at ``path`` in the variables) whose input stream
    starts at ``start`` with ``rate`` samples per frame, walked from its ``layers()``."""
    if isinstance(layer, WNConv1d):
        out, out_rate, history = _conv_out(layer.geometry, start, rate)
        return Stream((Conv(path, layer.geometry, layer.in_features, start, rate, history, prefix),), out, out_rate)
    if isinstance(layer, Sequential):
        ops = []
        s = Stream((), start, rate)
        for child in layer.layers():
            s = plan(child, path + (child.name,), s.start, s.rate, prefix)
            prefix = prefix + child.geometries()
            ops.extend(s.ops)
        if isinstance(layer, ResidualUnit):  # padded mode: y = x + branch(x), same length
            if s.rate != rate:
                raise ValueError(f"a residual branch must keep the rate: {rate} -> {s.rate}")
            return Stream((Residual(path, tuple(ops), start - s.start, layer.dim),), s.start, rate)
        return Stream(tuple(ops), s.start, s.rate)
    if layer.geometries():
        raise NotImplementedError(f"no streaming rule for {type(layer).__name__}")
    return Stream((Pointwise(path, layer),), start, rate)


# -- the step -----------------------------------------------------------------------------------


def _get(tree: dict, path: tuple[str, ...]) -> Optional[dict]:
    for name in path:
        if not isinstance(tree, dict) or name not in tree:
            return None
        tree = tree[name]
    return tree


def init_state(stream: Stream, batch: int) -> dict:
    """Zeros for every buffer (times before the signal: the left padding), keyed by layer path."""
    state = {}

    def walk(ops):
        for op in ops:
            if isinstance(op, Conv):
                state["/".join(op.path)] = jnp.zeros((batch, op.history, op.channels), jnp.float32)
            elif isinstance(op, Residual):
                state["/".join(op.path)] = jnp.zeros((batch, op.delay, op.channels), jnp.float32)
                walk(op.branch)

    walk(stream.ops)
    return state


def _time_mask(x: jax.Array, t0: jax.Array, limit: jax.Array) -> jax.Array:
    """``x [B, n, C]`` (times ``t0 + i``) zeroed outside ``[0, limit)``: the padded mode's zeros."""
    t = t0 + jnp.arange(x.shape[1], dtype=jnp.int32)
    valid = (t >= 0) & (t < limit)
    return jnp.where(valid[None, :, None], x, jnp.zeros((), x.dtype))


def _conv_step(op: Conv, variables: dict, buffer: jax.Array, x: jax.Array, frames, length) -> tuple:
    """``length``: the stack's input length once the stream has ended, else 0."""
    g = op.geometry
    t0 = op.start + frames * op.rate
    limit = jnp.where(length > 0, geo.output_length(op.prefix, length, padded=True), _NO_END)
    x = jnp.concatenate([buffer, _time_mask(x, t0, limit)], axis=1)
    n = x.shape[1] - op.history
    folded = _get(variables.get(FOLDED, {}), op.path)
    if folded is None:  # trainable variables: fold here (inference variables come folded)
        conv = _get(variables["params"], op.path)
        kernel, bias = fold_kernel(weight_norm(conv["weight_v"], conv["weight_g"]), g), conv["bias"]
    elif "winograd_kernel" in folded:
        u, bias = folded["winograd_kernel"], folded["bias"]
        y = winograd.conv1d(x, u, u.shape[0] - g.kernel + 1, g.dilation, (0, 0), bias)
        return x[:, n:], y[:, :n]
    else:
        kernel, bias = folded["kernel"], folded["bias"]
    dn = ("NWC", "WIO", "NWC")
    operand, accumulate = precision.operands(x, kernel)  # a bfloat16 kernel (dac_jax.nn.precision)
    if g.transposed:  # polyphase (dac_jax.nn.layers.conv_transpose_polyphase), no padding: n frames in
        y = lax.conv_general_dilated(operand, kernel, (1,), [(0, 0)], dimension_numbers=dn,
                                     preferred_element_type=accumulate)
        y = y.reshape(y.shape[0], n * g.stride, -1)
    else:
        used = (n // g.stride - 1) * g.stride + g.span  # the n / s outputs emitted now
        y = lax.conv_general_dilated(operand[:, :used], kernel, (g.stride,), [(0, 0)], rhs_dilation=(g.dilation,),
                                     dimension_numbers=dn, preferred_element_type=accumulate)
    return x[:, n:], y + bias


def _run(ops: tuple, variables: dict, state: dict, new: dict, x: jax.Array, frames, length) -> jax.Array:
    for op in ops:
        key = "/".join(op.path)
        if isinstance(op, Conv):
            new[key], x = _conv_step(op, variables, state[key], x, frames, length)
        elif isinstance(op, Residual):
            skip = jnp.concatenate([state[key], x], axis=1)
            new[key] = skip[:, x.shape[1]:]
            x = skip[:, : x.shape[1]] + _run(op.branch, variables, state, new, x, frames, length)
        else:
            sub = {c: t for c in variables if (t := _get(variables[c], op.path)) is not None}
            x = op.layer.apply(sub, x)
    return x


# -- what streams: the decoder and the encoder of DAC and DAC-VAE -------------------------------------------


@dataclasses.dataclass(frozen=True)
class StreamSpec:
    """What one step runs: ``module``'s decoder (frames in) or encoder (audio in); hashable, static."""

    module: Autoencoder
    encoder: bool = False
    n_quantizers: Optional[int] = None  # DAC encoder

    @functools.cached_property
    def stream(self) -> Stream:
        encoder, _, decoder = self.module.parts()
        if self.encoder:
            return plan(encoder, ("encoder",), 0, self.module.config.hop_length)
        return plan(decoder, ("decoder",), 0, 1)

    @property
    def in_rate(self) -> int:
        """Input samples per frame: the hop (audio) or 1 (frames)."""
        return self.module.config.hop_length if self.encoder else 1

    @property
    def drain(self) -> int:
        """Zero frames that flush pushes to complete the last frames' outputs."""
        s = self.stream
        return -(-(-s.start) // s.rate)

    def init(self, batch: int) -> dict:
        """The state before the first frame: ``frames`` pushed, ``end`` (frames; 0 while open), buffers."""
        return {"frames": jnp.zeros((), jnp.int32), "end": jnp.zeros((), jnp.int32),
                "layers": init_state(self.stream, batch)}


def step(spec: StreamSpec, variables: dict, state: dict, block: jax.Array) -> tuple[dict, Any]:
    """One pure step: ``block`` of k frames in -> ``(state, out)``, k frames' worth out.

    Decoder: ``block`` is codes ``[B, n, k]`` (DAC) or latents ``z [B, D, k]`` (DAC-VAE); ``out`` is
    ``audio [B, 1, k * hop]`` at times ``start + frames * hop`` onwards (``frames``: pushed before;
    ``start = spec.stream.start``, negative: samples before time 0 are meaningless). Encoder: ``block``
    is ``audio [B, 1, k * hop]``; ``out`` is ``codes [B, n, k]`` (DAC) or :class:`VAELatents`
    (``z = m``, DAC-VAE) for frames ``start + frames`` onwards. Use it inside your own ``jit`` or
    ``scan``; :func:`end` marks the end of the stream.
    """
    with spec.module.precision_context():  # the model's precision, as its apply runs under
        return _step(spec, variables, state, block)


def _step(spec: StreamSpec, variables: dict, state: dict, block: jax.Array) -> tuple[dict, Any]:
    module = spec.module
    frames, length = state["frames"], state["end"] * spec.in_rate
    new: dict = {}
    if spec.encoder:
        x = _run(spec.stream.ops, variables, state["layers"], new, to_channels_last(block), frames, length)
        if isinstance(module, DAC):
            out = module.apply(variables, x, spec.n_quantizers, method=lambda m, z, n: m.quantizer(z, n)).codes
        else:
            _, m, logs = module.apply(variables, x, method=lambda m, z: m.bottleneck.encode(z))
            m, logs = to_channels_first(m), to_channels_first(logs)
            out = VAELatents(m, m, logs)
        k = block.shape[-1] // spec.in_rate
    else:
        if isinstance(module, DAC):
            z = module.apply(variables, block, method=DAC.from_codes)[0]
            x = to_channels_last(z)
        else:
            x = module.apply(variables, to_channels_last(block), method=lambda m, z: m.bottleneck.decode(z))
        out = to_channels_first(_run(spec.stream.ops, variables, state["layers"], new, x, frames, length))
        k = block.shape[-1]
    return {"frames": frames + k, "end": state["end"], "layers": new}, out


def end(state: dict) -> dict:
    """``state`` with the stream ended after the frames pushed so far: later steps see zeros past
    each layer's length (the right padding), so pushing ``spec.drain`` zero frames completes it."""
    return {**state, "end": jnp.copy(state["frames"])}  # a buffer of its own: the state is donated


@functools.partial(jax.jit, static_argnames=("spec",), donate_argnames=("state",))
def _compiled_step(spec: StreamSpec, variables: dict, state: dict, block: jax.Array):
    trace_counts[spec, block.shape] += 1
    return step(spec, variables, state, block)


# -- latency ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StreamLatency:
    """Algorithmic latency: how much must arrive after a frame before its output is final.

    ``decoder_frames`` frames must follow frame f before its audio ``[f * hop, (f + 1) * hop)`` is
    final (``decoder_samples`` of them, at the sample level: the decoder's right reach). The encoder
    gives frame f's code once ``encoder_frames`` hops of audio past frame f have arrived.
    """

    decoder_samples: int
    decoder_frames: int
    encoder_frames: int
    hop_length: int
    sample_rate: int

    @property
    def decoder_ms(self) -> float:
        return 1000.0 * self.decoder_samples / self.sample_rate

    @property
    def encoder_samples(self) -> int:
        return self.encoder_frames * self.hop_length

    @property
    def encoder_ms(self) -> float:
        return 1000.0 * self.encoder_samples / self.sample_rate

    @property
    def total_ms(self) -> float:
        """Encoder then decoder, one-frame pushes: from a frame's first sample in to that sample final out."""
        return 1000.0 * (self.encoder_samples + self.hop_length + self.decoder_frames * self.hop_length) / self.sample_rate


def latency(module: Autoencoder) -> StreamLatency:
    dec, enc = StreamSpec(module), StreamSpec(module, encoder=True)
    return StreamLatency(-dec.stream.start, dec.drain, enc.drain, module.config.hop_length, module.config.sample_rate)


# -- the host side ----------------------------------------------------------------------------------------


class _Streamer:
    """The state on the device, and the host's trimming of each step's block to what is final and new."""

    def __init__(self, model, spec: StreamSpec, batch_size: int):
        self._model = model
        self.spec = spec
        self.batch_size = batch_size
        self.state = spec.init(batch_size)
        self.frames = 0  # frames pushed
        self._emitted = 0  # outputs returned (output samples or frames)
        self._block: Optional[tuple] = None  # the shape of a one-frame block, for flush's zeros
        self._done = False  # flushed: the state has drained, nothing more can follow

    def _check_open(self, what: str) -> None:
        if self._done:
            raise UsageError(f"{what} after flush: this stream is done; start a new one for more")

    def _push(self, block: jax.Array, length: Optional[int] = None):
        t0 = self.spec.stream.start + self.frames * self.spec.stream.rate
        self.state, out = _compiled_step(self.spec, self._model.inference_variables, self.state, block)
        self.frames += block.shape[-1] // self.spec.in_rate
        # the block covers times [t0, t0 + n): keep [emitted, n or length), dropping what lies
        # before the signal (the left padding's outputs) and, at the end, past its length
        n = block.shape[-1] // self.spec.in_rate * self.spec.stream.rate
        stop = t0 + n if length is None else min(t0 + n, length)
        lo = max(self._emitted - t0, 0)
        hi = max(stop - t0, lo)
        self._emitted = max(self._emitted, t0 + hi)
        return jax.tree_util.tree_map(lambda a: np.asarray(a)[..., lo:hi], out)

    def _drain(self, length: int):
        self.state = end(self.state)
        shape = self._block[:-1] + (self.spec.drain * self._block[-1],)
        return self._push(jnp.zeros(shape, self._block_dtype), length)


class StreamDecoder(_Streamer):
    """``push(frames [B, C, k])`` (codes for DAC, latents ``z`` for DAC-VAE; any k >= 1) -> the audio
    now final, ``[B, 1, m]`` (numpy); ``flush()`` -> the rest. Concatenated: the padded-mode decode of
    all frames pushed (:func:`dac_jax.runtime.decode` / ``vae_decode``). Each block size compiles once.
    """

    def __init__(self, model, batch_size: int = 1):
        super().__init__(model, StreamSpec(model.module), batch_size)
        self._block_dtype = jnp.int32 if isinstance(model.module, DAC) else jnp.float32

    def push(self, frames: Any) -> np.ndarray:
        self._check_open("push")
        frames = np.asarray(frames)
        if frames.ndim != 3 or frames.shape[0] != self.batch_size or frames.shape[-1] < 1:
            raise UsageError(f"push takes [{self.batch_size}, channels, frames >= 1]; got {frames.shape}")
        if self._block is not None and frames.shape[1] != self._block[1]:
            raise UsageError(f"{frames.shape[1]} channels after {self._block[1]}: one stream, one width")
        self._check_frames(frames)
        self._block = frames.shape[:-1] + (1,)
        return self._push(jnp.asarray(frames, self._block_dtype))

    def _check_frames(self, frames: np.ndarray) -> None:
        """What ``decode`` refuses, refused here too: codes that are not codebook indices, latents
        that are not finite, or the wrong width."""
        config = self._model.module.config
        if isinstance(self._model.module, DAC):
            if not 1 <= frames.shape[1] <= config.n_codebooks:
                raise UsageError(f"push takes codes [batch, n (1..{config.n_codebooks}), frames]; got {frames.shape}")
            if not np.issubdtype(frames.dtype, np.integer):
                raise UsageError(f"push takes integer codes; got {frames.dtype}")
            lo, hi = int(frames.min()), int(frames.max())
            if lo < 0 or hi >= config.codebook_size:
                raise UsageError(f"codes must be in 0..{config.codebook_size - 1}; found {lo}..{hi}")
            return
        if frames.shape[1] != config.latent_dim:
            raise UsageError(f"push takes latents [batch, {config.latent_dim}, frames]; got {frames.shape}")
        if not np.issubdtype(frames.dtype, np.floating) or not np.isfinite(frames).all():
            raise UsageError(f"push takes finite floating-point latents; got {frames.dtype}"
                             f"{' with NaN or Inf' if np.issubdtype(frames.dtype, np.floating) else ''}")

    def flush(self) -> np.ndarray:
        """The rest of the audio; the stream is then done."""
        self._check_open("flush")
        if self._block is None:
            raise UsageError("flush before any push: nothing to decode")
        self._done = True
        return self._drain(self._model.module.decoder_samples(self.frames))


class StreamEncoder(_Streamer):
    """``push(audio [B, 1, t])`` (any t) -> the frames now final: codes ``[B, n, m]`` (DAC) or
    :class:`VAELatents` ``(z = m, m, logs)``, each ``[B, D, m]`` (DAC-VAE), numpy; ``flush()`` -> the
    rest. Concatenated: the padded-mode encode of all audio pushed (zero-padded to whole frames).
    Audio is stepped in whole hops; a remainder waits on the host for the next push.
    """

    def __init__(self, model, batch_size: int = 1, n_quantizers: Optional[int] = None):
        super().__init__(model, StreamSpec(model.module, encoder=True, n_quantizers=n_quantizers), batch_size)
        self._block_dtype = jnp.float32
        self._block = (batch_size, 1, model.hop_length)
        self._pending = np.zeros((batch_size, 1, 0), np.float32)

    def push(self, audio: Any):
        self._check_open("push")
        audio = np.asarray(audio)
        if audio.ndim != 3 or audio.shape[:2] != (self.batch_size, 1):
            raise UsageError(f"push takes [{self.batch_size}, 1, samples]; got {audio.shape}")
        if not np.issubdtype(audio.dtype, np.floating):
            raise UsageError(f"push takes floating-point audio (float32 in [-1, 1]); got {audio.dtype}")
        if not np.isfinite(audio).all():
            raise UsageError("push: the audio contains NaN or Inf samples")
        audio = audio.astype(np.float32, copy=False)
        audio = np.concatenate([self._pending, audio], axis=-1)
        whole = audio.shape[-1] // self.spec.in_rate * self.spec.in_rate
        self._pending = audio[..., whole:]
        if whole == 0:
            return self._empty()
        return self._push(jnp.asarray(audio[..., :whole]))

    def flush(self):
        """The remaining frames (the last partial hop zero-padded, as ``encode`` pads); the stream is done."""
        self._check_open("flush")
        if self.frames == 0 and not self._pending.shape[-1]:
            raise UsageError("flush before any audio: nothing to encode")
        self._done = True
        out = []
        if self._pending.shape[-1]:
            pad = self.spec.in_rate - self._pending.shape[-1]
            out.append(self._push(jnp.asarray(np.pad(self._pending, ((0, 0), (0, 0), (0, pad))))))
            self._pending = self._pending[..., :0]
        out.append(self._drain(self.frames))
        return jax.tree_util.tree_map(lambda *a: np.concatenate(a, axis=-1), *out)

    def _empty(self):
        return jax.tree_util.tree_map(lambda a: np.asarray(a)[..., :0], self._out_shape())

    def _out_shape(self):
        spec, b = self.spec, self.batch_size
        if isinstance(spec.module, DAC):
            n = spec.n_quantizers or spec.module.config.n_codebooks
            return np.zeros((b, n, 0), np.int32)
        d = spec.module.config.latent_dim
        z = np.zeros((b, d, 0), np.float32)
        return VAELatents(z, z, z)


def stream_decoder(model, batch_size: int = 1) -> StreamDecoder:
    return StreamDecoder(model, batch_size)


def stream_encoder(model, batch_size: int = 1, n_quantizers: Optional[int] = None) -> StreamEncoder:
    if isinstance(model.module, DAC):
        n_quantizers = options.n_quantizers(n_quantizers, model.config.n_codebooks)
    elif n_quantizers is not None:
        raise UsageError("n_quantizers applies to DAC only; DAC-VAE has no codebooks")
    return StreamEncoder(model, batch_size, n_quantizers)


__all__ = [
    "Conv", "Pointwise", "Residual", "Stream", "StreamDecoder", "StreamEncoder", "StreamLatency", "StreamSpec",
    "end", "latency", "plan", "step", "stream_decoder", "stream_encoder", "trace_counts",
]
