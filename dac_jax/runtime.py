"""The inference runtime: every compiled entry point of DAC and DAC-VAE, and the models they run.

Layer: ``nn`` -> ``model`` -> **runtime** -> ``codec`` -> ``api`` -> ``cli``. This module knows
no files and no facade; :mod:`dac_jax.codec` and :mod:`dac_jax.api` build on it.

The entry points are pure functions of ``(module, variables, inputs)``, each one ``jax.jit``
keyed by the module (static: its config and padding mode) and the input shapes; the variables are
an argument, never baked into the compiled code. :data:`trace_counts` counts the traces of each
(one per shape is the contract; tests assert it).

:class:`Model` binds a module to its variables (folded for inference once per load) and says what
the codec layer needs of any autoencoder: its rates and hop, its receptive fields in frames, and
its bottleneck's per-frame ``encode_frames`` / ``decode_frames`` on host arrays. :class:`DACModel`
and :class:`VAEModel` are the two bottlenecks; everything built on them is written once.
"""

from __future__ import annotations

import collections
import functools
import math
import os
from pathlib import Path
from typing import Any, ClassVar, Optional

import jax
import jax.numpy as jnp
import numpy as np

from dac_jax import guard
from dac_jax.errors import UsageError
from dac_jax.model.config import DACConfig, VAEConfig
from dac_jax.model.dac import DAC, Autoencoder, DACOutput, EncodeOutput
from dac_jax.model.vae import DACVAE, VAELatents, VAEOutput
from dac_jax.nn import precision as precision_rules
from dac_jax.nn.fold import fold_variables
from dac_jax.nn.layers import FOLDED
from dac_jax.nn.layers import mask_time
from dac_jax.nn.winograd import POINTS as WINOGRAD_POINTS

#: How many times each entry point was traced (one trace per input shape and static argument).
trace_counts: collections.Counter = collections.Counter()


# -- compilation cache ---------------------------------------------------------------------------------

#: where :func:`use_compilation_cache` keeps compiled programs unless told otherwise
COMPILATION_CACHE_ENV = "DAC_JAX_COMPILATION_CACHE"


def use_compilation_cache(folder: Optional[str] = None) -> Optional[Path]:
    """Turn on JAX's persistent compilation cache, so that a second run (or another process on the
    same machine) loads compiled programs instead of compiling them again (seconds each on a CPU).

    The folder is ``folder``, else ``$DAC_JAX_COMPILATION_CACHE``, else ``~/.cache/dac_jax/xla``;
    ``DAC_JAX_COMPILATION_CACHE=0`` (or ``off``) turns it off. Returns the folder, or ``None`` when off.
    """
    setting = folder if folder is not None else os.environ.get(COMPILATION_CACHE_ENV, "")
    if setting.strip().lower() in ("0", "off", "false", "no"):
        return None
    path = Path(setting).expanduser() if setting else Path.home() / ".cache" / "dac_jax" / "xla"
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return path


# -- many hosts ------------------------------------------------------------------------------------------


def check_distributed(
    coordinator_address: Optional[str] = None, num_processes: Optional[int] = None, process_id: Optional[int] = None,
) -> None:
    """:class:`UsageError` unless the three many-hosts settings are all given (and consistent: a
    ``host:port`` address, a process id in range) or none is."""
    given = [v is not None for v in (coordinator_address, num_processes, process_id)]
    if any(given) and not all(given):
        raise UsageError("--coordinator_address, --num_processes and --process_id go together "
                         "(or give none of them, to let JAX detect the cluster)")
    if not all(given):
        return
    host, _, port = coordinator_address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--coordinator_address must be host:port (e.g. 10.0.0.1:1234); got {coordinator_address!r}")
    if num_processes < 1:
        raise UsageError(f"--num_processes must be >= 1; got {num_processes}")
    if not 0 <= process_id < num_processes:
        raise UsageError(f"--process_id must be in 0..{num_processes - 1}; got {process_id}")


def initialize_distributed(
    coordinator_address: Optional[str] = None, num_processes: Optional[int] = None, process_id: Optional[int] = None,
) -> None:
    """Join a multi-process JAX job (``jax.distributed.initialize``): with all three arguments, or
    with none (the cluster's auto-detection: SLURM, Open MPI, TPU pods, ...). CPU processes talk
    through gloo. :class:`UsageError` for a partial or inconsistent set (:func:`check_distributed`)."""
    check_distributed(coordinator_address, num_processes, process_id)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if coordinator_address is not None:
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
    else:
        jax.distributed.initialize()


