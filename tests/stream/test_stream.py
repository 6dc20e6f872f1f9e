"""Streaming decode and encode (dac_jax.stream): pushes concatenate to the whole-signal result.

Tiny models (a stride-5 decoder and a DAC-VAE with odd strides included); the released presets'
latencies are pinned from their geometry alone (no weights needed).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dac_jax import runtime, stream
from dac_jax.api import Codec, VAECodec
from dac_jax.errors import UsageError
from dac_jax.model.config import PRESETS, VAE_PRESETS
from dac_jax.model.dac import DAC, init_variables
from dac_jax.model.vae import DACVAE, init_vae_variables
from dac_jax.nn.fold import fold_variables

BLOCKS = (1, 2, 5)  # push sizes drawn from few shapes: each compiles once


@pytest.fixture(scope="module", params=["tiny", "tiny-odd", "vae-tiny"])
def codec(request):
    name = request.param
    if name.startswith("vae"):
        config = VAE_PRESETS[name]
        return VAECodec(config, init_vae_variables(config, seed=1))
    config = PRESETS[name]
    return Codec(config, init_variables(config, seed=1))


def _frames(codec, rng, batch: int, frames: int) -> np.ndarray:
    """Random codes (DAC) or latents (DAC-VAE) ``[batch, C, frames]``."""
    if isinstance(codec, Codec):
        return rng.integers(0, codec.config.codebook_size, (batch, codec.n_codebooks, frames)).astype(np.int32)
    return rng.standard_normal((batch, codec.config.latent_dim, frames)).astype(np.float32)


def _split(rng, total: int, sizes=BLOCKS) -> list[int]:
    """Seeded random push sizes summing to ``total``."""
    cuts = []
    while sum(cuts) < total:
        cuts.append(min(int(rng.choice(sizes)), total - sum(cuts)))
    return cuts


def _cat(parts):
    return jax.tree_util.tree_map(lambda *a: np.concatenate(a, axis=-1), *parts)


# -- decoding -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_decoder_pushes_equal_whole_decode(codec, seed):
    rng = np.random.default_rng(seed)
    frames = int(rng.integers(1, 30))
    x = _frames(codec, rng, 2, frames)
    full = np.asarray(codec.decode(x))
    decoder = codec.stream_decoder(batch_size=2)
    got, i = [], 0
    for k in _split(rng, frames):
        got.append(decoder.push(x[..., i: i + k]))
        i += k
        so_far = np.concatenate(got, axis=-1)
        # what is returned is final: a prefix of the whole decode, never revised later
        np.testing.assert_allclose(so_far, full[..., : so_far.shape[-1]], atol=1e-5, rtol=0)
    got.append(decoder.flush())
    audio = np.concatenate(got, axis=-1)
    assert audio.shape == full.shape, (audio.shape, full.shape)
    np.testing.assert_allclose(audio, full, atol=1e-5, rtol=0)


def test_decoder_latency_is_exact(codec):
    """After frame f and ``decoder_frames`` more, frame f's audio is final; one frame fewer, it is not out."""
    latency = codec.stream_latency
    hop, f = codec.hop_length, 2
    rng = np.random.default_rng(3)
    x = _frames(codec, rng, 2, f + latency.decoder_frames + 8)  # batch 2: the property test's programs
    full = np.asarray(codec.decode(x))  # a longer sequence: frame f is far from its end
    decoder = codec.stream_decoder(batch_size=2)
    pushed = f + 1 + latency.decoder_frames
    audio = np.concatenate([decoder.push(x[..., i: i + 1]) for i in range(pushed)], axis=-1)
    assert audio.shape[-1] >= (f + 1) * hop
    np.testing.assert_allclose(audio[..., f * hop: (f + 1) * hop], full[..., f * hop: (f + 1) * hop], atol=1e-5, rtol=0)
    # the sample-level latency: exactly the audio up to pushed * hop - decoder_samples is out
    assert audio.shape[-1] == pushed * hop - latency.decoder_samples
    assert (pushed - 1) * hop - latency.decoder_samples < (f + 1) * hop


def test_decoder_compiles_once_per_block_size():
    config = PRESETS["tiny"]
    codec = Codec(config, init_variables(config))
    x = _frames(codec, np.random.default_rng(0), 3, 4 * 6)
    key = (stream.StreamSpec(codec.module), (3, codec.n_codebooks, 4))
    before = stream.trace_counts[key]
    for run in range(2):  # a second stream reuses the first one's program
        decoder = codec.stream_decoder(batch_size=3)
        for i in range(0, x.shape[-1], 4):
            decoder.push(x[..., i: i + 4])
    assert stream.trace_counts[key] - before == 1


