"""The original DAC discriminator (``dac.model.discriminator.Discriminator``) in Flax.

Multi-period (MPD), multi-scale (MSD, unused by the final recipe) and multi-band multi-resolution
complex-STFT (MRD) sub-discriminators, on a DC-removed, peak-normalised input::

    audio [B, 1, T] --preprocess--> y --+-- MPD(p) for p in periods     (discriminators_0 ..)
                                        +-- MSD(r) for r in rates        (then these)
                                        +-- MRD(w) for w in fft_sizes    (then these)

``Discriminator(config)(audio)`` returns one list per sub-discriminator, in that order, of its
feature maps; the last map of each list is its logit. Every map is **channels-first** as in the
original (``MPD [B, C, T/p, p]``, ``MSD [B, C, T']``, ``MRD [B, C, frames, bins]``), so the
numbers and the layout are the original's; ``channels_last=True`` returns the same maps
channels-last (``[B, T/p, p, C]``, ``[B, T', C]``, ``[B, frames, bins, C]``) without the final
transposes. The GAN losses (means of squares, mean L1 of feature maps) do not depend on the layout.

Inside, every module is channels-last (NHWC / NWC). Parameters keep the PyTorch layouts
(``weight_v [out, in/groups, *kernel]``, ``weight_g [out, 1, ...]``, ``bias [out]``) and the Flax
submodule names mirror the original's module tree, so a Flax path maps to the PyTorch key by the
repo's rule (``name_N`` -> ``name.N``, see :mod:`dac_jax.weights.torch_format`)::

    discriminators_0 / convs_0 / 0 / weight_v        ->  discriminators.0.convs.0.0.weight_v
    discriminators_5 / band_convs_0 / 1 / 0 / bias   ->  discriminators.5.band_convs.0.1.0.bias
    discriminators_5 / conv_post / weight_g          ->  discriminators.5.conv_post.weight_g

(``convs.i`` is the original's ``nn.Sequential(conv, LeakyReLU)``, whose conv is child ``0``.)

The convs are :class:`dac_jax.nn.layers.WNConv` (PyTorch's default init, which the original keeps)
and the MRD spectrogram is audiotools' ``AudioSignal.stft`` with ``match_stride=True`` (periodic
hann, hop ``w // 4``): :func:`dac_jax.audio.spectral.stft`, frames moved before bins.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dac_jax.audio.resample import resample_frac
from dac_jax.audio.spectral import pad_last, stft, stft_min_length
from dac_jax.errors import AudioError
from dac_jax.nn.init import numpy_init
from dac_jax.nn.layers import ConvSpec, LeakyWNConv, WNConv

BANDS: tuple[tuple[float, float], ...] = ((0.0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DiscriminatorConfig:
    """Constructor arguments of the original ``Discriminator``; the defaults are DAC's final recipe.

    ``rates`` (MSD, empty: unused), ``periods`` (MPD), ``fft_sizes`` (MRD window lengths, hop
    ``w // 4``), ``sample_rate``, ``bands`` (MRD bands as fractions of the ``w // 2 + 1`` bins, edges
    truncated to int).
    """

    rates: tuple[int, ...] = ()
    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    fft_sizes: tuple[int, ...] = (2048, 1024, 512)
    sample_rate: int = 44100
    bands: tuple[tuple[float, float], ...] = BANDS
    width: float = 1.0  # dac-jax extension: scales every hidden channel count (1: the original)

    def __post_init__(self):
        # accept lists from torch kwargs / JSON, keep the dataclass hashable
        object.__setattr__(self, "rates", tuple(int(r) for r in self.rates))
        object.__setattr__(self, "periods", tuple(int(p) for p in self.periods))
        object.__setattr__(self, "fft_sizes", tuple(int(w) for w in self.fft_sizes))
        object.__setattr__(self, "sample_rate", int(self.sample_rate))
        object.__setattr__(self, "bands", tuple((float(lo), float(hi)) for lo, hi in self.bands))
        object.__setattr__(self, "width", float(self.width))
        if not 0 < self.width <= 1:
            raise ValueError(f"width must be in (0, 1], got {self.width}")
        if any(p < 1 for p in self.periods):
            raise ValueError(f"periods must be positive, got {self.periods}")
        if any(r < 1 or self.sample_rate // r < 1 for r in self.rates):
            raise ValueError(f"rates must be positive and at most the sample rate, got {self.rates}")
        if any(w < 4 for w in self.fft_sizes):
            raise ValueError(f"fft_sizes must be at least 4 (hop w // 4), got {self.fft_sizes}")
        if self.fft_sizes and not self.bands:
            raise ValueError("an MRD needs at least one band")
        for w in self.fft_sizes:
            for lo, hi in band_edges(w, self.bands):
                if hi <= lo:
                    raise ValueError(f"band edges {self.bands} give an empty band ({lo}, {hi}) for fft size {w}")

    @property
    def n_discriminators(self) -> int:
        return len(self.periods) + len(self.rates) + len(self.fft_sizes)

    def labels(self) -> list[str]:
        """A name per sub-discriminator, in output order (``mpd_2``, ..., ``msd_1``, ``mrd_2048``)."""
        return (
            [f"mpd_{p}" for p in self.periods]
            + [f"msd_{r}" for r in self.rates]
            + [f"mrd_{w}" for w in self.fft_sizes]
        )

    def min_length(self) -> int:
        """The shortest input the original accepts (its reflect pads must be shorter than the signal)."""
        n = max([p + 1 for p in self.periods] + [1])
        for w in self.fft_sizes:
            n = max(n, stft_min_length(w, match_stride=True))
        return n

    def to_kwargs(self) -> dict[str, Any]:
        """Constructor kwargs of the original ``Discriminator`` (lists, as the original stores them)."""
        if self.width != 1.0:
            raise ValueError(f"the original has no narrower discriminator (width {self.width}); only width 1 exports")
        return {
            "rates": list(self.rates),
            "periods": list(self.periods),
            "fft_sizes": list(self.fft_sizes),
            "sample_rate": self.sample_rate,
            "bands": [tuple(b) for b in self.bands],
        }

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> tuple["DiscriminatorConfig", list[str]]:
        """Config from a checkpoint's ``metadata.kwargs``; also returns the keys it ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in kwargs.items() if k in names}
        return cls(**known), sorted(set(kwargs) - names)


