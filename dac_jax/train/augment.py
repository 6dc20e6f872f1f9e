"""DAC's training-time data transforms, on the device, inside the training step.

The original (``scripts/train.py`` with ``conf/base.yml``, which ``conf/final/44khz.yml`` extends)
transforms every batch on the GPU, after it reaches the device, with audiotools' ``Compose`` of
``VolumeNorm(db=("const", -16))``, ``RescaleAudio()`` and ``ShiftPhase(shift=("uniform", -pi, pi))``
(the "preprocess" and "augment" stages are ``Identity``). What matches what (audiotools 0.7.2):

=========================  ======================================================================
:func:`loudness_fir`       ``AudioSignal(x, sr).loudness()`` on CUDA, i.e. with the FIR meter
                           (``Meter(sr, use_fir=True)``, ``Meter.apply_filter_gpu``)
:func:`volume_norm`        ``VolumeNorm(db)`` = ``signal.normalize(db)``, loudness measured as above
:func:`rescale_audio`      ``RescaleAudio(val)`` = ``signal.ensure_max_of_audio(val)``
:func:`shift_phase_items`  ``ShiftPhase`` given the items' shifts: ``stft(); phase += shift;
                           istft()`` with audiotools' default STFT for the rate
:func:`augment`            the three in that order, shifts drawn per item from per-item keys
=========================  ======================================================================

**Loudness on the device follows audiotools' GPU path, not its CPU path.** On CUDA audiotools
replaces the two K-weighting biquads (high shelf +4 dB at 1.5 kHz, high pass at 38 Hz; pyloudnorm's
float64 designs) by their impulse responses truncated to 512 taps (``scipy.signal.lfilter`` of a
unit impulse in float64, rounded to float32), applied one after the other as causal convolutions
from rest, each output cut back to the input's length. DAC trains on GPUs, so this is the loudness
its training batches were normalised with. It is not the IIR meter that :mod:`dac_jax.audio.loudness`
reproduces (audiotools' CPU path, used by compress/decompress): they agree within 0.01 LU on noise,
speech and a 1 kHz tone but differ by 0.4 LU on a 60 Hz tone and 1.6 LU on a 20 Hz one at 44.1 kHz,
because the 38 Hz high pass still rings after 512 samples. The gating is the CPU path's, which
:mod:`dac_jax.audio.loudness` documents: signals shorter than
0.5 s are zero-padded to 0.5 s before filtering, ``int(0.4 sr)``-sample blocks every
``int(0.1 sr)`` samples (the end zero-padded so that every sample is covered), channel gains
``(1, 1, 1, 1.41, 1.41)``, strict ``> -70`` absolute and ``> Gamma_r`` relative gates, an empty gate
gives ``-inf``, and the result is floored at -70 LUFS.

Channels: audiotools' FIR path is only right for mono. ``apply_filter_gpu`` reshapes ``[nb, nt,
nch]`` to ``[nb * nch, 1, nt]`` and never back, so for ``nch > 1`` ``integrated_loudness`` raises
(DAC trains mono and never meets it). For 2 to 5 channels we filter each channel and gate with the
BS.1770 channel gains, which is what that path would compute were it fixed (and what the CPU path
does with its IIR filters); the tests check exactly that, with audiotools' own FIR per channel.

How: because both FIR stages are causal and each output is cut to the input's length, cascading
them equals one convolution with their 1023-tap composition (computed in float64 at trace time
from the float32 taps, then rounded to float32), cut to the input length. We convolve by FFT:
on this CPU, for ``[8, 1, 16758]`` at 44.1 kHz (22050 samples after the 0.5 s padding), a direct
``lax.conv`` with 1023 taps takes ~150 ms and the FFT ~5 ms (audiotools, too, convolves by FFT:
``julius.fftconv.fft_conv1d``).
Block energies are sums of per-stride sums (no ``[blocks, 0.4 s]`` unfold in memory).

Everything is a pure function of channels-first float32 ``x: [B, C, T]`` with a static (Python
int) sample rate and no loop over the batch: each item is processed on its own, so the result for
an item does not depend on the batch it is in. Randomness (the phase shifts) comes from one key per
item, which the caller derives from the GLOBAL item index (:func:`item_keys`, see
``notes/train_design.md``), so one device and N devices give the same batch.

Not reproduced: audiotools' per-transform ``prob``/mask machinery (DAC uses probability 1 for
these three). As in the original, nothing rescales after the phase shift, so an item's peak may
exceed ``max_value`` slightly after :func:`augment`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import zlib

import jax
import jax.numpy as jnp
import numpy as np

from dac_jax.audio import spectral
from dac_jax.audio.loudness import biquad  # pyloudnorm's K-weighting designs, float64
from dac_jax.errors import AudioError, UsageError

__all__ = [
    "AugmentConfig",
    "DAC_AUGMENT",
    "AUGMENT_PURPOSE",
    "purpose_id",
    "item_keys",
    "phase_shifts",
    "fir_stages",
    "fir_kernel",
    "loudness_fir",
    "volume_norm",
    "rescale_audio",
    "shift_phase_items",
    "augment_with_shifts",
    "augment",
]

MIN_LOUDNESS = -70.0  # audiotools LoudnessMixin.MIN_LOUDNESS and the absolute gate
GAIN_FACTOR = math.log(10) / 20  # audiotools EffectMixin.GAIN_FACTOR
CHANNEL_GAINS = (1.0, 1.0, 1.0, 1.41, 1.41)  # BS.1770 G for L, R, C, Ls, Rs
BLOCK_SIZE = 0.400  # seconds
OVERLAP = 0.75
MIN_DURATION = 0.5  # AudioSignal.loudness zero-pads shorter signals to this
FIR_TAPS = 512  # audiotools Meter(zeros=512)


# ---------------------------------------------------------------------------------------------
# configuration and randomness


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """The on-device transforms of a recipe; the defaults (:data:`DAC_AUGMENT`) are DAC's
    ``VolumeNorm(db=("const", -16))``, ``RescaleAudio(val=1.0)``, ``ShiftPhase(shift=("uniform",
    -pi, pi))``. Frozen and hashable: pass it as a static argument or close over it."""

    volume_norm: bool = True
    target_db: float = -16.0
    rescale: bool = True
    max_value: float = 1.0
    shift_phase: bool = True
    phase_range: tuple[float, float] = (-math.pi, math.pi)  # uniform on [low, high)
    # the original's Compose(augment, prob=augment_prob): each item gets the transforms named in
    # augment_stage (of "volume_norm", "rescale", "shift_phase") with this probability
    augment_prob: float = 1.0
    augment_stage: tuple[str, ...] = ()

    def __post_init__(self):
        if not 0.0 <= self.augment_prob <= 1.0:
            raise UsageError(f"augment_prob must be in [0, 1], got {self.augment_prob}")
        stage = tuple(self.augment_stage)
        unknown = [t for t in stage if t not in TRANSFORM_FIELDS or not getattr(self, t)]
        if unknown:
            raise UsageError(f"augment_stage names transforms that are not on: {unknown} "
                             f"(of {', '.join(TRANSFORM_FIELDS)})")
        object.__setattr__(self, "augment_stage", stage)
        low, high = self.phase_range
        if not (math.isfinite(low) and math.isfinite(high) and low <= high):
            raise UsageError(f"phase_range must be finite with low <= high, got {self.phase_range}")
        if not self.max_value > 0:
            raise UsageError(f"max_value must be positive, got {self.max_value}")
        if not math.isfinite(self.target_db):
            raise UsageError(f"target_db must be finite, got {self.target_db}")
        object.__setattr__(self, "phase_range", (float(low), float(high)))


TRANSFORM_FIELDS = ("volume_norm", "rescale", "shift_phase")  # in the order they are applied
DAC_AUGMENT = AugmentConfig()


def purpose_id(name: str) -> int:
    """A stable 31-bit id for a random purpose (``crc32(name)``), the ``purpose_id`` of the
    design's ``fold_in(fold_in(fold_in(root, step), purpose_id), global_index)``."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