def test_pure_step_under_scan():
    """The public step in a user's ``lax.scan``: the same samples as the whole decode."""
    config = PRESETS["tiny-odd"]
    codec = Codec(config, init_variables(config))
    n_blocks, k = 6, 2
    x = _frames(codec, np.random.default_rng(4), 1, n_blocks * k)
    spec = stream.StreamSpec(codec.module)
    variables = codec.inference_variables

    def body(state, block):
        return stream.step(spec, variables, state, block)

    blocks = jnp.moveaxis(jnp.asarray(x).reshape(1, codec.n_codebooks, n_blocks, k), 2, 0)
    state, out = jax.jit(lambda s, b: jax.lax.scan(body, s, b))(spec.init(1), blocks)
    audio = np.concatenate(list(np.asarray(out)), axis=-1)  # [1, 1, n_blocks * k * hop] from time start
    assert int(state["frames"]) == n_blocks * k
    start = spec.stream.start
    full = np.asarray(codec.decode(x))
    final = audio[..., -start:]  # times 0 .. frames * hop + start: everything final so far
    np.testing.assert_allclose(final, full[..., : final.shape[-1]], atol=1e-5, rtol=0)


@pytest.mark.parametrize("variables", ["trainable", "winograd"])
def test_pure_step_on_other_variables(variables):
    """The step folds trainable variables itself, and runs Winograd-folded ones (dac_jax.nn.winograd)."""
    config = PRESETS["tiny"]
    module = DAC(config)
    params = jax.tree_util.tree_map(jnp.asarray, init_variables(config))
    if variables == "winograd":  # every k7 conv, tiny's 32 channels included
        params = fold_variables(module, params, jnp.zeros((1, 1, config.hop_length)), winograd=4, winograd_min_channels=1)
    x = np.random.default_rng(7).integers(0, config.codebook_size, (1, config.n_codebooks, 12)).astype(np.int32)
    spec = stream.StreamSpec(module)
    step = jax.jit(lambda s, b: stream.step(spec, params, s, b))
    state, out = spec.init(1), []
    for i in range(0, 12, 3):
        state, audio = step(state, x[..., i: i + 3])
        out.append(np.asarray(audio))
    state, audio = step(stream.end(state), jnp.zeros((1, config.n_codebooks, spec.drain), jnp.int32))
    out.append(np.asarray(audio))
    full = np.asarray(runtime.decode(module, params, x))
    audio = np.concatenate(out, axis=-1)[..., -spec.stream.start:][..., : full.shape[-1]]
    np.testing.assert_allclose(audio, full, atol=1e-5, rtol=0)