def band_edges(window_length: int, bands: Sequence[tuple[float, float]] = BANDS) -> list[tuple[int, int]]:
    """MRD band edges in bins: ``int(fraction * (w // 2 + 1))``, truncated as in the original."""
    n_bins = window_length // 2 + 1
    return [(int(lo * n_bins), int(hi * n_bins)) for lo, hi in bands]


# --------------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------------


def preprocess(audio: jax.Array) -> jax.Array:
    """The original's input normalisation, per row and channel, over time (axis -1)::

        y = audio - mean(audio);  y = 0.8 * y / (max|y| + 1e-9)
    """
    y = audio - jnp.mean(audio, axis=-1, keepdims=True)
    return 0.8 * y / (jnp.max(jnp.abs(y), axis=-1, keepdims=True) + 1e-9)


def pad_to_period(x: jax.Array, period: int) -> jax.Array:
    """Reflect-pad ``x [..., T]`` on the right by ``period - T % period`` (a full period when
    ``T`` is already a multiple, as in the original)."""
    return pad_last(x, 0, period - x.shape[-1] % period, "reflect")


# --------------------------------------------------------------------------------------------
# Sub-discriminators: channels-last inside, y [B, T] in, a list of channels-last maps out
# --------------------------------------------------------------------------------------------

MPD_CONVS = (
    ConvSpec(1, 32, (5, 1), (3, 1), (2, 0)),
    ConvSpec(32, 128, (5, 1), (3, 1), (2, 0)),
    ConvSpec(128, 512, (5, 1), (3, 1), (2, 0)),
    ConvSpec(512, 1024, (5, 1), (3, 1), (2, 0)),
    ConvSpec(1024, 1024, (5, 1), (1, 1), (2, 0)),
)
MPD_POST = ConvSpec(1024, 1, (3, 1), (1, 1), (1, 0))

MSD_CONVS = (
    ConvSpec(1, 16, (15,), (1,), (7,)),
    ConvSpec(16, 64, (41,), (4,), (20,), groups=4),
    ConvSpec(64, 256, (41,), (4,), (20,), groups=16),
    ConvSpec(256, 1024, (41,), (4,), (20,), groups=64),
    ConvSpec(1024, 1024, (41,), (4,), (20,), groups=256),
    ConvSpec(1024, 1024, (5,), (1,), (2,)),
)
MSD_POST = ConvSpec(1024, 1, (3,), (1,), (1,))