AUGMENT_PURPOSE = purpose_id("augment")


def item_keys(root_key, step, offset, batch_size: int, purpose: int = AUGMENT_PURPOSE):
    """Keys ``[batch_size]`` for items ``offset .. offset + batch_size - 1`` of the global batch of
    ``step``: ``fold_in(fold_in(fold_in(root_key, step), purpose), offset + j)``.

    ``step`` and ``offset`` may be traced (inside a sharded step a device passes
    ``offset = lax.axis_index("data") * local_batch``), ``batch_size`` is static. The keys of an
    item depend only on (root, step, purpose, global index), so ``item_keys(r, s, 0, 8)[4:]`` equals
    ``item_keys(r, s, 4, 4)``. ``root_key`` may be a typed key or a raw ``uint32[2]`` one; the
    result is of the same kind with a leading ``[batch_size]`` axis.
    """
    base = jax.random.fold_in(jax.random.fold_in(root_key, step), purpose)
    index = jnp.asarray(offset, jnp.uint32) + jnp.arange(int(batch_size), dtype=jnp.uint32)
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(index)


def phase_shifts(keys, phase_range: tuple[float, float] = DAC_AUGMENT.phase_range) -> jax.Array:
    """One shift per item, uniform on ``[low, high)`` (``ShiftPhase``'s ``("uniform", -pi, pi)``,
    drawn from the item's key instead of numpy's RandomState): ``[B]`` float32."""
    low, high = phase_range
    return jax.vmap(lambda k: jax.random.uniform(k, (), jnp.float32, low, high))(keys)


