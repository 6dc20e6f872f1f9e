"""Convolution geometry: lengths, delay and receptive fields against the original DAC and PyTorch.

The original's numbers (``get_output_length``, ``delay``) come from ``dac.DAC`` itself; single
layers are checked against the shapes that ``torch.nn.Conv1d`` / ``ConvTranspose1d`` produce; the
model-level arithmetic is also checked against ``jax.eval_shape`` of our own forward pass and, for
receptive fields, against the sparsity of gradients of a randomly weighted model.
"""

from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from dac_jax.model.config import PRESETS, DACConfig
from dac_jax.model.dac import DAC
from dac_jax.nn import geometry as geo
from dac_jax.nn.geometry import ConvGeometry
from dac_jax.nn.layers import conv1d
from tests.requires import require_reference

ALL_PRESETS = sorted(PRESETS)
RELEASED = ["44khz", "44khz-16kbps", "24khz", "16khz"]


# --------------------------------------------------------------------------------------------
# The original models, built once per preset for the whole module
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def original():
    """``original(name)`` -> the original ``dac.DAC`` of a preset, built once per module.

    Built on PyTorch's meta device: the original's length arithmetic (``get_output_length``, the
    ``delay`` its constructor computes, ``hop_length``) reads only the layers' hyper-parameters,
    and skipping the allocation of ~75 M random weights saves seconds per model.
    """
    dac = require_reference("dac")
    torch = require_reference("torch")

    @functools.lru_cache(maxsize=None)
    def build(name):
        with torch.device("meta"):
            return dac.DAC(**PRESETS[name].to_kwargs())

    return build


def _shapes(config: DACConfig):
    """Variable shapes of a model (nothing is computed)."""
    audio = jax.ShapeDtypeStruct((1, 1, config.hop_length), jnp.float32)
    return jax.eval_shape(DAC(config).init, jax.random.key(0), audio)


def _random_variables(config: DACConfig, seed: int) -> dict:
    """Seeded random variables of the right shapes, drawn with numpy.

    Unlike ``init_variables``, alpha and g are not left at their initial values (all ones, and
    ``||v||``), which only helps a sparsity measurement.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for path, s in traverse_util.flatten_dict(_shapes(config)).items():
        if path[-1] in ("alpha", "weight_g"):
            value = rng.uniform(0.5, 1.5, s.shape)
        else:
            value = rng.normal(0.0, 0.3, s.shape)
        out[path] = jnp.asarray(value, jnp.float32)
    # keep the decoder's last conv small so that its tanh does not saturate (a saturated tanh has
    # an exactly zero gradient in float32, which would hide dependencies)
    last = ("params", "decoder", f"model_{len(config.decoder_rates) + 2}")
    out[last + ("weight_g",)] = out[last + ("weight_g",)] * 1e-3
    out[last + ("bias",)] = jnp.zeros_like(out[last + ("bias",)])
    return traverse_util.unflatten_dict(out)


# --------------------------------------------------------------------------------------------
# Delay, output length, hop length
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, expected", [("44khz", 7904), ("44khz-16kbps", 7904), ("24khz", 5264), ("16khz", 5264)])
def test_delay_of_released_models(name, expected):
    assert DAC(PRESETS[name]).delay() == expected


@pytest.mark.parametrize("name", ALL_PRESETS)
def test_delay_matches_original(name, original):
    assert DAC(PRESETS[name]).delay() == original(name).delay


_SWEEP = [0, 1, 100, 511, 512, 513, 16384, 16896, 44544, 220672]
_SWEEP += [int(n) for n in np.random.default_rng(1234).integers(0, 500_000, size=6)]


@pytest.mark.parametrize("name", ALL_PRESETS)
def test_output_length_matches_original(name, original):
    model = DAC(PRESETS[name])
    reference = original(name)
    ours = {n: model.output_length(n) for n in _SWEEP}
    theirs = {n: reference.get_output_length(n) for n in _SWEEP}
    assert ours == theirs


def test_output_length_of_empty_input_44khz():
    # DAC_SPEC section 3: l_out(0) = -16022 for the 44 kHz model
    assert DAC(PRESETS["44khz"]).output_length(0) == -16022


# DAC_SPEC section 3: window (s) -> (n_samples, hop = output_length(n_samples)), measured on the original
_WINDOWS = (0.37, 0.38, 0.42, 0.46, 0.5, 1, 5, 10, 20)
_CHUNK_TABLE = {
    "44khz": (
        (16384, 16896, 18944, 20480, 22528, 44544, 220672, 441344, 882176),
        (362, 874, 2922, 4458, 6506, 28522, 204650, 425322, 866154),
    ),
    "24khz": (
        (8960, 9280, 10240, 11200, 12160, 24000, 120000, 240000, 480000),
        (-1694, -1374, -414, 546, 1506, 13346, 109346, 229346, 469346),
    ),
    "16khz": (
        (6080, 6080, 6720, 7360, 8000, 16000, 80000, 160000, 320000),
        (-4574, -4574, -3934, -3294, -2654, 5346, 69346, 149346, 309346),
    ),
}


@pytest.mark.parametrize("name", sorted(_CHUNK_TABLE))
def test_chunk_table(name):
    config = PRESETS[name]
    model = DAC(config)
    n_samples_expected, hops_expected = _CHUNK_TABLE[name]
    n_samples = [
        math.ceil(int(win * config.sample_rate) / config.hop_length) * config.hop_length for win in _WINDOWS
    ]
    assert tuple(n_samples) == n_samples_expected
    assert tuple(model.output_length(n) for n in n_samples) == hops_expected


@pytest.mark.parametrize("name", ALL_PRESETS)
def test_hop_length(name, original):
    config = PRESETS[name]
    hop = DAC(config).hop_length()
    assert hop == math.prod(config.encoder_rates) == config.hop_length
    assert hop == int(original(name).hop_length)


# --------------------------------------------------------------------------------------------
# The arithmetic against our own forward pass (shapes only, via jax.eval_shape)
# --------------------------------------------------------------------------------------------


def _unpadded_length(config: DACConfig, length: int) -> int:
    """Length that the unpadded model's encode -> decode really produces for ``length`` samples."""
    model = DAC(config, padded=False)

    def codec(variables, audio):
        return model.apply(variables, audio, method=lambda m, x: m.decode(m.encode(x).z))

    audio = jax.ShapeDtypeStruct((1, 1, length), jnp.float32)
    out = jax.eval_shape(codec, _shapes(config), audio)
    assert out.shape[:2] == (1, 1)
    return out.shape[-1]


