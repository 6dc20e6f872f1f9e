"""Frozen model configurations and the presets of the released DAC models and of DAC-VAE."""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Mapping, Union

from dac_jax.errors import UsageError


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class _Backbone:
    """What DAC's and DAC-VAE's configs share: the encoder/decoder fields' normalisation and checks,
    and the hop and frame rate they imply. Methods only, so each dataclass keeps its field order."""

    def _normalise_backbone(self, *counts: str) -> None:
        """Lists (from JSON / torch kwargs) become tuples, keeping the dataclass hashable; every size,
        rate and ``counts`` field must be a positive integer (``ValueError`` naming the field)."""
        for name in ("encoder_rates", "decoder_rates"):
            rates = getattr(self, name)
            if isinstance(rates, (str, bytes)) or not hasattr(rates, "__iter__"):
                raise ValueError(f"{name} must be a list of positive integers, got {rates!r}")
            object.__setattr__(self, name, tuple(_positive_int(f"{name} entry", r) for r in rates))
            if not getattr(self, name):
                raise ValueError(f"{name} must not be empty")
        if self.latent_dim is None:
            object.__setattr__(self, "latent_dim", self.encoder_dim * 2 ** len(self.encoder_rates))
        for name in ("encoder_dim", "latent_dim", "decoder_dim", "sample_rate", *counts):
            object.__setattr__(self, name, _positive_int(name, getattr(self, name)))
        if self.decoder_dim % 2 ** len(self.decoder_rates):
            raise ValueError(
                f"decoder_dim {self.decoder_dim} must be divisible by 2 ** {len(self.decoder_rates)}"
            )

    def to_kwargs(self) -> dict[str, Any]:
        """Constructor kwargs of the original (``dac.DAC`` / ``DACVAE``), lists as the original stores them."""
        kwargs = dataclasses.asdict(self)
        kwargs["encoder_rates"] = list(self.encoder_rates)
        kwargs["decoder_rates"] = list(self.decoder_rates)
        return kwargs

    @property
    def hop_length(self) -> int:
        return math.prod(self.encoder_rates)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length


