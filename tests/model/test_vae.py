"""DAC-VAE: the model against a PyTorch rendition of the original (tests/vae_reference.py), its
sizes, and its length arithmetic in both modes."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from dac_jax.model.config import VAE_PRESETS, VAEConfig
from dac_jax.model.vae import DACVAE
from dac_jax.nn.bottleneck import kl_divergence
from dac_jax.weights.vae import vae_state_dict_to_variables
from tests import reference

# About 10x the largest error measured here (float32, x86_64 CPU): 4.8e-7 on the tiny model, 1.7e-6
# on the full-size x3 model (m, logs, z and audio, max abs); the KL 1.5e-7 relative.
MAX_DIFF = 2e-5
MAX_KL_REL = 2e-6
TINY = VAE_PRESETS["vae-tiny"]


def max_diff(ours, theirs) -> float:
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape
    return float(np.max(np.abs(ours - theirs)))


def noise_for(key, config: VAEConfig, batch: int, frames: int) -> np.ndarray:
    """The noise DACVAE.encode draws from ``key``: standard normal, channels-first ``[B, D, frames]``."""
    return np.array(jax.random.normal(key, (batch, config.latent_dim, frames)))


@pytest.fixture(scope="module")
def tiny(reference_dir):
    from tests import vae_reference

    model = vae_reference.torch_vae(TINY, seed=5)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    return model, vae_state_dict_to_variables(state, TINY)


def test_sizes_of_the_released_configurations():
    """DAC_SPEC 5: 95.15 M parameters (configx2) and 60.60 M (config); hop 480 and 320."""
    sizes = {}
    for name in ("vae24khz-x2", "vae24khz-x3"):
        config = VAE_PRESETS[name]
        audio = jax.ShapeDtypeStruct((1, 1, config.hop_length), jnp.float32)
        shapes = jax.eval_shape(lambda a: DACVAE(config).init(jax.random.key(0), a, deterministic=True), audio)
        sizes[name] = round(sum(math.prod(s.shape) for s in jax.tree_util.tree_leaves(shapes)) / 1e6, 2)
        assert DACVAE(config).hop_length() == config.hop_length
    assert sizes == {"vae24khz-x2": 95.15, "vae24khz-x3": 60.60}
    assert (VAE_PRESETS["vae24khz-x2"].frame_rate, VAE_PRESETS["vae24khz-x3"].frame_rate) == (50, 75)


def test_bottleneck_projections_sit_at_the_top_of_the_tree(tiny):
    _, variables = tiny
    params = variables["params"]
    assert sorted(params) == ["de_conv_pre", "decoder", "en_conv_post", "encoder"]
    assert params["en_conv_post"]["0"]["weight_v"].shape == (2 * TINY.latent_dim, TINY.latent_dim, 1)
    flat = traverse_util.flatten_dict(params)
    leaky_convs = {p[:-1] for p in flat if p[-2] == "0"}
    # every plain conv is wrapped (child "0"); only the transposed convs (model_i/block_1) are not
    convs = {p[:-1] for p in flat if p[-1] == "weight_v"}
    assert convs - leaky_convs == {("decoder", f"model_{i + 1}", "block_1") for i in range(len(TINY.decoder_rates))}


@pytest.mark.parametrize("signal", ["speech", "noise"])
def test_padded_forward_equals_the_original(tiny, signal):
    from tests import vae_reference

    torch_model, variables = tiny
    audio = reference.test_signals(TINY.sample_rate, lengths=(0.01, 0.0077))[signal]  # a partial last frame
    frames = math.ceil(audio.shape[-1] / TINY.hop_length)
    key = jax.random.key(11)
    theirs = vae_reference.run_torch(torch_model, audio, noise_for(key, TINY, 2, frames))
    ours = DACVAE(TINY).apply(variables, audio, key)

    assert 0.01 < float(np.std(theirs["audio"])) < 0.9, "a saturated or silent output would prove little"
    for name in ("m", "logs", "z", "audio"):
        assert max_diff(getattr(ours, name), theirs[name]) <= MAX_DIFF, name
    np.testing.assert_allclose(float(ours.kl), theirs["kl"], rtol=MAX_KL_REL)
    assert not np.allclose(ours.z, ours.m), "z is sampled"


def test_decoder_gives_exactly_hop_samples_per_frame(tiny):
    from tests import vae_reference

    torch_model, variables = tiny
    z = np.random.default_rng(0).normal(size=(2, TINY.latent_dim, 7)).astype(np.float32)
    ours = DACVAE(TINY).apply(variables, z, method=DACVAE.decode)
    import torch

    with torch.no_grad():
        theirs = torch_model.decode(torch.from_numpy(z)).numpy()
    assert ours.shape == (2, 1, 7 * TINY.hop_length) == theirs.shape
    assert max_diff(ours, theirs) <= MAX_DIFF
    for name in ("vae24khz-x2", "vae24khz-x3"):
        assert DACVAE(VAE_PRESETS[name]).decoder_samples(75) == 75 * VAE_PRESETS[name].hop_length


def test_deterministic_mode_gives_the_mean_and_sampling_needs_a_key(tiny):
    _, variables = tiny
    audio = reference.test_signals(TINY.sample_rate, lengths=(0.01,))["speech"]
    module = DACVAE(TINY)
    z, m, logs = module.apply(variables, audio, deterministic=True, method=DACVAE.encode)
    np.testing.assert_array_equal(z, m)
    sampled = module.apply(variables, audio, jax.random.key(0), method=DACVAE.encode)
    np.testing.assert_array_equal(sampled.m, m)
    np.testing.assert_array_equal(sampled.logs, logs)
    with pytest.raises(ValueError, match="needs a key"):
        module.apply(variables, audio, method=DACVAE.encode)


def test_kl_is_the_originals_formula():
    rng = np.random.default_rng(1)
    m, logs = rng.normal(size=(2, 3, 5)), rng.normal(size=(2, 3, 5))
    expected = np.mean(np.sum(0.5 * (m**2 + np.exp(logs) - logs - 1), axis=1))
    ours = kl_divergence(jnp.asarray(m), jnp.asarray(logs), channel_axis=1)
    np.testing.assert_allclose(float(ours), expected, rtol=1e-6)


@pytest.mark.parametrize("length", [2000, 2001, 2345])
def test_unpadded_lengths_from_the_geometries_equal_the_traced_shapes(tiny, length):
    """Unpadded mode (no conv padding, no output_padding): what the arithmetic says is what runs."""
    _, variables = tiny
    module = DACVAE(TINY, padded=False)
    audio = jax.ShapeDtypeStruct((1, 1, length), jnp.float32)
    latents = jax.eval_shape(lambda a: module.apply(variables, a, deterministic=True, method=DACVAE.encode), audio)
    frames = module.encoder_frames(length)
    assert latents.m.shape == (1, TINY.latent_dim, frames)
    z = jax.ShapeDtypeStruct((1, TINY.latent_dim, frames), jnp.float32)
    out = jax.eval_shape(lambda z: module.apply(variables, z, method=DACVAE.decode), z)
    assert out.shape == (1, 1, module.decoder_samples(frames)) == (1, 1, module.output_length(length))


def test_unpadded_mode_equals_the_original_without_padding(tiny):
    """The rendition with every padding and output_padding zeroed computes what our unpadded
    module does, and the original's own get_delay / get_output_length agree with the geometries."""
    import torch

    from tests import vae_reference

    _, variables = tiny
    torch_model = vae_reference.torch_vae(TINY, seed=5)  # the fixture's weights, a model of its own
    vae_reference.set_unpadded(torch_model)
    module = DACVAE(TINY, padded=False)
    assert module.delay() == torch_model.get_delay()
    for n in (0, 600, 1234):
        assert module.output_length(n) == torch_model.get_output_length(n)

    n_samples = 1200
    audio = reference.test_signals(TINY.sample_rate, lengths=(0.05,))["speech"][..., :n_samples]
    frames = module.encoder_frames(n_samples)
    key = jax.random.key(2)
    ours = module.apply(variables, audio, key, method=DACVAE.encode)
    ours_audio = module.apply(variables, ours.z, method=DACVAE.decode)
    with torch.no_grad():
        noise = torch.from_numpy(noise_for(key, TINY, 1, frames))
        z, m, logs = torch_model.encode(torch.from_numpy(np.array(audio)), noise)
        theirs_audio = torch_model.decode(z).numpy()
    for name, theirs in (("m", m), ("logs", logs), ("z", z)):
        assert max_diff(getattr(ours, name), theirs.numpy()) <= MAX_DIFF, name
    assert ours_audio.shape == (1, 1, module.output_length(n_samples))
    assert max_diff(ours_audio, theirs_audio) <= MAX_DIFF


