"""Imported PyTorch weights give the original's codes, latents and audio (full-size models).

Every model here is the original ``dac.DAC``, randomly initialised with a fixed seed, saved in the
released file format and loaded through ``dac_jax.load_model``.
"""

from __future__ import annotations

import numpy as np
import pytest

import dac_jax
from dac_jax.model.dac import DAC
from tests import reference

pytestmark = pytest.mark.slow

MIN_CODE_MATCH = 0.999
# About 10x the largest error these tests measure (float32 on an x86_64 CPU, every case here): z
# 2.6e-7 relative, latents 2.0e-6 relative (n_quantizers=1..9; 5.8e-7 elsewhere), audio 1.7e-6 max
# abs, the VQ losses 2.0e-7 relative. A real departure from the original's arithmetic fails them.
MAX_Z_REL = 3e-6
MAX_LATENTS_REL = 2e-5
MAX_AUDIO_DIFF = 2e-5
MAX_LOSS_REL = 2e-6
# The default decoder on a CPU (Winograd F(4, 7), dac_jax.nn.winograd) sums in another order: its
# audio against the original's measured up to 3.6e-6 (44khz), 5.1e-6 (16khz), 1.0e-5 (24khz).
MAX_WINOGRAD_AUDIO_DIFF = 1e-4


def rel_diff(ours, theirs) -> float:
    return float(np.max(np.abs(np.asarray(ours) - theirs)) / np.max(np.abs(theirs)))


def assert_equivalent(ours, theirs: dict, what: str, max_audio_diff: float = MAX_AUDIO_DIFF) -> None:
    codes, ref_codes = np.asarray(ours.codes), theirs["codes"]
    assert codes.shape == ref_codes.shape, what
    np.testing.assert_array_equal(codes[:, 0], ref_codes[:, 0], err_msg=f"{what}: codebook 0 differs")
    match = float(np.mean(codes == ref_codes))
    assert match >= MIN_CODE_MATCH, f"{what}: only {100 * match:.3f}% of codes equal"
    z_rel, latents_rel = rel_diff(ours.z, theirs["z"]), rel_diff(ours.latents, theirs["latents"])
    assert z_rel <= MAX_Z_REL, f"{what}: z relative error {z_rel:.2e}"
    assert latents_rel <= MAX_LATENTS_REL, f"{what}: latents relative error {latents_rel:.2e}"
    if "audio" in theirs:
        assert ours.audio.shape == theirs["audio"].shape, what
        diff = float(np.max(np.abs(np.asarray(ours.audio) - theirs["audio"])))
        assert diff <= max_audio_diff, f"{what}: max |audio diff| {diff:.2e}"
        np.testing.assert_allclose(float(ours.commitment_loss), theirs["vq/commitment_loss"], rtol=MAX_LOSS_REL)
        np.testing.assert_allclose(float(ours.codebook_loss), theirs["vq/codebook_loss"], rtol=MAX_LOSS_REL)


def assert_both_decoders_equivalent(codec, theirs: dict, audio, what: str) -> None:
    """The default (Winograd decoding on a CPU) at its tolerance, and the direct convolutions at
    the original's float32 sums."""
    assert codec.winograd == 4  # the default on a CPU
    assert_equivalent(codec(audio), theirs, what, MAX_WINOGRAD_AUDIO_DIFF)
    codec.winograd = None
    try:
        assert_equivalent(codec(audio), theirs, f"{what}, direct")
    finally:
        codec.winograd = 4  # the session's shared model (reference_models)


@pytest.mark.parametrize("signal", ["noise", "sweep", "speech"])
def test_44khz_forward_equals_original(reference_models, signal):
    torch_model, codec = reference_models("44khz")
    audio = reference.test_signals(44100)[signal]  # batch of 3, 0.5 / 0.75 / 1 s zero-padded
    assert_both_decoders_equivalent(codec, reference.run_torch(torch_model, audio), audio, f"44khz {signal}")


@pytest.mark.parametrize(
    "preset, signal", [("24khz", "speech"), ("16khz", "sweep"), ("44khz-16kbps", "noise")]
)
def test_other_released_models_equal_original(reference_models, preset, signal):
    torch_model, codec = reference_models(preset)
    audio = reference.test_signals(codec.sample_rate)[signal]
    assert_both_decoders_equivalent(codec, reference.run_torch(torch_model, audio), audio, f"{preset} {signal}")


def test_44khz_n_quantizers_equal_original(reference_models):
    import torch

    torch_model, codec = reference_models("44khz")
    audio = reference.test_signals(44100, lengths=(0.5, 0.3))["speech"]
    x = torch.from_numpy(np.asarray(torch_model.preprocess(torch.from_numpy(audio), 44100)))
    for n in range(1, codec.n_codebooks + 1):
        with torch.no_grad():
            z, codes, latents, _, _ = torch_model.encode(x, n_quantizers=n)
        ours = codec.encode_full(audio, n_quantizers=n)
        assert ours.codes.shape == (2, n, codes.shape[-1])
        assert_equivalent(ours, {"z": z.numpy(), "codes": codes.numpy(), "latents": latents.numpy()}, f"n_quantizers={n}")


def _unpadded_torch(torch_model):
    torch_model.padding = False  # the original's own mode switch
    return torch_model


@pytest.mark.parametrize("preset, window", [("44khz", 0.38), ("24khz", 1.0)])
def test_unpadded_chunk_equals_original(reference_models, preset, window):
    """What chunked compression runs: one unpadded chunk of n_samples, encoded then decoded from codes."""
    import torch

    torch_model, codec = reference_models(preset)
    sr, hop = codec.sample_rate, codec.hop_length
    n_samples = int(np.ceil(int(window * sr) / hop) * hop)
    speech = reference.test_signals(sr, lengths=(1.0, 0.8))["speech"]
    chunk = np.pad(speech, ((0, 0), (0, 0), (codec.delay, 0)))[..., :n_samples]

    module = DAC(codec.config, padded=False)
    ours = module.apply(codec.variables, chunk, method=DAC.encode)
    ours_audio = module.apply(codec.variables, ours.codes, method=DAC.decode_codes)
    torch_model = _unpadded_torch(torch_model)
    try:
        with torch.no_grad():
            z, codes, latents, _, _ = torch_model.encode(torch.from_numpy(chunk))
            z_q, _, _ = torch_model.quantizer.from_codes(codes)
            audio = torch_model.decode(z_q).numpy()
    finally:
        torch_model.padding = True
    assert ours_audio.shape == audio.shape == (2, 1, codec.output_length(n_samples))
    assert_equivalent(ours, {"z": z.numpy(), "codes": codes.numpy(), "latents": latents.numpy()}, f"{preset} unpadded")
    diff = float(np.max(np.abs(np.asarray(ours_audio) - audio)))
    assert diff <= MAX_AUDIO_DIFF, f"{preset} unpadded decode: max |audio diff| {diff:.2e}"