# ---------------------------------------------------------------------------------------------
# loudness (audiotools' FIR path)


def _check_audio(x, what: str) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim != 3:
        raise AudioError(f"{what} expects audio [batch, channels, time], got shape {tuple(x.shape)}")
    if x.shape[-1] == 0:
        raise AudioError(f"{what} of an empty signal (0 samples)")
    return x.astype(jnp.float32)


def _check_rate(sample_rate) -> int:
    if isinstance(sample_rate, (jax.Array, np.ndarray)) or int(sample_rate) != sample_rate or sample_rate <= 0:
        raise UsageError(f"sample_rate must be a positive Python int (static under jit), got {sample_rate!r}")
    rate = int(sample_rate)
    if int(BLOCK_SIZE * rate * (1.0 - OVERLAP)) <= 0:
        raise UsageError(f"sample rate {rate} Hz is too low for {BLOCK_SIZE} s gating blocks")
    return rate


def fir_stages(sample_rate: int) -> list[np.ndarray]:
    """The two K-weighting FIRs of audiotools' GPU meter, ``[high shelf, high pass]``, each
    ``float32 [512]`` in causal order: ``float32(lfilter(b, a, unit impulse))`` of pyloudnorm's
    float64 designs (:func:`dac_jax.audio.loudness` has them), as ``Meter.__init__`` builds its
    ``firs`` (which it stores time-reversed, for ``conv1d``), passband gains 1.0."""
    import scipy.signal

    impulse = np.zeros(FIR_TAPS)
    impulse[0] = 1.0
    designs = [biquad(4.0, 1 / np.sqrt(2), 1500.0, sample_rate, "high_shelf"),
               biquad(0.0, 0.5, 38.0, sample_rate, "high_pass")]
    return [scipy.signal.lfilter(b, a, impulse).astype(np.float32) for b, a in designs]


@functools.lru_cache(maxsize=16)
def fir_kernel(sample_rate: int) -> np.ndarray:
    """The K-weighting FIR of audiotools' GPU meter for ``sample_rate``, both stages composed:
    ``float32 [1023]``, read-only, causal (tap ``k`` multiplies ``x[n - k]``): the float64
    convolution of the two float32 :func:`fir_stages`, rounded to float32. (audiotools applies the
    stages one after the other, each cut to the input length; both are causal, so that is the
    composed filter cut to the input length.)"""
    first, second = fir_stages(int(sample_rate))
    kernel = np.convolve(first.astype(np.float64), second.astype(np.float64)).astype(np.float32)
    kernel.setflags(write=False)
    return kernel