# -- ragged batches ----------------------------------------------------------------------------------
#
# ``lengths [B]`` (samples) on the way in, ``frame_lengths [B]`` on the way out: item b is that long,
# right-padded to the batch's length, and gets what it gets alone. The layers mask their padding
# (dac_jax.nn.layers.Layer); here the input is zeroed past each item's end and the outputs past
# each item's own length, so that what lies there is zeros, never another item's numbers.


def _ragged_input(module: Autoencoder, audio: jax.Array, lengths: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``audio [B, 1, T]`` zeroed past ``lengths`` and right-padded to whole frames, and each item's
    length in whole frames' samples (what padded-mode encoding of the item alone runs on)."""
    lengths = jnp.asarray(lengths, jnp.int32)
    return module.preprocess(mask_time(audio, lengths, axis=2)), frame_lengths(module, lengths) * module.config.hop_length


def _zero_past(x: jax.Array, lengths: jax.Array) -> jax.Array:
    """``x [B, C, T]`` with ``t >= lengths[b]`` set to zero."""
    return mask_time(x, lengths, axis=2)


def frame_lengths(module: Autoencoder, lengths: Any) -> Any:
    """Latent frames of each item of ``lengths`` samples (``ceil(length / hop)``; numpy or jax)."""
    return -(-lengths // module.config.hop_length)


# -- DAC ----------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("module", "n_quantizers"))
def encode(
    module: DAC, variables, audio: jax.Array, n_quantizers: Optional[int] = None, lengths: Optional[jax.Array] = None,
) -> EncodeOutput:
    """``audio [B, 1, T]`` -> :class:`EncodeOutput` (``codes [B, n, ceil(T / hop)]`` in padded mode).

    ``lengths [B]``: a ragged batch; item b's codes are its first ``ceil(lengths[b] / hop)`` frames,
    equal to encoding it alone, and zeros after them (``z`` and ``latents`` likewise).
    """
    trace_counts["encode"] += 1
    if lengths is None:
        return module.apply(variables, audio, n_quantizers, method=lambda m, a, n: m.encode(m.preprocess(a), n))
    audio, padded_lengths = _ragged_input(module, audio, lengths)
    out = module.apply(variables, audio, n_quantizers, padded_lengths,
                       method=lambda m, a, n, l: m.encode(a, n, lengths=l))
    frames = padded_lengths // module.config.hop_length
    return out.replace(
        z=_zero_past(out.z, frames), codes=_zero_past(out.codes, frames), latents=_zero_past(out.latents, frames)
    )


@functools.partial(jax.jit, static_argnames=("module", "n_quantizers", "residuals"))
def encode_checked(
    module: DAC, variables, audio: jax.Array, relative_error: jax.Array, n_quantizers: Optional[int] = None,
    lengths: Optional[jax.Array] = None, residuals: bool = False,
) -> tuple[jax.Array, ...]:
    """:func:`encode`'s codes and, per frame, whether some code of it might differ if the encoder's
    output were off by ``relative_error`` times the item's largest frame norm (:mod:`dac_jax.guard`):
    ``(codes [B, n, frames], doubtful [B, frames])``; with ``residuals`` instead ``(codes, stage
    inputs [B, n, frames, D], that norm [B])``, what :func:`dac_jax.guard.calibrate` measures."""
    trace_counts["encode_checked"] += 1
    padded_lengths = None
    if lengths is None:
        audio = module.preprocess(audio)
    else:
        audio, padded_lengths = _ragged_input(module, audio, lengths)
    out = module.apply(variables, audio, relative_error, guard.SCORE_TOLERANCE, n_quantizers, padded_lengths, residuals,
                       method=DAC.encode_checked)
    if residuals:
        codes, _, inputs, scale = out
        return codes, inputs, scale
    codes, slack = out
    doubtful = jnp.any(slack <= 0, axis=1)
    if lengths is not None:
        frames = padded_lengths // module.config.hop_length
        codes, doubtful = _zero_past(codes, frames), doubtful & (jnp.arange(doubtful.shape[1]) < frames[:, None])
    return codes, doubtful


@functools.partial(jax.jit, static_argnames=("module",))
def decode(module: DAC, variables, codes: jax.Array, frame_lengths: Optional[jax.Array] = None) -> jax.Array:
    """``codes [B, n, frames]`` -> ``audio [B, 1, decoder_samples(frames)]``.

    ``frame_lengths [B]``: a ragged batch; item b's audio is its first
    ``decoder_samples(frame_lengths[b])`` samples, equal to decoding it alone, and zeros after them.
    """
    trace_counts["decode"] += 1
    if frame_lengths is None:
        return module.apply(variables, codes, method=DAC.decode_codes)
    frame_lengths = jnp.asarray(frame_lengths, jnp.int32)
    audio = module.apply(variables, codes, frame_lengths, method=DAC.decode_codes)
    return _zero_past(audio, module.decoder_samples(frame_lengths))


@functools.partial(jax.jit, static_argnames=("module", "n_quantizers"))
def forward(module: DAC, variables, audio: jax.Array, n_quantizers: Optional[int] = None) -> DACOutput:
    """Encode and decode (the original's ``forward``): :class:`DACOutput`, audio cropped to ``T``."""
    trace_counts["forward"] += 1
    return module.apply(variables, audio, n_quantizers)


# -- DAC-VAE ----------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("module",))
def vae_encode(
    module: DACVAE, variables, audio: jax.Array, key: Optional[jax.Array] = None, lengths: Optional[jax.Array] = None,
) -> VAELatents:
    """``audio [B, 1, T]`` -> ``(z, m, logs)``, each ``[B, D, ceil(T / hop)]``; ``z = m`` without a key.

    ``lengths [B]``: a ragged batch, as :func:`encode` (zeros past each item's frames).
    """
    trace_counts["vae_encode"] += 1
    if lengths is None:
        return module.apply(
            variables, audio, key, key is None, method=lambda m, a, k, det: m.encode(m.preprocess(a), k, det)
        )
    audio, padded_lengths = _ragged_input(module, audio, lengths)
    out = module.apply(variables, audio, key, key is None, padded_lengths,
                       method=lambda m, a, k, det, l: m.encode(a, k, det, lengths=l))
    frames = padded_lengths // module.config.hop_length
    return VAELatents(*(_zero_past(x, frames) for x in out))


@functools.partial(jax.jit, static_argnames=("module",))
def vae_decode(module: DACVAE, variables, z: jax.Array, frame_lengths: Optional[jax.Array] = None) -> jax.Array:
    """``z [B, D, frames]`` -> ``audio [B, 1, hop * frames]``; ``frame_lengths [B]``: a ragged batch,
    as :func:`decode`."""
    trace_counts["vae_decode"] += 1
    if frame_lengths is None:
        return module.apply(variables, z, method=DACVAE.decode)
    frame_lengths = jnp.asarray(frame_lengths, jnp.int32)
    audio = module.apply(variables, z, frame_lengths, method=DACVAE.decode)
    return _zero_past(audio, module.decoder_samples(frame_lengths))


@functools.partial(jax.jit, static_argnames=("module",))
def vae_forward(module: DACVAE, variables, audio: jax.Array, key: Optional[jax.Array] = None) -> VAEOutput:
    """Encode and decode: :class:`VAEOutput` (audio cropped to ``T``, and the KL term)."""
    trace_counts["vae_forward"] += 1
    return module.apply(variables, audio, key, key is None)


# -- bound models -------------------------------------------------------------------------------------


def default_winograd() -> Optional[int]:
    """The decoder's Winograd points a model starts with: F(4, 7) on a CPU (decompress 1.4-1.5x
    faster there, audio within float32 rounding; benchmarks/RESULTS.md), direct convolutions on
    other backends, where it has not been measured."""
    return 4 if jax.default_backend() == "cpu" else None


class Model:
    """An autoencoder module with its variables: what the codec layer runs, for DAC and DAC-VAE alike.

    ``module`` is the padded-mode module (the original's default; subclasses build it, with the
    model's :attr:`precision`, in ``_build_modules``), ``variables`` the trainable
    parametrisation (``{"params": ...}``) and ``inference_variables`` the same with every
    weight-normed convolution folded into its kernel (computed once per assignment of
    ``variables``; see :mod:`dac_jax.nn.fold`). Subclasses give ``encode_frames`` /
    ``decode_frames``: the bottleneck's output per latent frame, on host arrays.
    """

    #: ``"dac"`` or ``"vae"``: the one switch the codec layer keys its file formats on.
    kind: ClassVar[str]
    _fold_kwargs: ClassVar[dict] = {}

    module: Autoencoder

    def __init__(self, config: Any, variables: dict, source: Optional[str] = None):
        self.config = config
        self._precision = "float32"
        self._build_modules(self._precision)
        self._winograd: Optional[int] = default_winograd()
        self._fast_encoder = False
        self._guard_stats = guard.GuardStats()
        self.variables = variables
        self.source = source

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config}, source={self.source!r})"

    # -- variables --------------------------------------------------------------------------------

    @property
    def variables(self) -> dict:
        """The model's variables (``{"params": ...}``, the trainable parametrisation)."""
        return self._variables

    @variables.setter
    def variables(self, variables: dict) -> None:
        self._variables = jax.tree_util.tree_map(jnp.asarray, variables)
        self._inference_variables = self._fast_variables = self._guard_error = None

    @property
    def winograd(self) -> Optional[int]:
        """``2`` or ``4`` runs the decoder's wide kernel-7 convolutions as Winograd F(m, 7)
        (:mod:`dac_jax.nn.winograd`): fewer multiplications, audio within float32 rounding of the
        direct path's (default on a CPU: :func:`default_winograd`). ``None`` keeps direct
        convolutions, whose float32 sums follow the original's. The encoder stays direct, so codes
        never depend on it (:attr:`fast_encoder` runs the encoder fast too, with checked codes).
        Setting it refolds the inference variables."""
        return self._winograd

    def _build_modules(self, precision: str) -> None:
        raise NotImplementedError

    @property
    def precision(self) -> str:
        """``"float32"`` (default: full float32 convolutions on every backend, GPUs included),
        ``"tf32"`` (a GPU's TensorFloat-32 tensor cores) or ``"bfloat16"`` (bfloat16 kernels and
        convolution inputs, float32 sums; any backend): :mod:`dac_jax.nn.precision`. The two
        opt-ins trade exact codes for speed on a GPU (benchmarks/precision_codes.py measures how
        many codes change), and run direct convolutions: Winograd's transforms amplify the
        operands' rounding (bfloat16 F(4, 7): 13 % of the output's scale), so an opt-in turns
        :attr:`winograd` off and float32 turns the backend's default back on. Setting it recompiles
        and refolds the inference variables."""
        return self._precision

    @precision.setter
    def precision(self, precision: str) -> None:
        problem = precision_rules.check(precision, jax.default_backend())
        if problem is not None:
            raise UsageError(problem)
        if precision != "float32" and self._fast_encoder:
            raise UsageError("the checked fast encoder keeps float32's codes: turn fast_encoder off "
                             f"before choosing precision {precision}")
        if precision != "float32":
            self._winograd = None
        elif self._precision != "float32":
            self._winograd = default_winograd()
        self._precision = precision
        self._build_modules(precision)
        self._inference_variables = self._fast_variables = self._guard_error = None

    def _in_precision(self, variables: dict) -> dict:
        """Folded ``variables`` with their kernels in :attr:`precision`'s dtype."""
        if precision_rules.KERNEL_DTYPE[self._precision] == jnp.float32:
            return variables
        return {**variables, FOLDED: precision_rules.cast_kernels(variables[FOLDED], self._precision)}

    @property
    def guard_stats(self) -> "guard.GuardStats":
        """How often the fast path's doubtful codes were recomputed (:mod:`dac_jax.guard`)."""
        return self._guard_stats

    @winograd.setter
    def winograd(self, m: Optional[int]) -> None:
        if m is not None and m not in WINOGRAD_POINTS:
            raise UsageError(f"winograd must be one of {sorted(WINOGRAD_POINTS)} or None; got {m!r}")
        if m is not None and self._precision != "float32":
            raise UsageError(f"winograd runs in float32 only (its transforms amplify rounding); this model's "
                             f"precision is {self._precision}")
        self._winograd = m
        self._inference_variables = self._fast_variables = self._guard_error = None

    @property
    def fast_encoder(self) -> bool:
        """Opt-in, with :attr:`winograd` set: ``encode_frames`` (compress, tokenize) runs the encoder's
        Winograd convolutions too. DAC checks each code against the fast path's error bound and
        recomputes the doubtful frames directly (:mod:`dac_jax.guard`): the same codes as the
        direct path, faster only where few codes are doubtful (benchmarks/RESULTS.md). DAC-VAE's
        latents just take the fast path's float32 rounding."""
        return self._fast_encoder

    @fast_encoder.setter
    def fast_encoder(self, on: bool) -> None:
        if not isinstance(on, bool):
            raise UsageError(f"fast_encoder must be True or False; got {on!r}")
        if on and self._precision != "float32":
            raise UsageError(f"the checked fast encoder keeps float32's codes; this model's precision is {self._precision}")
        self._fast_encoder = on

    @property
    def checks_codes(self) -> bool:
        """Whether encoding runs the fast encoder (:attr:`winograd` and :attr:`fast_encoder` both on)."""
        return self._winograd is not None and self._fast_encoder

    @property
    def fast_encoder_variables(self) -> dict:
        """The inference variables with :attr:`winograd` in the encoder too (what the checked fast
        encoder runs); the inference variables themselves when :attr:`winograd` is off."""
        if self._winograd is None:
            return self.inference_variables
        if self._fast_variables is None:
            probe = jnp.zeros((1, 1, self.config.hop_length), jnp.float32)
            self._fast_variables = self._in_precision(fold_variables(
                self.module, self._variables, probe, winograd=self._winograd, **self._fold_kwargs))
        return self._fast_variables

    @property
    def inference_variables(self) -> dict:
        """``variables`` with every weight-normed conv folded into its kernel, once per load.

        What ``encode``, ``decode`` and chunked compression run on (same outputs up to float
        rounding; see :mod:`dac_jax.nn.fold`). Recomputed when ``variables`` is assigned.
        """
        if self._inference_variables is None:
            probe = jnp.zeros((1, 1, self.config.hop_length), jnp.float32)
            self._inference_variables = self._in_precision(fold_variables(
                self.module, self._variables, probe, winograd=self._winograd, winograd_parts=("decoder",),
                **self._fold_kwargs
            ))
        return self._inference_variables

    # -- geometry -----------------------------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @functools.cached_property
    def encoder_context(self) -> int:
        """Context frames per side that make a window's frames equal whole-signal encoding: the
        encoder's receptive field, in frames."""
        return math.ceil(self.module.encoder_receptive_field() / self.hop_length)

    @functools.cached_property
    def decoder_context(self) -> int:
        """Context frames per side for decoding: the decoder's receptive field, in frames."""
        return self.module.decoder_receptive_field()

    def decoder_samples(self, frames: int) -> int:
        """Samples the padded decoder gives for ``frames`` frames."""
        return self.module.decoder_samples(frames)

    # -- the bottleneck, per frame ----------------------------------------------------------------------

    def encode_frames(self, audio: np.ndarray, lengths: Optional[np.ndarray] = None) -> jax.Array:
        """``audio [B, 1, T]`` -> ``[B, F, ceil(T / hop)]``, one column per latent frame (padded mode;
        a device array: the caller decides when to wait for it). ``lengths [B]``: a ragged batch
        (see :func:`encode`)."""
        raise NotImplementedError

    def decode_frames(self, frames: np.ndarray, frame_lengths: Optional[np.ndarray] = None) -> jax.Array:
        """``[B, F', frames]`` -> ``audio [B, decoder_samples(frames)]`` (padded mode);
        ``frame_lengths [B]``: a ragged batch (see :func:`decode`)."""
        raise NotImplementedError

    def frame_lengths(self, lengths: Any) -> Any:
        """Latent frames of items of ``lengths`` samples: ``ceil(length / hop)``."""
        return frame_lengths(self.module, lengths)


