"""Ragged batches: signals of different lengths in one batch give what each gives alone.

Each item is right-padded to the batch's length and its padding filled with noise, which must not
reach its result. Checked against one-by-one encoding here and against the original PyTorch DAC
(each item through its own ``encode``), with lengths from one sample to many receptive fields.
"""

from __future__ import annotations

import numpy as np
import pytest

import dac_jax
from dac_jax import runtime
from dac_jax.audio import synth
from dac_jax.errors import UsageError
from dac_jax.model.config import DACConfig, VAEConfig
from tests import reference
from tests.requires import require_reference

# stride 5 (the 16/24 kHz geometry: a decoder that gives 5L - 1 samples per block) and stride 2
CONFIG = DACConfig(encoder_dim=8, encoder_rates=(2, 5), latent_dim=16, decoder_dim=32, decoder_rates=(5, 2),
                   n_codebooks=4, codebook_size=64, codebook_dim=4, sample_rate=8000)
VAE = VAEConfig(encoder_dim=4, encoder_rates=(2, 3, 4), latent_dim=8, decoder_dim=32, decoder_rates=(4, 3, 2),
                sample_rate=24000)
MIN_MATCH, MIN_MATCH_0 = 0.999, 0.9999  # the bounds; measured: every code equal
# Ragged and one-by-one decoding sum the same products: measured <= 1.6e-7 (DAC, 44/16 kHz presets
# and the configs here) and <= 2e-7 (DAC-VAE); the tolerance is about 10x that.
AUDIO_TOLERANCE = 2e-6


def ragged_batch(lengths, rate, seed=0, fill=0.7):
    """Speech-like items of ``lengths``, right-padded with noise of amplitude ``fill``."""
    rng = np.random.default_rng(seed)
    batch = rng.uniform(-fill, fill, (len(lengths), 1, max(lengths))).astype(np.float32)
    for i, n in enumerate(lengths):
        batch[i, 0, :n] = synth.speech_like(n / rate, rate, seed=seed + i)[:n] if n > 1 else 0.3
    return batch


def lengths_for(model):
    rf = model.module.encoder_receptive_field()
    hop = model.hop_length
    # one sample, under one hop, under the receptive field, about it, many times it, whole frames
    return [1, hop - 3, rf // 2 + 1, rf + 7, 6 * rf + hop + 1, 40 * hop]


@pytest.fixture(scope="module")
def codec():
    return dac_jax.init_model(CONFIG, seed=1)


def alone(codec, audio, lengths):
    return [np.asarray(codec.encode(audio[i : i + 1, :, :n]))[0] for i, n in enumerate(lengths)]


def assert_codes_match(batched, singles, frames):
    for i, (single, f) in enumerate(zip(singles, frames)):
        assert single.shape[-1] == f
        ours = batched[i, :, :f]
        assert np.mean(ours[0] == single[0]) >= MIN_MATCH_0, f"item {i}: codebook 0"
        assert np.mean(ours == single) >= MIN_MATCH, f"item {i}: {np.mean(ours == single):.4%} of codes equal"
        assert np.all(batched[i, :, f:] == 0), f"item {i}: frames past its end are not zero"


def test_encode_ragged_equals_one_by_one(codec):
    lengths = lengths_for(codec)
    audio = ragged_batch(lengths, CONFIG.sample_rate)
    codes = np.asarray(codec.encode(audio, lengths=np.array(lengths)))
    frames = codec.frame_lengths(np.array(lengths))
    assert codes.shape[-1] == frames.max()
    assert_codes_match(codes, alone(codec, audio, lengths), frames)


def test_decode_ragged_equals_one_by_one(codec):
    lengths = lengths_for(codec)
    frames = codec.frame_lengths(np.array(lengths))
    codes = np.array(codec.encode(ragged_batch(lengths, CONFIG.sample_rate), lengths=np.array(lengths)))
    codes[0, :, frames[0]:] = 7  # what lies past an item's frames must not matter
    audio = np.asarray(codec.decode(codes, frame_lengths=frames))
    for i, f in enumerate(frames):
        single = np.asarray(codec.decode(codes[i : i + 1, :, :f]))[0]
        assert single.shape[-1] == codec.decoder_samples(int(f))
        np.testing.assert_allclose(audio[i, :, : single.shape[-1]], single, atol=AUDIO_TOLERANCE, rtol=0)
        assert np.all(audio[i, :, single.shape[-1]:] == 0)


def test_ragged_batches_compile_once_per_shape(codec):
    audio = ragged_batch([900, 300], CONFIG.sample_rate)
    codec.encode(audio, lengths=np.array([900, 300]))
    before = runtime.trace_counts["encode"]
    for lengths in ([17, 900], [900, 899], [1, 1]):
        codec.encode(audio, lengths=np.array(lengths))
    assert runtime.trace_counts["encode"] == before


@pytest.mark.parametrize("lengths, problem", [
    ([5], "one per item"), ([5, 0], "1..900"), ([5, 901], "1..900"), ([5.0, 6.0], "integers"),
])
def test_bad_lengths_are_one_line_errors(codec, lengths, problem):
    with pytest.raises(UsageError, match=problem):
        codec.encode(np.zeros((2, 1, 900), np.float32), lengths=np.array(lengths))


def test_vae_ragged_equals_one_by_one():
    vae = dac_jax.init_vae(VAE, seed=2)
    lengths = lengths_for(vae)
    audio = ragged_batch(lengths, VAE.sample_rate, seed=5)
    out = vae.encode(audio, lengths=np.array(lengths))
    frames = vae.frame_lengths(np.array(lengths))
    for i, (n, f) in enumerate(zip(lengths, frames)):
        single = vae.encode(audio[i : i + 1, :, :n])
        for name in ("m", "logs"):
            ours, theirs = np.asarray(getattr(out, name))[i], np.asarray(getattr(single, name))[0]
            np.testing.assert_allclose(ours[:, :f], theirs, atol=AUDIO_TOLERANCE, rtol=0, err_msg=f"item {i} {name}")
            assert np.all(ours[:, f:] == 0)
    z = np.asarray(out.m)
    audio_out = np.asarray(vae.decode(z, frame_lengths=frames))
    for i, f in enumerate(frames):
        single = np.asarray(vae.decode(z[i : i + 1, :, :f]))[0]
        np.testing.assert_allclose(audio_out[i, :, : single.shape[-1]], single, atol=AUDIO_TOLERANCE, rtol=0)
        assert np.all(audio_out[i, :, single.shape[-1]:] == 0)


def test_ragged_codes_equal_the_original_one_by_one(tmp_path):
    """The original ``dac.DAC`` encoding each item alone (its ``preprocess`` then ``encode``)."""
    require_reference("dac")
    import torch

    torch_model = reference.torch_model(CONFIG, seed=3)
    codec = dac_jax.load_model(reference.reference_checkpoint(CONFIG, tmp_path, seed=3))
    lengths = lengths_for(codec)
    audio = ragged_batch(lengths, CONFIG.sample_rate, seed=9)
    ours = np.asarray(codec.encode(audio, lengths=np.array(lengths)))
    theirs = []
    with torch.no_grad():
        for i, n in enumerate(lengths):
            x = torch_model.preprocess(torch.from_numpy(audio[i : i + 1, :, :n]), CONFIG.sample_rate)
            theirs.append(torch_model.encode(x)[1][0].numpy())
    assert_codes_match(ours, theirs, codec.frame_lengths(np.array(lengths)))
