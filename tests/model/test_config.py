"""Model configs refuse what no network can be built from, naming the field."""

from __future__ import annotations

import pytest

from dac_jax.model.config import PRESETS, VAE_PRESETS, DACConfig, VAEConfig


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_codebooks=0), "n_codebooks must be a positive integer, got 0"),
    (dict(n_codebooks="abc"), "n_codebooks must be a positive integer, got 'abc'"),
    (dict(codebook_size=-4), "codebook_size must be a positive integer"),
    (dict(encoder_dim=2.5), "encoder_dim must be a positive integer"),
    (dict(sample_rate=True), "sample_rate must be a positive integer"),
    (dict(encoder_rates=[2, 0]), "encoder_rates entry must be a positive integer, got 0"),
    (dict(encoder_rates="2488"), "encoder_rates must be a list of positive integers"),
    (dict(decoder_rates=[]), "decoder_rates must not be empty"),
    (dict(quantizer_dropout=1.5), "quantizer_dropout must be a fraction in \\[0, 1\\]"),
    (dict(quantizer_dropout="0.5"), "quantizer_dropout must be a fraction"),
    (dict(codebook_dim=[8]), "only an int codebook_dim is supported"),
])
def test_dac_config_refuses_bad_fields(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DACConfig(**kwargs)


def test_vae_config_refuses_bad_fields():
    with pytest.raises(ValueError, match="latent_dim must be a positive integer, got 0"):
        VAEConfig(latent_dim=0)


def test_presets_and_original_spellings_still_build():
    assert all(isinstance(c, DACConfig) for c in PRESETS.values())
    assert all(isinstance(c, VAEConfig) for c in VAE_PRESETS.values())
    c = DACConfig(encoder_rates=[2, 4, 5, 8], decoder_rates=(8, 5, 4, 2), quantizer_dropout=True)
    assert c.encoder_rates == (2, 4, 5, 8) and c.quantizer_dropout == 1.0 and c.latent_dim == 1024
