"""Property tests of ConvGeometry against PyTorch's own convolutions (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dac_jax.model.config import DACConfig
from dac_jax.model.dac import DAC
from dac_jax.nn.geometry import ConvGeometry
from tests.requires import require_reference


# module-scoped, not function-scoped: hypothesis runs many examples per fixture value
@pytest.fixture(scope="module")
def torch():
    return require_reference("torch")


@pytest.fixture(scope="module")
def original_dac():
    return require_reference("dac")


@st.composite
def geometries(draw):
    transposed = draw(st.booleans())
    kernel = draw(st.integers(1, 12))
    stride = draw(st.integers(1, 6))
    dilation = draw(st.integers(1, 4))
    padding = draw(st.integers(0, (dilation * (kernel - 1)) // 2))
    output_padding = draw(st.integers(0, max(0, min(stride, dilation) - 1))) if transposed else 0
    return ConvGeometry(kernel, stride, dilation, transposed, padding, output_padding)


def torch_length(torch, g: ConvGeometry, length: int, padded: bool) -> int:
    p = g.padding if padded else 0
    if g.transposed:
        conv = torch.nn.ConvTranspose1d(1, 1, g.kernel, g.stride, p, g.output_padding if padded else 0, dilation=g.dilation)
    else:
        conv = torch.nn.Conv1d(1, 1, g.kernel, g.stride, p, dilation=g.dilation)
    with torch.no_grad():
        return conv(torch.zeros(1, 1, length)).shape[-1]


@settings(max_examples=150, deadline=None)
@given(geometries(), st.integers(1, 300), st.booleans())
def test_output_length_is_torchs(torch, g, length, padded):
    if g.output_length(length, padded) <= 0:
        return  # torch refuses empty outputs; the negative arithmetic is checked against get_delay below
    assert g.output_length(length, padded) == torch_length(torch, g, length, padded)


@settings(max_examples=150, deadline=None)
@given(geometries(), st.integers(1, 400))
def test_input_length_is_the_least_input_that_reaches_the_output(g, target):
    n = g.input_length(target)
    assert g.output_length(n) >= target
    assert g.output_length(n - 1) < target


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.integers(2, 6), min_size=1, max_size=3),
    st.integers(1, 4),
)
def test_delay_and_output_length_equal_the_originals_for_random_architectures(original_dac, rates, n_codebooks):
    dac = original_dac
    config = DACConfig(encoder_dim=2, encoder_rates=tuple(rates), latent_dim=4, decoder_dim=2 ** len(rates),
                       decoder_rates=tuple(reversed(rates)), n_codebooks=n_codebooks, codebook_size=4,
                       codebook_dim=2, sample_rate=16000)
    original = dac.DAC(**config.to_kwargs())
    ours = DAC(config)
    assert ours.delay() == original.delay
    for length in (0, 1, 1000, 12345):
        assert ours.output_length(length) == original.get_output_length(length)