@dataclasses.dataclass(frozen=True)
class DACConfig(_Backbone):
    """Constructor arguments of the original ``dac.DAC``, frozen and hashable.

    ``latent_dim=None`` means ``encoder_dim * 2 ** len(encoder_rates)``, as in the original.
    ``quantizer_dropout`` is the fraction of each training batch that gets a random number of
    codebooks (the original's ``bool`` default False is 0.0; its final configs use 0.5).
    """

    encoder_dim: int = 64
    encoder_rates: tuple[int, ...] = (2, 4, 8, 8)
    latent_dim: int | None = None
    decoder_dim: int = 1536
    decoder_rates: tuple[int, ...] = (8, 8, 4, 2)
    n_codebooks: int = 9
    codebook_size: int = 1024
    codebook_dim: int = 8
    quantizer_dropout: float = 0.0
    sample_rate: int = 44100

    def __post_init__(self):
        if not isinstance(self.codebook_dim, numbers.Integral) or isinstance(self.codebook_dim, bool):
            raise ValueError(f"only an int codebook_dim is supported, got {self.codebook_dim!r}")
        self._normalise_backbone("n_codebooks", "codebook_size", "codebook_dim")
        dropout = self.quantizer_dropout
        if isinstance(dropout, (str, bytes)) or not isinstance(dropout, numbers.Real) or not 0 <= dropout <= 1:
            raise ValueError(f"quantizer_dropout must be a fraction in [0, 1] (or a bool), got {dropout!r}")
        object.__setattr__(self, "quantizer_dropout", float(dropout))

    @property
    def bitrate(self) -> float:
        """Bits per second with all codebooks."""
        return self.n_codebooks * math.log2(self.codebook_size) * self.frame_rate

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> tuple["DACConfig", list[str]]:
        """Config from a checkpoint's ``metadata.kwargs``; also returns the keys it ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in kwargs.items() if k in names}
        return cls(**known), sorted(set(kwargs) - names)


PRESETS: dict[str, DACConfig] = {
    # released models (DAC_SPEC section 1); quantizer_dropout as in the final training configs
    "44khz": DACConfig(quantizer_dropout=0.5),
    "44khz-16kbps": DACConfig(latent_dim=128, n_codebooks=18, quantizer_dropout=0.5),
    "24khz": DACConfig(
        encoder_rates=(2, 4, 5, 8), decoder_rates=(8, 5, 4, 2), n_codebooks=32,
        quantizer_dropout=0.5, sample_rate=24000,
    ),
    "16khz": DACConfig(
        encoder_rates=(2, 4, 5, 8), decoder_rates=(8, 5, 4, 2), n_codebooks=12,
        quantizer_dropout=0.5, sample_rate=16000,
    ),
    # small models for tests and CPU experiments: same topology, few channels
    "tiny": DACConfig(
        encoder_dim=4, encoder_rates=(2, 4), latent_dim=16, decoder_dim=32, decoder_rates=(4, 2),
        n_codebooks=4, codebook_size=32, codebook_dim=4, quantizer_dropout=0.5, sample_rate=16000,
    ),
    "tiny-odd": DACConfig(  # a stride-5 decoder, like the 16/24 kHz models
        encoder_dim=4, encoder_rates=(2, 5), latent_dim=16, decoder_dim=32, decoder_rates=(5, 2),
        n_codebooks=3, codebook_size=32, codebook_dim=4, quantizer_dropout=0.5, sample_rate=16000,
    ),
}

ConfigLike = Union[str, DACConfig]


def _preset(config, kind: type, presets: dict, what: str):
    if isinstance(config, kind):
        return config
    try:
        return presets[config]
    except (KeyError, TypeError):
        raise UsageError(f"unknown {what} {config!r}; presets: {', '.join(presets)}") from None


def get_config(config: ConfigLike) -> DACConfig:
    """A preset by name, or the config itself."""
    return _preset(config, DACConfig, PRESETS, "model type")


@dataclasses.dataclass(frozen=True)
class VAEConfig(_Backbone):
    """Constructor arguments of DAC-VAE's ``DACVAE`` (primepake/dac_vae) that this port builds.

    A separate class from :class:`DACConfig` rather than a DAC config with a bottleneck switch:
    the codebook fields, ``bitrate`` and ``to_kwargs`` (the original ``dac.DAC``'s constructor)
    mean nothing for the VAE, and a ``Codec`` must never be handed a VAE. Defaults are the
    original constructor's, which its checkpoints' ``config["vae"]`` leaves out when unset.
    Mono in and out only (the released configs set ``d_in = d_out = 1``), Snake activations.
    """

    encoder_dim: int = 64
    encoder_rates: tuple[int, ...] = (2, 4, 8, 8)
    latent_dim: int | None = 64
    decoder_dim: int = 1536
    decoder_rates: tuple[int, ...] = (8, 8, 4, 2)
    sample_rate: int = 44100

    def __post_init__(self):
        self._normalise_backbone()

    def to_kwargs(self) -> dict[str, Any]:
        """Constructor kwargs of the original ``DACVAE``, with the architecture this port builds
        spelled out (its defaults differ: ``d_in = d_out = 2``)."""
        return {**super().to_kwargs(), **{k: built for k, (_, built) in _VAE_FIXED_KWARGS.items()}}

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> tuple["VAEConfig", list[str]]:
        """Config from the original's ``DACVAE(**kwargs)`` (its checkpoints' ``config["vae"]``);
        also returns the keys it ignored (initialisation only: ``weight_init``, ``gain``, ...).

        Raises ``ValueError`` for architectures this port does not build (stereo, BatchNorm,
        other activations, residual scaling, no final tanh or bias).
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unsupported = [
            f"{key}={kwargs.get(key, default)!r} (supported: {required!r})"
            for key, (default, required) in _VAE_FIXED_KWARGS.items()
            if kwargs.get(key, default) != required
        ]
        if unsupported:
            raise ValueError(f"unsupported DAC-VAE architecture: {', '.join(unsupported)}")
        known = {k: v for k, v in kwargs.items() if k in names}
        return cls(**known), sorted(set(kwargs) - names - set(_VAE_FIXED_KWARGS))


#: The original DACVAE's architectural kwargs this port fixes: ``{name: (its default, the value built)}``.
_VAE_FIXED_KWARGS: dict[str, tuple[Any, Any]] = {
    "d_in": (2, 1),
    "d_out": (2, 1),
    "activation": ("snake", "snake"),
    "norm": (False, False),
    "scale_residual": (False, False),
    "use_tanh_as_final": (True, True),
    "use_bias_at_final": (True, True),
}

VAE_PRESETS: dict[str, VAEConfig] = {
    # DAC_SPEC section 5: configx2.yml ("80 dim, 2x frames") and config.yml ("64 dim, 3x frames")
    "vae24khz-x2": VAEConfig(
        encoder_rates=(2, 3, 4, 4, 5), latent_dim=80, decoder_rates=(5, 4, 4, 3, 2), sample_rate=24000
    ),
    "vae24khz-x3": VAEConfig(
        encoder_rates=(2, 4, 5, 8), latent_dim=64, decoder_rates=(8, 5, 4, 2), sample_rate=24000
    ),
    # for tests: odd strides on both sides, few channels
    "vae-tiny": VAEConfig(
        encoder_dim=4, encoder_rates=(2, 3), latent_dim=8, decoder_dim=32, decoder_rates=(3, 2), sample_rate=24000
    ),
}

VAEConfigLike = Union[str, VAEConfig]


def get_vae_config(config: VAEConfigLike) -> VAEConfig:
    """A DAC-VAE preset by name, or the config itself."""
    return _preset(config, VAEConfig, VAE_PRESETS, "DAC-VAE model type")