class DACModel(Model):
    """DAC: frames are integer codes ``[B, n, frames]``; also runs the original's unpadded mode."""

    kind = "dac"

    def _build_modules(self, precision: str) -> None:
        self.module = DAC(self.config, precision=precision)
        self.unpadded_module = DAC(self.config, padded=False, precision=precision)

    @property
    def n_codebooks(self) -> int:
        return self.config.n_codebooks

    @functools.cached_property
    def delay(self) -> int:
        return self.module.delay()

    def output_length(self, length: int) -> int:
        return self.module.output_length(length)

    def encode_frames(
        self, audio: np.ndarray, n_quantizers: Optional[int] = None, padded: bool = True,
        lengths: Optional[np.ndarray] = None,
    ) -> Any:
        """Codes ``[B, n, frames]``: the direct convolutions' (a device array), or with
        :attr:`fast_encoder` the fast path's with its doubtful frames recomputed directly when the
        result is read (``np.asarray``; :mod:`dac_jax.guard`): the same codes either way."""
        module = self.module if padded else self.unpadded_module
        if not self.checks_codes:
            return encode(module, self.inference_variables, audio, n_quantizers, lengths).codes
        codes, doubtful = encode_checked(module, self.fast_encoder_variables, audio, self.guard_error,
                                         n_quantizers, lengths)
        samples = audio.shape[-1]
        valid = np.full(len(audio), samples) if lengths is None else np.minimum(np.asarray(lengths), samples)
        frames = frame_lengths(module, valid) if padded else np.full(len(audio), module.encoder_frames(samples))
        context = self.encoder_context if padded else 0
        crop = 2 * context + 1 + guard.CROP_EXTRA
        crop_samples = crop * self.hop_length if padded else _unpadded_input(module, crop)
        direct = lambda x, l: encode(module, self.inference_variables, x, n_quantizers, l if padded else None).codes  # noqa: E731
        self._guard_stats.items += len(audio)
        self._guard_stats.frames += int(np.sum(frames))
        return guard.CheckedCodes(codes, doubtful, lambda c, d: guard.recompute(  # the host copy only if needed
            c, d, np.asarray(audio, np.float32) if d.any() else None, valid, frames, self.hop_length, context,
            crop_samples, direct, self._guard_stats))

    @property
    def guard_error(self) -> float:
        """The fast encoder's error bound, relative to an item's largest frame norm, calibrated
        for these variables on first use (:func:`dac_jax.guard.calibrate`)."""
        if self._guard_error is None:
            signal = guard.calibration_signal(self.sample_rate)

            def run(path: str):
                variables = self.fast_encoder_variables if path == "fast" else self.inference_variables
                codes, inputs, scale = encode_checked(self.module, variables, signal, 0.0, residuals=True)
                return np.asarray(codes)[0], np.asarray(inputs)[0], float(np.asarray(scale)[0])

            self._guard_error = guard.calibrate(run)
        return self._guard_error

    def decode_frames(self, codes: np.ndarray, padded: bool = True, frame_lengths: Optional[np.ndarray] = None) -> jax.Array:
        module = self.module if padded else self.unpadded_module
        return decode(module, self.inference_variables, codes, frame_lengths)[:, 0]