MRD_CHANNELS = 32
MRD_CONVS = (
    ConvSpec(2, MRD_CHANNELS, (3, 9), (1, 1), (1, 4)),
    ConvSpec(MRD_CHANNELS, MRD_CHANNELS, (3, 9), (1, 2), (1, 4)),
    ConvSpec(MRD_CHANNELS, MRD_CHANNELS, (3, 9), (1, 2), (1, 4)),
    ConvSpec(MRD_CHANNELS, MRD_CHANNELS, (3, 9), (1, 2), (1, 4)),
    ConvSpec(MRD_CHANNELS, MRD_CHANNELS, (3, 3), (1, 1), (1, 1)),
)
MRD_POST = ConvSpec(MRD_CHANNELS, 1, (3, 3), (1, 1), (1, 1))


def narrowed(spec: ConvSpec, width: float, first: bool = False, last: bool = False) -> ConvSpec:
    """``spec`` with its hidden channel counts (and groups) scaled by ``width``: the input of a
    stack's first conv and the output of its post conv keep their sizes. Width 1 is the original."""
    if width == 1.0:
        return spec
    scale = lambda c: max(1, round(c * width))  # noqa: E731
    groups = max(1, round(spec.groups * width))
    cin = spec.in_channels if first else scale(spec.in_channels)
    cout = spec.out_channels if last else scale(spec.out_channels)
    while cin % groups or cout % groups:
        groups -= 1
    return dataclasses.replace(spec, in_channels=cin, out_channels=cout, groups=groups)


class MPD(nn.Module):
    """Multi-period: reflect-pad to a multiple of ``period``, fold to ``[B, T/p, p, 1]``, Conv2d stack.

    Every kernel is ``(k, 1)``: it runs along time within each of the ``p`` phases. So the phases
    are computed as ``B * p`` one-dimensional signals (the same sums, several times faster on
    XLA's CPU backend than 2-D convolutions), and each map is returned as ``[B, T', p, C]``.
    """

    period: int
    width: float = 1.0

    @nn.compact
    def __call__(self, y: jax.Array) -> list[jax.Array]:
        x = pad_to_period(y, self.period)  # [B, T']
        batch, p = x.shape[0], self.period
        x = jnp.swapaxes(x.reshape(batch, -1, p), 1, 2).reshape(batch * p, -1, 1)  # [B * p, T'/p, 1]

        def as_map(h):  # [B * p, L, C] -> [B, L, p, C]: "b c (l p) -> b c l p", channels-last
            return jnp.swapaxes(h.reshape(batch, p, h.shape[1], h.shape[2]), 1, 2)

        fmap = []
        for i, spec in enumerate(MPD_CONVS):
            x = LeakyWNConv(narrowed(spec, self.width, first=i == 0), along_time=True, name=f"convs_{i}")(x)
            fmap.append(as_map(x))
        fmap.append(as_map(WNConv(narrowed(MPD_POST, self.width, last=True), along_time=True, name="conv_post")(x)))
        return fmap