def _fft_size(n: int) -> int:
    """The smallest ``2^a 3^b 5^c >= n`` (a fast size for every FFT library)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _k_weight(x: jax.Array, sample_rate: int) -> jax.Array:
    """Causal FIR K-weighting of ``x [..., T]``, output cut to ``T`` (FFT convolution)."""
    kernel = fir_kernel(sample_rate)
    T = x.shape[-1]
    n = _fft_size(T + kernel.size - 1)  # no circular wrap into [0, T)
    spec = jnp.fft.rfft(x, n, axis=-1) * jnp.fft.rfft(jnp.asarray(kernel), n)
    return jnp.fft.irfft(spec, n, axis=-1)[..., :T]


def _block_energies(y2: jax.Array, sample_rate: int) -> jax.Array:
    """``z [..., blocks]``: mean square per gating block of the squared filtered signal ``y2``,
    blocks as julius' ``unfold`` lays them (``1 + ceil((max(T, K) - K) / S)``, end zero-padded),
    divided by ``0.4 sr`` as audiotools does.

    With ``K = q S + r``, block ``j`` = strides ``j .. j+q-1`` + the first ``r`` samples of stride
    ``j + q``: sums per stride, then ``q`` shifted adds (no ``[blocks, K]`` array)."""
    T = y2.shape[-1]
    K = int(BLOCK_SIZE * sample_rate)
    S = int(BLOCK_SIZE * sample_rate * (1.0 - OVERLAP))
    q, r = divmod(K, S)
    n_blocks = math.ceil((max(T, K) - K) / S) + 1
    need = n_blocks + q  # strides needed (the last one only for its first r samples)
    lead = y2.shape[:-1]
    y2 = jnp.pad(y2, [(0, 0)] * len(lead) + [(0, need * S - T)])
    strides = y2.reshape(*lead, need, S)
    sums = strides.sum(axis=-1)
    energy = sum(sums[..., i : i + n_blocks] for i in range(q))
    if r:
        energy = energy + strides[..., :r].sum(axis=-1)[..., q : q + n_blocks]
    return energy * np.float32(1.0 / (BLOCK_SIZE * sample_rate))


def _gated_loudness(z: jax.Array) -> jax.Array:
    """BS.1770 gating of ``z [B, C, blocks]`` -> LUFS ``[B]``, floored at -70 (audiotools'
    ``Meter.integrated_loudness`` after its unfold, then ``LoudnessMixin``'s floor). Empty gates
    are handled without NaN: a mean over no blocks is 0, as audiotools' NaN -> 0."""
    nch = z.shape[1]
    g = jnp.asarray(CHANNEL_GAINS[:nch], jnp.float32)[None, :, None]
    tiny = np.float32(1e-30)  # log10 floor, far below the -70 gate: changes no decision
    l = -0.691 + 10.0 * jnp.log10(jnp.maximum((g * z).sum(axis=1, keepdims=True), tiny))  # [B, 1, n]

    def gated_mean(mask):
        count = mask.sum(axis=-1)
        total = jnp.where(mask, z, 0.0).sum(axis=-1)
        return jnp.where(count > 0, total / jnp.maximum(count, 1), 0.0)  # [B, C]

    absolute = l > MIN_LOUDNESS
    z_abs = gated_mean(absolute)
    gamma_r = -0.691 + 10.0 * jnp.log10(jnp.maximum((g[..., 0] * z_abs).sum(axis=-1), tiny)) - 10.0  # [B]
    z_gated = gated_mean(absolute & (l > gamma_r[:, None, None]))
    z_gated = jnp.minimum(z_gated, np.finfo(np.float32).max)  # audiotools: inf -> float32 max
    lufs = -0.691 + 10.0 * jnp.log10(jnp.maximum((g[..., 0] * z_gated).sum(axis=-1), tiny))
    return jnp.maximum(lufs, MIN_LOUDNESS)


def loudness_fir(x: jax.Array, sample_rate: int) -> jax.Array:
    """Integrated loudness ``float32 [B]`` (LUFS, floored at -70) of ``x [B, C, T]``, as audiotools
    measures it on CUDA: ``AudioSignal(x, sr).loudness()`` with the 512-tap FIR K-weighting
    (``Meter(sr, use_fir=True)``; see the module docstring). 1 to 5 channels (BS.1770 gains).
    Within 1e-5 LU of audiotools on the test signals (measured <= 7.6e-6 LU)."""
    x = _check_audio(x, "loudness_fir")
    rate = _check_rate(sample_rate)
    B, C, T = x.shape
    if not 1 <= C <= len(CHANNEL_GAINS):
        raise AudioError(f"loudness supports 1 to {len(CHANNEL_GAINS)} channels (BS.1770 gains), got {C}")
    duration = T / rate
    if duration < MIN_DURATION:  # AudioSignal.loudness: zero-pad before filtering
        x = jnp.pad(x, ((0, 0), (0, 0), (0, int((MIN_DURATION - duration) * rate))))
    y = _k_weight(x, rate)
    return _gated_loudness(_block_energies(y * y, rate))


# ---------------------------------------------------------------------------------------------
# the transforms


def volume_norm(x: jax.Array, sample_rate: int, target_db=DAC_AUGMENT.target_db) -> jax.Array:
    """``VolumeNorm(db)``: ``x * exp((target_db - loudness_fir(x)) * ln(10)/20)`` per item
    (``AudioSignal.normalize``, in float32). ``target_db``: a number or ``[B]``. Silence measures
    -70 LUFS and stays silence (gain ~501, finite); afterwards an item measures ``target_db`` unless
    the gain moves blocks across the -70 gate."""
    x = _check_audio(x, "volume_norm")
    loud = loudness_fir(x, sample_rate)
    gain = jnp.exp((jnp.asarray(target_db, jnp.float32) - loud) * np.float32(GAIN_FACTOR))
    return x * gain[:, None, None]


def rescale_audio(x: jax.Array, max_value: float = DAC_AUGMENT.max_value) -> jax.Array:
    """``RescaleAudio(val)`` = ``ensure_max_of_audio(val)``: each CHANNEL of each item whose peak
    (over time) exceeds ``max_value`` is scaled down to peak ``max_value``; the others are left."""
    x = _check_audio(x, "rescale_audio")
    peak = jnp.abs(x).max(axis=-1, keepdims=True)
    m = np.float32(max_value)
    return x * jnp.where(peak > m, m / jnp.where(peak > m, peak, 1.0), 1.0)


def shift_phase_items(x: jax.Array, shifts: jax.Array, sample_rate: int) -> jax.Array:
    """``ShiftPhase`` given the shifts: rotate every STFT bin of item ``b`` (all its channels) by
    ``shifts[b]`` radians and resynthesise, with audiotools' default STFT for the rate (periodic
    hann window :func:`~dac_jax.audio.spectral.default_window_length`, 2048 at 44.1 kHz, hop a
    quarter, centred, reflect padding). ``shifts: [B]``. Needs ``T > window / 2``.

    The rotated STFT keeps every bin's magnitude; the resynthesised signal (overlap-add of frames
    that no longer agree with each other) keeps the STFT magnitudes of tonal content closely
    (<= 0.6% of the peak bin on tones and the synthetic voice), its energy within ~1%, and re-mixes
    noise-like frames, exactly as audiotools does. A shift of pi inverts the waveform, 0 keeps it."""
    x = _check_audio(x, "shift_phase_items")
    rate = _check_rate(sample_rate)
    shifts = jnp.asarray(shifts, jnp.float32)
    if shifts.shape != (x.shape[0],):
        raise UsageError(f"shifts must be [batch] = [{x.shape[0]}], got shape {tuple(shifts.shape)}")
    return spectral.shift_phase(x, shifts[:, None], spectral.default_window_length(rate))


def augment_with_shifts(x: jax.Array, sample_rate: int, shifts: jax.Array | None, config: AugmentConfig = DAC_AUGMENT,
                        keep: jax.Array | None = None) -> jax.Array:
    """The recipe on ``x [B, C, T]`` given the phase shifts ``[B]`` (unused, may be None, when
    ``config.shift_phase`` is off): volume norm, then rescale, then phase shift, each as on/off in
    ``config``. Equals audiotools' ``Compose(VolumeNorm, RescaleAudio, ShiftPhase)`` on CUDA given
    the same shifts. ``keep [B]`` (bool; needed when ``config.augment_prob < 1`` and it has an
    augment stage): which items get the transforms of ``config.augment_stage``."""
    x = _check_audio(x, "augment")
    partial = config.augment_prob < 1 and config.augment_stage
    if partial and keep is None:
        raise UsageError("config.augment_prob < 1 needs keep: which items get the augment stage")
    steps = {
        "volume_norm": lambda x: volume_norm(x, sample_rate, config.target_db),
        "rescale": lambda x: rescale_audio(x, config.max_value),
        "shift_phase": lambda x: shift_phase_items(x, shifts, sample_rate),
    }
    if config.shift_phase and shifts is None:
        raise UsageError("config.shift_phase needs shifts")
    for name in TRANSFORM_FIELDS:
        if not getattr(config, name):
            continue
        y = steps[name](x)
        x = jnp.where(jnp.asarray(keep)[:, None, None], y, x) if partial and name in config.augment_stage else y
    return x


def augment(x: jax.Array, sample_rate: int, keys, config: AugmentConfig = DAC_AUGMENT) -> jax.Array:
    """DAC's training transforms on a batch ``x [B, C, T]``, one key per item (``keys``: ``[B]``
    keys, from :func:`item_keys` with the items' global indices): each item's phase shift is
    ``uniform(key, low, high)`` (:func:`phase_shifts`) and, with ``config.augment_prob < 1``,
    whether it gets the augment stage is drawn from it too (:func:`augment_draws`), so an item's
    result depends only on its audio and its key, never on the batch around it. Jittable with ``sample_rate`` and ``config``
    static; compiles once per batch shape."""
    x = _check_audio(x, "augment")
    shifts = phase_shifts(keys, config.phase_range) if config.shift_phase else None
    if shifts is not None and shifts.shape != (x.shape[0],):
        raise UsageError(f"augment needs one key per item: {x.shape[0]} items, keys give {shifts.shape}")
    keep = augment_draws(keys, config.augment_prob) if config.augment_prob < 1 and config.augment_stage else None
    return augment_with_shifts(x, sample_rate, shifts, config, keep)


def augment_draws(keys, prob: float) -> jax.Array:
    """Whether each item gets the augment stage: ``uniform < prob`` from the item's key (folded
    with its own purpose, so the phase shifts drawn from the same keys do not change): ``[B]`` bool."""
    purpose = purpose_id("augment_prob")
    return jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, purpose)) < prob)(keys)