@functools.lru_cache(maxsize=None)
def _unpadded_input(module: DAC, frames: int) -> int:
    """The fewest samples the unpadded encoder turns into ``frames`` frames."""
    n = frames * module.config.hop_length
    while module.encoder_frames(n) < frames:
        n += module.config.hop_length
    while n > 1 and module.encoder_frames(n - 1) >= frames:
        n -= 1
    return n


class VAEModel(Model):
    """DAC-VAE: frames are the Gaussian's mean and log-scale stacked, ``[B, 2 * D, frames]``, on
    the way in, and latents ``z [B, D, frames]`` on the way out."""

    kind = "vae"
    _fold_kwargs = {"deterministic": True}

    def _build_modules(self, precision: str) -> None:
        self.module = DACVAE(self.config, precision=precision)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def encode_frames(self, audio: np.ndarray, lengths: Optional[np.ndarray] = None) -> jax.Array:
        # no codes to keep: the fast encoder's latents differ from the direct one's by float rounding
        variables = self.fast_encoder_variables if self.checks_codes else self.inference_variables
        latents = vae_encode(self.module, variables, audio, None, lengths)
        return jnp.concatenate([latents.m, latents.logs], axis=1)

    def decode_frames(self, z: np.ndarray, frame_lengths: Optional[np.ndarray] = None) -> jax.Array:
        return vae_decode(self.module, self.inference_variables, z, frame_lengths)[:, 0]


__all__ = [
    "DACModel", "Model", "VAEModel", "decode", "encode", "forward", "frame_lengths", "trace_counts",
    "initialize_distributed", "use_compilation_cache", "vae_decode", "vae_encode",
    "vae_forward",
]