@pytest.mark.slow
def test_full_size_x3_equals_the_original(reference_dir):
    """vae24khz-x3 (60.6 M parameters) on about a second of speech, padded mode."""
    from tests import vae_reference

    config = VAE_PRESETS["vae24khz-x3"]
    torch_model = vae_reference.torch_vae(config, seed=0)
    variables = vae_state_dict_to_variables({k: v.numpy() for k, v in torch_model.state_dict().items()}, config)
    audio = reference.test_signals(config.sample_rate, lengths=(1.0,))["speech"][..., :23900]
    frames = math.ceil(audio.shape[-1] / config.hop_length)
    key = jax.random.key(3)
    theirs = vae_reference.run_torch(torch_model, audio, noise_for(key, config, 1, frames))
    ours = jax.jit(lambda v, a, k: DACVAE(config).apply(v, a, k))(variables, audio, key)
    assert ours.audio.shape == audio.shape
    for name in ("m", "logs", "z", "audio"):
        assert max_diff(getattr(ours, name), theirs[name]) <= MAX_DIFF, name
    # the full-size output is quiet (std ~1e-3 at this initialisation): relative to its peak too
    # (measured 2.4e-7)
    assert max_diff(ours.audio, theirs["audio"]) <= 3e-6 * np.max(np.abs(theirs["audio"]))
    np.testing.assert_allclose(float(ours.kl), theirs["kl"], rtol=MAX_KL_REL)