def test_state_sizes_come_from_the_geometry(codec):
    """Each conv keeps the left context its geometry needs: span - 1 for a stride-1 conv, taps - 1
    frames for a transposed one; each residual skip waits for its branch's lookahead."""
    spec = stream.StreamSpec(codec.module)
    state = spec.init(1)["layers"]

    def walk(ops):
        for op in ops:
            if isinstance(op, stream.Conv):
                g = op.geometry
                want = -(-g.kernel // g.stride) - 1 if g.transposed else g.span - 1
                assert op.history == want, (op.path, g)
                assert state["/".join(op.path)].shape == (1, want, op.channels)
            elif isinstance(op, stream.Residual):
                lookahead = sum(o.geometry.span - 1 - o.geometry.padding for o in op.branch if isinstance(o, stream.Conv))
                assert op.delay == lookahead, op.path
                walk(op.branch)

    walk(spec.stream.ops)


# -- encoding -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_encoder_pushes_equal_whole_encode(codec, seed):
    """Pushes of any length, not whole hops (a remainder waits on the host): 1..3 hops per step."""
    rng = np.random.default_rng(seed)
    hop = codec.hop_length
    length = int(rng.integers(1, 40 * hop))
    audio = (0.3 * rng.standard_normal((2, 1, length))).astype(np.float32)
    encoder = codec.stream_encoder(batch_size=2)
    cuts = _split(rng, length, sizes=(1, hop - 1, hop + 1, 2 * hop + 3))
    got, i = [], 0
    for n in cuts:
        got.append(encoder.push(audio[..., i: i + n]))
        i += n
    got.append(encoder.flush())
    out = _cat(got)
    if isinstance(codec, Codec):
        full = np.asarray(codec.encode(audio))
        assert out.shape == full.shape, (out.shape, full.shape)
        assert (out == full).mean() >= 0.999
    else:
        full = codec.encode(audio)
        for name in ("z", "m", "logs"):
            want = np.asarray(getattr(full, name))
            assert getattr(out, name).shape == want.shape
            np.testing.assert_allclose(getattr(out, name), want, atol=1e-5, rtol=0)


def test_encoder_latency(codec):
    """Frame f's code is out once ``encoder_frames`` hops past it have been pushed."""
    hop, lag = codec.hop_length, codec.stream_latency.encoder_frames
    audio = (0.3 * np.random.default_rng(5).standard_normal((2, 1, (lag + 4) * hop))).astype(np.float32)
    encoder = codec.stream_encoder(batch_size=2)
    out = _cat([encoder.push(audio[..., i * hop: (i + 1) * hop]) for i in range(lag + 3)])
    assert jax.tree_util.tree_leaves(out)[0].shape[-1] == 3


# -- the facade -----------------------------------------------------------------------------------------


def test_released_latencies():
    """Pinned from the geometry: samples the decoder must see past a frame's audio, and hops for the encoder."""
    want = {"44khz": (4757, 10, 8), "24khz": (3141, 10, 8), "16khz": (3141, 10, 8)}
    for name, values in want.items():
        lat = stream.latency(DAC(PRESETS[name]))
        assert (lat.decoder_samples, lat.decoder_frames, lat.encoder_frames) == values, name
    assert stream.latency(DAC(PRESETS["44khz"])).decoder_ms == pytest.approx(107.87, abs=0.01)
    lat = stream.latency(DACVAE(VAE_PRESETS["vae24khz-x2"]))
    assert (lat.decoder_samples, lat.decoder_frames, lat.encoder_frames) == (6827, 15, 13)


def test_usage_errors():
    config = PRESETS["tiny"]
    codec = Codec(config, init_variables(config))
    decoder = codec.stream_decoder()
    with pytest.raises(UsageError):
        decoder.flush()
    with pytest.raises(UsageError):
        decoder.push(np.zeros((2, codec.n_codebooks, 1), np.int32))
    with pytest.raises(UsageError):
        codec.stream_encoder(n_quantizers=codec.n_codebooks + 1)


@pytest.mark.parametrize("kind", ["dac", "vae"])
def test_bad_pushes_are_one_line_errors(kind):
    """What decode / encode refuse, a push refuses too, in one line naming the problem, and a
    stream that has been flushed takes nothing more."""
    if kind == "dac":
        config = PRESETS["tiny"]
        codec = Codec(config, init_variables(config))
        n, size = codec.n_codebooks, config.codebook_size
        good = np.zeros((1, n, 2), np.int32)
        bad = {"integer codes": good.astype(np.float32), r"0\.\.%d; found 0\.\.%d" % (size - 1, size): good + np.eye(1, 2, dtype=np.int32) * size,
               "found -1": good - 1, r"n \(1\.\.%d\)" % n: np.zeros((1, n + 1, 2), np.int32)}
    else:
        config = VAE_PRESETS["vae-tiny"]
        codec = VAECodec(config, init_vae_variables(config))
        good = np.zeros((1, config.latent_dim, 2), np.float32)
        bad = {"NaN or Inf": np.where(np.arange(2) == 1, np.nan, good).astype(np.float32),
               "floating-point latents; got int32": good.astype(np.int32),
               f"latents \\[batch, {config.latent_dim}, frames\\]": np.zeros((1, config.latent_dim + 1, 2), np.float32)}
    decoder = codec.stream_decoder()
    for message, frames in bad.items():
        with pytest.raises(UsageError, match=message) as error:
            decoder.push(frames)
        assert "\n" not in str(error.value)
    assert decoder.push(good).shape[:2] == (1, 1)  # the refusals left the stream as it was
    decoder.flush()
    for call in (lambda: decoder.push(good), decoder.flush):
        with pytest.raises(UsageError, match="after flush"):
            call()

    encoder = codec.stream_encoder()
    hop = codec.hop_length
    for message, audio in {"floating-point audio": np.zeros((1, 1, hop), np.int16),
                           "NaN or Inf": np.full((1, 1, hop), np.inf, np.float32)}.items():
        with pytest.raises(UsageError, match=message):
            encoder.push(audio)
    encoder.push(np.zeros((1, 1, hop + 3), np.float32))
    encoder.flush()
    with pytest.raises(UsageError, match="after flush"):
        encoder.push(np.zeros((1, 1, hop), np.float32))


# -- full size (slow) -----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["44khz", "vae24khz-x2"])  # 24khz: the stride-5 decoder, as tiny-odd
def test_full_size_decoder_and_encoder(name):
    """The released topologies (random weights): 3-frame pushes against the whole decode and encode."""
    if name.startswith("vae"):
        codec = VAECodec(VAE_PRESETS[name], init_vae_variables(VAE_PRESETS[name]))
    else:
        codec = Codec(PRESETS[name], init_variables(PRESETS[name]))
    rng = np.random.default_rng(6)
    x = _frames(codec, rng, 1, 25)
    decoder = codec.stream_decoder()
    audio = np.concatenate([decoder.push(x[..., i: i + 3]) for i in range(0, 25, 3)] + [decoder.flush()], axis=-1)
    np.testing.assert_allclose(audio, np.asarray(codec.decode(x)), atol=1e-5, rtol=0)
    signal = (0.3 * rng.standard_normal((1, 1, 20 * codec.hop_length + 7))).astype(np.float32)
    encoder = codec.stream_encoder()
    n = 3 * codec.hop_length
    out = _cat([encoder.push(signal[..., i: i + n]) for i in range(0, signal.shape[-1], n)] + [encoder.flush()])
    if isinstance(codec, Codec):
        assert (out == np.asarray(codec.encode(signal))).mean() >= 0.999
    else:
        np.testing.assert_allclose(out.m, np.asarray(codec.encode(signal).m), atol=1e-5, rtol=0)
