"""The generator's training gradients are the original's: every parameter's gradient of a loss on
its training forward pass (quantiser in training mode, every codebook kept), against torch's
autograd through ``dac.DAC`` with the same weights.

The loss is a fixed random weighting of the reconstruction plus the recipe's VQ terms
(``0.25 * commitment + codebook``), so every path the step's pullback takes is exercised: the
decoder, the straight-through estimator, the codebooks' and the encoder's VQ gradients, Snake's
``alpha``, the weight norms' ``g`` and ``v``. The architecture is the shipped demo model's
(``configs/demo.yml``: 16 kHz, encoder 16, decoder 256, 8 codebooks), randomly initialised.

Measured (float32, x86_64 CPU): the largest error of any parameter's gradient, relative to that
gradient's largest entry, 6.8e-6 with direct convolutions (6.0e-6 in the conv layout) and 2.8e-5
with the trainer's Winograd F(4, 7) convolutions; the loss within 2.3e-6 relative.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dac_jax.audio import synth
from dac_jax.model.config import DACConfig
from dac_jax.model.dac import DAC
from dac_jax.nn import layout, winograd
from dac_jax.train.state import generator_layout
from dac_jax.weights.torch_format import state_dict_to_variables, variables_to_state_dict
from tests.requires import require_reference

DEMO = DACConfig(sample_rate=16000, encoder_dim=16, encoder_rates=(2, 4, 5, 8), latent_dim=128, decoder_dim=256,
                 decoder_rates=(8, 5, 4, 2), n_codebooks=8, codebook_size=1024, codebook_dim=8,
                 quantizer_dropout=0.0)
LENGTH = 6080  # the demo recipe's 0.38 s excerpt at 16 kHz (19 frames)


@pytest.fixture(scope="module")
def original_gradients():
    torch = require_reference("torch")
    from tests.reference import torch_model

    model = torch_model(DEMO, seed=0).train()  # dropout 0: every item keeps every codebook, as below
    variables = state_dict_to_variables({k: v.detach().numpy() for k, v in model.state_dict().items()}, DEMO)
    audio = np.stack([synth.speech_like(LENGTH / 16000, 16000, seed=s)[:LENGTH] for s in range(2)])[:, None]
    audio = audio.astype(np.float32)
    out = model(torch.from_numpy(audio))
    # the stride-5 decoder gives 8 samples fewer than it was given (the original's length)
    weights = np.random.default_rng(0).standard_normal(tuple(out["audio"].shape)).astype(np.float32)
    loss = (out["audio"] * torch.from_numpy(weights)).sum() + 0.25 * out["vq/commitment_loss"] + out["vq/codebook_loss"]
    loss.backward()
    grads = {k: p.grad.numpy() for k, p in model.named_parameters()}
    return variables, audio, weights, float(loss.detach()), grads


@pytest.mark.parametrize("conv_layout, tile, tolerance", [(False, None, 7e-5), (True, None, 7e-5), (True, 4, 3e-4)])
def test_generator_parameter_gradients_are_the_originals(original_gradients, conv_layout, tile, tolerance):
    """In PyTorch's layout (imported weights), and in the conv layout the trainer's state holds,
    with direct convolutions and with the trainer's Winograd F(4, 7) (which only the conv layout
    takes)."""
    variables, audio, weights, their_loss, theirs = original_gradients
    params = variables["params"]
    if conv_layout:
        params = generator_layout(DEMO, params, layout.to_conv_layout)

    def loss(params):
        with winograd.in_training(tile, 128):
            out = DAC(DEMO).apply({"params": params}, jnp.asarray(audio), train=True,
                                  codebook_counts=jnp.full((audio.shape[0],), DEMO.n_codebooks))
        return jnp.sum(out.audio * weights) + 0.25 * out.commitment_loss + out.codebook_loss

    value, grads = jax.jit(jax.value_and_grad(loss))(params)
    if conv_layout:  # a permutation of each kernel's entries: its gradient maps back the same way
        grads = generator_layout(DEMO, grads, layout.to_torch_layout)
    assert float(value) == pytest.approx(their_loss, rel=2e-5)
    ours = variables_to_state_dict({"params": grads})
    assert sorted(ours) == sorted(theirs)
    errors = {k: float(np.abs(ours[k] - theirs[k]).max() / np.abs(theirs[k]).max()) for k in theirs}
    worst = max(errors, key=errors.get)
    assert errors[worst] < tolerance, (worst, errors[worst])
