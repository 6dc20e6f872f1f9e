"""A PyTorch rendition of the DAC-VAE generator (primepake/dac_vae), for the equivalence tests.

The original repository is not installable here; DAC_SPEC section 5 describes it. Its generator is
DAC's: the same ``Encoder``, ``Decoder`` and blocks, except that its module redefines ``WNConv1d``
(as ``nn.Sequential(weight-normed Conv1d, LeakyReLU(0.1))``) below the classes that call it, so
every plain conv they build is wrapped, and that its transposed convs take
``output_padding = 0 if stride % 2 == 0 else 1``. :func:`dac_vae_layers` reproduces exactly that
on the installed original ``dac`` package: while it is active, ``dac.model.dac``'s own classes
resolve ``WNConv1d`` / ``WNConvTranspose1d`` to the VAE's versions, as the VAE's classes did.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from dac_jax.model.config import VAE_PRESETS, VAEConfig


def _torch_modules():
    import dac.model.dac as dac_model
    import dac.nn.layers as dac_layers
    import torch

    return torch, dac_model, dac_layers


def leaky_wn_conv1d(*args, **kwargs):
    """DAC-VAE's ``WNConv1d``: the weight-normed conv is child ``0``, LeakyReLU(0.1) child ``1``."""
    torch, _, dac_layers = _torch_modules()
    return torch.nn.Sequential(dac_layers.WNConv1d(*args, **kwargs), torch.nn.LeakyReLU(0.1))


def wn_conv_transpose1d(*args, stride, **kwargs):
    """DAC-VAE's transposed conv: DAC's, with an output_padding of 1 at odd strides."""
    _, _, dac_layers = _torch_modules()
    return dac_layers.WNConvTranspose1d(*args, stride=stride, output_padding=0 if stride % 2 == 0 else 1, **kwargs)


@contextlib.contextmanager
def dac_vae_layers():
    """While active, ``dac.model.dac``'s classes build DAC-VAE's layers (see the module docstring)."""
    _, dac_model, _ = _torch_modules()
    saved = dac_model.WNConv1d, dac_model.WNConvTranspose1d
    dac_model.WNConv1d, dac_model.WNConvTranspose1d = leaky_wn_conv1d, wn_conv_transpose1d
    try:
        yield dac_model
    finally:
        dac_model.WNConv1d, dac_model.WNConvTranspose1d = saved


def torch_vae(config: VAEConfig | str, seed: int = 0):
    """The DAC-VAE generator in PyTorch (``encode``, ``decode``, ``forward`` of the original, with the
    sampling noise passed in), seeded, in eval mode, its parameters randomised (below)."""
    torch, _, _ = _torch_modules()
    from dac.model.base import CodecMixin  # get_delay / get_output_length, as DAC-VAE's own base.py

    config = VAE_PRESETS[config] if isinstance(config, str) else config

    class TorchDACVAE(CodecMixin, torch.nn.Module):
        def __init__(self):
            super().__init__()
            c = config
            self.latent_dim, self.hop_length = c.latent_dim, c.hop_length
            with dac_vae_layers() as dac_model:
                self.encoder = dac_model.Encoder(c.encoder_dim, list(c.encoder_rates), c.latent_dim)
                self.decoder = dac_model.Decoder(c.latent_dim, c.decoder_dim, list(c.decoder_rates))
            self.en_conv_post = leaky_wn_conv1d(c.latent_dim, 2 * c.latent_dim, kernel_size=1)
            self.de_conv_pre = leaky_wn_conv1d(c.latent_dim, c.latent_dim, kernel_size=1)

        def encode(self, audio, noise):
            x = torch.nn.functional.leaky_relu(self.encoder(audio))  # slope 0.01
            x = self.en_conv_post(x)
            m, logs = torch.split(x, self.latent_dim, dim=1)
            logs = torch.clamp(logs, min=-14.0, max=14.0)
            return m + noise * torch.exp(logs), m, logs

        def decode(self, z):
            return self.decoder(self.de_conv_pre(z))

        def forward(self, audio, noise):
            length = audio.shape[-1]
            audio = torch.nn.functional.pad(audio, (0, -length % self.hop_length))
            z, m, logs = self.encode(audio, noise)
            kl = 0.5 * (m.pow(2) + torch.exp(logs) - logs - 1).sum(1).mean()
            return {"audio": self.decode(z)[..., :length], "z": z, "m": m, "logs": logs, "kl": kl}

    torch.manual_seed(seed)
    model = TorchDACVAE().eval()
    _randomize(model, seed)
    return model


def _randomize(model, seed: int) -> None:
    """Snake alphas and weight-norm gains away from their initial values (ones; ``||v||``), so that
    a mix-up of either cannot pass unnoticed. Conv biases keep PyTorch's default (non-zero) init.
    The last conv's gain is raised so that the output spans much of the tanh's range: at PyTorch's
    default init it is nearly silent (std ~0.006), and its differences would prove little."""
    torch, _, _ = _torch_modules()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("alpha") or name.endswith("weight_g"):
                p.mul_(0.5 + torch.rand(p.shape, generator=gen))
        model.decoder.model[-2][0].weight_g.mul_(30.0)


def set_unpadded(model) -> None:
    """Unpadded mode as this port defines it: no conv padding and no output_padding."""
    torch, _, _ = _torch_modules()
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
            module.padding = (0,)
        if isinstance(module, torch.nn.ConvTranspose1d):
            module.output_padding = (0,)


def save_checkpoint(model, path: Path, config: VAEConfig | None = None, bare: bool = False) -> Path:
    """The original's training ``checkpoint.pt`` layout (``generator`` plus training state and the
    YAML ``config`` with its ``vae`` section), or with ``bare`` the generator's state dict alone."""
    torch, _, _ = _torch_modules()
    state_dict = model.state_dict()
    if bare:
        torch.save(state_dict, path)
        return path
    vae = {
        "sample_rate": config.sample_rate, "encoder_dim": config.encoder_dim, "latent_dim": config.latent_dim,
        "encoder_rates": list(config.encoder_rates), "decoder_dim": config.decoder_dim,
        "decoder_rates": list(config.decoder_rates), "d_in": 1, "d_out": 1,
        "weight_init": "xavier", "activation": "snake", "gain": 1.0,
    }
    training_config = {"vae": vae, "batch_size": 128, "lambdas": {"mel/loss": 15.0, "kl/loss": 0.1}}
    torch.save(
        {
            "generator": state_dict,
            "discriminator": {},
            "optimizer_g": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]},
            "step": 1000,
            "config": training_config,
            "metadata": {"logs": {}, "step": 1000, "config": training_config},
        },
        path,
    )
    return path


def run_torch(model, audio: np.ndarray, noise: np.ndarray) -> dict[str, np.ndarray]:
    """The rendition's forward pass: numpy outputs."""
    torch, _, _ = _torch_modules()
    with torch.no_grad():
        out = model(torch.from_numpy(np.array(audio)), torch.from_numpy(np.array(noise)))
    return {k: v.numpy() for k, v in out.items()}