class MSD(nn.Module):
    """Multi-scale: resample to ``sample_rate // rate`` (julius' resample_frac), grouped Conv1d stack."""

    rate: int = 1
    sample_rate: int = 44100
    width: float = 1.0

    @nn.compact
    def __call__(self, y: jax.Array) -> list[jax.Array]:
        x = resample_frac(y, self.sample_rate, self.sample_rate // self.rate)[..., None]  # [B, T', 1]
        fmap = []
        for i, spec in enumerate(MSD_CONVS):
            x = LeakyWNConv(narrowed(spec, self.width, first=i == 0), name=f"convs_{i}")(x)
            fmap.append(x)
        fmap.append(WNConv(narrowed(MSD_POST, self.width, last=True), name="conv_post")(x))
        return fmap


class BandStack(nn.Module):
    """One band's conv stack (the original's inner ``nn.ModuleList``): children ``0`` .. ``4``."""

    width: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> list[jax.Array]:
        fmap = []
        for i, spec in enumerate(MRD_CONVS):
            x = LeakyWNConv(narrowed(spec, self.width, first=i == 0), name=str(i))(x)
            fmap.append(x)
        return fmap


class MRD(nn.Module):
    """Multi-band complex STFT: real/imag as 2 channels ``[B, frames, bins, 2]``, split into bands
    along frequency, a conv stack per band, bands concatenated along frequency, ``conv_post``."""

    window_length: int
    bands: tuple[tuple[float, float], ...] = BANDS
    width: float = 1.0

    @nn.compact
    def __call__(self, y: jax.Array) -> list[jax.Array]:
        spec = jnp.swapaxes(stft(y, self.window_length, match_stride=True), -1, -2)  # [B, frames, bins] complex
        x = jnp.stack([spec.real, spec.imag], axis=-1)  # [B, frames, bins, 2]
        fmap, outs = [], []
        for i, (lo, hi) in enumerate(band_edges(self.window_length, self.bands)):
            maps = BandStack(self.width, name=f"band_convs_{i}")(x[:, :, lo:hi, :])
            fmap.extend(maps)
            outs.append(maps[-1])
        x = jnp.concatenate(outs, axis=2)
        fmap.append(WNConv(narrowed(MRD_POST, self.width, last=True), name="conv_post")(x))
        return fmap


# --------------------------------------------------------------------------------------------
# The discriminator
# --------------------------------------------------------------------------------------------


def _channels_first(x: jax.Array) -> jax.Array:
    return jnp.moveaxis(x, -1, 1)


class Discriminator(nn.Module):
    """The original's ``Discriminator``: ``audio [B, 1, T]`` -> one list of feature maps per
    sub-discriminator (MPDs, then MSDs, then MRDs; :meth:`DiscriminatorConfig.labels`), the last
    map of each list its logit. Channels-first maps (the original's layout) unless
    ``channels_last``; see the module docstring for the shapes."""

    config: DiscriminatorConfig = DiscriminatorConfig()
    channels_last: bool = False

    @nn.compact
    def __call__(self, audio: jax.Array) -> list[list[jax.Array]]:
        if audio.ndim != 3 or audio.shape[1] != 1:
            raise AudioError(f"the discriminator takes mono audio [B, 1, T], got shape {tuple(audio.shape)}")
        c = self.config
        if audio.shape[-1] < c.min_length():
            raise AudioError(
                f"the discriminator needs at least {c.min_length()} samples (its reflect pads), got {audio.shape[-1]}"
            )
        y = preprocess(audio)[:, 0, :]  # [B, T]
        # names mirror the original's ModuleList: discriminators.0, .1, ...
        makers = (
            [lambda name, p=p: MPD(p, c.width, name=name) for p in c.periods]
            + [lambda name, r=r: MSD(r, c.sample_rate, c.width, name=name) for r in c.rates]
            + [lambda name, w=w: MRD(w, c.bands, c.width, name=name) for w in c.fft_sizes]
        )
        fmaps = []
        for i, make in enumerate(makers):
            maps = make(f"discriminators_{i}")(y)
            fmaps.append(maps if self.channels_last else [_channels_first(m) for m in maps])
        return fmaps


def init_discriminator(config: DiscriminatorConfig | None = None, seed: int | jax.Array = 0) -> dict:
    """Randomly initialised variables ``{"params": ...}`` with PyTorch's default conv init, which
    the original keeps (``weight_v`` uniform ``+-1/sqrt(fan_in)`` (kaiming-uniform with
    ``a=sqrt(5)``), ``weight_g = ||weight_v||`` per output channel, bias uniform
    ``+-1/sqrt(fan_in)``, ``fan_in = in/groups * prod(kernel)``).

    An int ``seed`` draws them with numpy (:func:`dac_jax.nn.init.numpy_init`: the module tree is
    traced abstractly, nothing is compiled; 1-3 s for DAC's 42.5 M parameters on 2 CPU cores,
    where the jitted Flax init compiles the forward pass and every initialiser, tens of seconds);
    the leaves are numpy float32 arrays. A JAX PRNG key runs the Flax initialisers under
    ``jax.jit`` instead (same distributions, other numbers). The parameters do not depend on the
    input length; init traces the shortest input the config accepts.
    """
    config = DiscriminatorConfig() if config is None else config
    dummy = jnp.zeros((1, 1, config.min_length()), jnp.float32)
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return numpy_init(Discriminator(config), dummy, seed=int(seed))
    return jax.jit(Discriminator(config).init)(seed, dummy)
