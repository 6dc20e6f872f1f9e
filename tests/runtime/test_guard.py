"""The checked fast encoder (dac_jax.guard): Winograd codes, doubtful frames recomputed directly,
the direct path's codes exactly: on trained weights and real audio, in padded, unpadded and ragged
batches, with every frame doubtful, and with a fast path made noisy enough to flip codes."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

import dac_jax
from dac_jax import guard, runtime
from dac_jax.audio import synth
from dac_jax.model.config import DACConfig
from dac_jax.demo import DEMO_INPUT

# the smallest config with 64-channel kernel-7 convolutions in its encoder (where Winograd applies)
# and the released models' codebooks (1024 x 8: near ties are common)
WIDE = DACConfig(encoder_dim=64, encoder_rates=(2, 4), latent_dim=128, decoder_dim=32, decoder_rates=(4, 2),
                 n_codebooks=4, codebook_size=1024, codebook_dim=8, sample_rate=16000)


def signals(rate: int, seconds: float) -> dict[str, np.ndarray]:
    n = int(rate * seconds)
    speech, speech_rate = sf.read(DEMO_INPUT, dtype="float32")
    assert speech_rate == rate
    rng = np.random.default_rng(0)
    t = np.arange(n) / rate
    chord = sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0)) / 4
    return {
        "speech": speech[:n],
        "music": chord.astype(np.float32),
        "noise": (0.2 * rng.standard_normal(n)).astype(np.float32),
        "silence": np.zeros(n, np.float32),
    }


def checked(codec: dac_jax.Codec, m: int = 4) -> dac_jax.Codec:
    codec.winograd, codec.fast_encoder = m, True
    return codec


@pytest.mark.parametrize("m", [2, 4])
def test_trained_weights_give_the_direct_codes_on_speech_music_noise_and_silence(m):
    codec = dac_jax.load_model("demo16khz")
    audio = np.stack([s[None] for s in signals(16000, 4.0).values()])
    windows = audio[..., :16000].copy()
    direct = np.asarray(codec.encode_frames(audio)), np.asarray(codec.encode_frames(windows, padded=False))
    checked(codec, m)
    assert isinstance(codec.encode_frames(audio), guard.CheckedCodes)
    codec.guard_stats.reset()
    np.testing.assert_array_equal(np.asarray(codec.encode_frames(audio)), direct[0])
    np.testing.assert_array_equal(np.asarray(codec.encode_frames(windows, padded=False)), direct[1])
    np.testing.assert_array_equal(np.asarray(codec.encode(audio)), direct[0])  # the facade's encode too
    stats = codec.guard_stats
    assert stats.items == 12 and stats.frames == 4 * (2 * 200 + codec.unpadded_module.encoder_frames(16000))
    # doubtful frames were met and recomputed (measured: 0.5-3 % of frames with F(4, 7))
    assert 0 < stats.flagged_frames < 0.1 * stats.frames and stats.crops > 0


@pytest.mark.parametrize("m", [2, 4])
def test_the_calibrated_bound_holds_on_audio_it_was_not_calibrated_on(m):
    """The fast path's actual error (each quantiser stage's input against the direct path's, over
    the item's largest frame norm) stays well inside the bound the guard uses (SAFETY x its
    calibration): measured 0.07 of it or less on these signals, with F(2, 7) and F(4, 7)."""
    codec = checked(dac_jax.load_model("demo16khz"), m)
    rho = codec.guard_error
    for name, x in signals(16000, 4.0).items():
        x = x[None, None]
        d_codes, d_inputs, scale = (np.asarray(a) for a in runtime.encode_checked(
            codec.module, codec.inference_variables, x, 0.0, residuals=True))
        f_codes, f_inputs, _ = (np.asarray(a) for a in runtime.encode_checked(
            codec.module, codec.fast_encoder_variables, x, 0.0, residuals=True))
        error = guard.stage_input_error(d_codes, d_inputs, f_codes, f_inputs) / scale.max()
        assert error <= rho / 3, (name, error, rho)


def test_every_frame_doubtful_gives_the_direct_codes_padded_unpadded_and_ragged():
    """An error bound so large that nearly every frame is recomputed on a crop: the crops' edges,
    merging, items shorter than a crop and ragged items' ends all give the direct codes."""
    codec = dac_jax.init_model(WIDE, seed=0)
    rate, hop = codec.sample_rate, codec.hop_length
    lengths = [16000, 9001, 12 * hop + 5, 300]  # the last two are shorter than a crop
    audio = np.random.default_rng(1).uniform(-0.7, 0.7, (4, 1, 16000)).astype(np.float32)  # noise past each end
    for i, n in enumerate(lengths):
        audio[i, 0, :n] = 0.5 * synth.speech_like(n / rate + 0.01, rate, seed=i)[:n]
    direct = {
        "padded": np.asarray(codec.encode_frames(audio)),
        "unpadded": np.asarray(codec.encode_frames(audio, padded=False)),
        "ragged": np.asarray(codec.encode_frames(audio, lengths=np.array(lengths))),
    }
    checked(codec)
    codec._guard_error = 1.0  # everything is doubtful  # noqa: SLF001
    for mode, expected in direct.items():
        codec.guard_stats.reset()
        kwargs = {"padded": False} if mode == "unpadded" else {"lengths": np.array(lengths)} if mode == "ragged" else {}
        got = np.asarray(codec.encode_frames(audio, **kwargs))
        np.testing.assert_array_equal(got, expected, err_msg=mode)
        stats = codec.guard_stats
        assert stats.flagged_fraction > 0.9 and stats.crops > 0, (mode, stats)
        assert (stats.whole_items == 2) == (mode == "ragged"), (mode, stats)


def test_a_fast_path_noisy_enough_to_flip_codes_is_caught():
    """The guard against a fast encoder whose error is far above Winograd's (its last convolution's
    kernel perturbed by 1e-3 relative): the unchecked codes differ, the checked ones do not."""
    codec = dac_jax.init_model(WIDE, seed=0)
    audio = np.stack([0.5 * synth.speech_like(2.0, 16000, seed=s)[None].astype(np.float32) for s in range(2)])
    direct = np.asarray(codec.encode_frames(audio))
    checked(codec)
    noisy = _perturbed(codec.fast_encoder_variables, 1e-3)
    codec._fast_variables = noisy  # noqa: SLF001
    unchecked = np.asarray(runtime.encode(codec.module, noisy, audio, None).codes)
    assert np.sum(unchecked != direct) >= 10
    got = np.asarray(codec.encode_frames(audio))
    np.testing.assert_array_equal(got, direct)
    assert codec.guard_stats.changed_codes == np.sum(unchecked != direct)


def _perturbed(variables: dict, relative: float) -> dict:
    """``variables`` with the encoder's last convolution's folded kernel scaled by ``1 + relative * N(0, 1)``."""
    encoder = variables["folded"]["encoder"]
    last = max(encoder, key=lambda name: int(name.rsplit("_", 1)[1]))
    kernel = np.asarray(encoder[last]["kernel"])
    noise = np.random.default_rng(0).standard_normal(kernel.shape)
    conv = {**encoder[last], "kernel": (kernel * (1 + relative * noise)).astype(np.float32)}
    return {**variables, "folded": {**variables["folded"], "encoder": {**encoder, last: conv}}}