_EVAL_SHAPE_LENGTHS = {
    "44khz": (16384, 20001),
    "24khz": (11200, 12345),
    "tiny": (600, 601, 1000, 1237),
    "tiny-odd": (640, 641, 1000, 1237),
}


@pytest.mark.parametrize("name", sorted(_EVAL_SHAPE_LENGTHS))
def test_output_length_matches_unpadded_forward(name):
    config = PRESETS[name]
    model = DAC(config)
    for length in _EVAL_SHAPE_LENGTHS[name]:
        expected = model.output_length(length)
        assert expected > 0, (name, length)
        assert _unpadded_length(config, length) == expected, (name, length)
    # the whole forward pass right-pads to a multiple of the hop first (the original's preprocess)
    length = _EVAL_SHAPE_LENGTHS[name][-1]
    audio = jax.ShapeDtypeStruct((1, 1, length), jnp.float32)
    out = jax.eval_shape(DAC(config, padded=False).apply, _shapes(config), audio)
    hop = config.hop_length
    assert out.audio.shape == (1, 1, model.output_length(-(-length // hop) * hop))


@pytest.mark.parametrize("name, per_frame, missing", [("44khz", 512, 0), ("24khz", 320, 8), ("16khz", 320, 8)])
def test_padded_decode_length(name, per_frame, missing):
    """Padded decoding of T frames: 512 T samples at 44 kHz, 320 T - 8 with the stride-5 decoders."""
    config = PRESETS[name]
    shapes = _shapes(config)
    module = DAC(config)
    for frames in (1, 2, 7, 75, 86):
        z = jax.ShapeDtypeStruct((1, config.latent_dim, frames), jnp.float32)
        out = jax.eval_shape(lambda v, z: module.apply(v, z, method=DAC.decode), shapes, z)
        assert out.shape == (1, 1, per_frame * frames - missing), (name, frames)


def test_padded_decode_length_matches_original_tiny_odd():
    """The padded stride-5 length quirk, measured on a small original model."""
    require_reference("dac")
    torch = require_reference("torch")

    from tests.reference import torch_model

    config = PRESETS["tiny-odd"]
    shapes = _shapes(config)
    module = DAC(config)
    reference = torch_model(config)
    for frames in (1, 3, 10):
        with torch.no_grad():
            theirs = reference.decode(torch.zeros(1, config.latent_dim, frames)).shape[-1]
        z = jax.ShapeDtypeStruct((1, config.latent_dim, frames), jnp.float32)
        ours = jax.eval_shape(lambda v, z: module.apply(v, z, method=DAC.decode), shapes, z).shape[-1]
        assert ours == theirs == 10 * frames - 2, frames


# --------------------------------------------------------------------------------------------
# Receptive fields, measured by gradient sparsity on an unpadded model with random weights
# --------------------------------------------------------------------------------------------


def _support(mask: np.ndarray) -> int:
    """Extent (last - first + 1) of the nonzero entries of a 1-D mask; asserts it is contiguous."""
    idx = np.flatnonzero(mask)
    assert idx.size, "no dependency at all"
    extent = int(idx[-1] - idx[0] + 1)
    assert extent == idx.size, f"dependency not contiguous: {idx}"
    return extent


@pytest.mark.parametrize("name", ["tiny", "tiny-odd"])
def test_encoder_receptive_field_is_tight(name):
    config = PRESETS[name]
    model = DAC(config, padded=False)
    computed = model.encoder_receptive_field()
    variables = _random_variables(config, seed=3)

    def encode(x):  # [1, L, 1] -> [1, frames, latent], channels-last, pre-quantisation
        return model.apply(variables, x, method=lambda m, x: m.encoder(x))

    length = 3 * computed + 5 * config.hop_length
    x = jax.random.normal(jax.random.key(0), (1, length, 1))
    frames = jax.eval_shape(encode, x).shape[1]
    picks = slice(frames // 2 - 2, frames // 2 + 2)
    jac = jax.jit(jax.jacrev(lambda x: encode(x)[0, picks]))(x)  # [4, latent, 1, L, 1]
    deps = np.any(np.asarray(jac) != 0, axis=(1, 2, 4))  # [4, L]
    measured = [_support(d) for d in deps]
    # the encoder is shift-equivariant by one hop per frame: every frame sees the same extent
    assert max(measured) == computed, (measured, computed)


@pytest.mark.parametrize("name", ["tiny", "tiny-odd"])
def test_decoder_receptive_field_is_tight(name):
    config = PRESETS[name]
    model = DAC(config, padded=False)
    computed = model.decoder_receptive_field()
    variables = _random_variables(config, seed=4)

    def decode(z):  # [1, frames, latent] -> [1, samples, 1], channels-last
        return model.apply(variables, z, method=lambda m, z: m.decoder(z))

    frames = 3 * computed
    z = jax.random.normal(jax.random.key(1), (1, frames, config.latent_dim))
    samples = jax.eval_shape(decode, z).shape[1]
    up = math.prod(config.decoder_rates)
    # one output sample per phase of the total upsampling (two periods for good measure)
    jac = jax.jit(jax.jacrev(lambda z: decode(z)[0, samples // 2 : samples // 2 + 2 * up, 0]))(z)
    deps = np.any(np.asarray(jac) != 0, axis=(1, 3))  # [2 up, frames]
    measured = [_support(d) for d in deps]
    # the bound is a max over phases: some phases see fewer frames, the widest sees exactly it
    assert max(measured) == computed, (measured, computed)
    assert min(measured) < computed


# --------------------------------------------------------------------------------------------
# ConvGeometry, one layer at a time, against PyTorch
# --------------------------------------------------------------------------------------------

_KERNELS = (1, 2, 3, 7, 16)
_DILATIONS = (1, 2, 9)
_PADDINGS = (0, 1, 4)
_LENGTHS = (1, 2, 7, 100)


def _geometries(transposed: bool, stride: int):
    for k, d, p in itertools.product(_KERNELS, _DILATIONS, _PADDINGS):
        ops = sorted({0, 1, stride - 1}) if transposed else [0]
        for op in ops:
            if op and op >= max(stride, d):  # PyTorch's constraint on output_padding
                continue
            yield ConvGeometry(k, stride=stride, dilation=d, transposed=transposed, padding=p, output_padding=op)


def _torch_layer(g: ConvGeometry, padded: bool):
    torch = require_reference("torch")

    kwargs = dict(kernel_size=g.kernel, stride=g.stride, dilation=g.dilation, padding=g.padding if padded else 0)
    if g.transposed:
        return torch.nn.ConvTranspose1d(1, 1, output_padding=g.output_padding if padded else 0, **kwargs)
    return torch.nn.Conv1d(1, 1, **kwargs)


def _torch_length(layer, length: int) -> int | None:
    """PyTorch's output length, or None when PyTorch rejects the input as too short."""
    torch = require_reference("torch")

    with torch.no_grad():
        try:
            return layer(torch.zeros(1, 1, length)).shape[-1]
        except RuntimeError:
            return None


@pytest.mark.parametrize("padded", [True, False], ids=["padded", "unpadded"])
@pytest.mark.parametrize("stride", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "transposed"])
def test_conv_geometry_output_length_matches_torch(transposed, stride, padded):
    require_reference("torch")
    checked = 0
    for g in _geometries(transposed, stride):
        layer = _torch_layer(g, padded)
        for length in _LENGTHS:
            ours = g.output_length(length, padded)
            theirs = _torch_length(layer, length)
            if ours >= 1:
                assert theirs == ours, (g, padded, length)
                checked += 1
            else:  # PyTorch refuses an empty or negative output
                assert theirs is None, (g, padded, length, theirs)
    assert checked > 50


@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "transposed"])
def test_conv1d_follows_its_geometry(transposed):
    """Our conv1d (the forward pass) produces the lengths the geometry predicts."""
    for stride, k, d in itertools.product((1, 2, 5), (1, 4, 7), (1, 3)):
        for padded, p, op in ((False, 0, 0), (True, 3, 0), (True, 2, 1 if transposed else 0)):
            if op >= max(stride, d):
                continue
            g = ConvGeometry(k, stride=stride, dilation=d, transposed=transposed, padding=p, output_padding=op)
            length = 40
            w = jax.ShapeDtypeStruct((2, 3, k), jnp.float32)  # [out, in, k] or [in, out, k]
            x = jax.ShapeDtypeStruct((1, length, 3 if not transposed else 2), jnp.float32)
            out = jax.eval_shape(lambda x, w: conv1d(x, w, g, padded), x, w)
            assert out.shape[1] == g.output_length(length, padded), (g, padded)


def test_input_length_is_the_inverse_of_output_length():
    """input_length(n) is the shortest input giving at least n outputs, and equals get_delay's step."""
    for transposed, stride in itertools.product((False, True), (1, 2, 3, 5, 8)):
        for g in _geometries(transposed, stride):
            if g.output_padding:
                continue
            for n in range(-40, 60):
                length = g.input_length(n)
                assert g.output_length(length) >= n, (g, n)
                assert g.output_length(length - 1) < n, (g, n)
                # the original's get_delay, layer by layer (float arithmetic, then ceil)
                s, span = g.stride, g.dilation * (g.kernel - 1) + 1
                original = math.ceil(((n - span) / s) + 1) if transposed else math.ceil((n - 1) * s + span)
                assert length == original, (g, n)


@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "transposed"])
def test_input_span_matches_torch_dependencies(transposed):
    """input_span(n): most input samples that n consecutive outputs depend on (max over phases).

    The dependency pattern of a PyTorch layer is read off its response to every unit impulse
    (all-ones kernel, no bias): ``deps[i, o]`` is True when output ``o`` depends on input ``i``.
    """
    torch = require_reference("torch")
    for stride, k, d in itertools.product((1, 2, 3, 5), (1, 2, 4, 7, 10), (1, 2, 3)):
        g = ConvGeometry(k, stride=stride, dilation=d, transposed=transposed)
        layer = _torch_layer(g, padded=False)
        length = 40 if transposed else 160
        with torch.no_grad():
            layer.weight.fill_(1.0)
            layer.bias.zero_()
            deps = layer(torch.eye(length)[:, None, :])[:, 0, :].numpy() != 0  # [input, output]
        n_out = deps.shape[1]
        assert n_out >= 4 * stride + 5
        for n in (1, 2, 5):
            extents = []
            for start in range(n_out // 2 - 2 * stride, n_out // 2 + 2 * stride):
                idx = np.flatnonzero(deps[:, start : start + n].any(axis=1))
                # (with kernel < stride some outputs of a transposed conv depend on no input)
                extents.append(int(idx[-1] - idx[0] + 1) if idx.size else 0)
            if transposed and d > 1:
                # a dilated transposed conv skips some inputs at some phases: still an upper bound
                assert g.input_span(n) >= max(extents), (g, n, extents)
                assert g.input_span(n) - max(extents) < d, (g, n, extents)
            else:
                assert g.input_span(n) == max(extents), (g, n, extents)
