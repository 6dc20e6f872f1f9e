"""The original PyTorch DAC, built seeded and saved in the released file format, for equivalence tests.

Every equivalence test goes through here: it builds ``dac.DAC`` with a preset's kwargs, seeds
torch, and writes ``{"state_dict", "metadata": {"kwargs"}}`` with the original's own
``BaseModel.save(package=False)``, exactly as the released ``.pth`` files are laid out.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np

from dac_jax.audio import synth
from dac_jax.model.config import PRESETS, DACConfig

warnings.filterwarnings("ignore", message=".*weight_norm.*is deprecated", category=FutureWarning)

CACHE = Path(__file__).resolve().parent / ".reference_cache"


def torch_model(config: DACConfig | str, seed: int = 0):
    """A randomly initialised original ``dac.DAC`` in eval mode.

    The original's ``init_weights`` zeroes every Conv1d bias. Then silence (the zero padding of a
    batch) encodes to an all-zero latent, every l2-normalised code is equally near, and the code
    picked is decided by rounding alone. Trained models have no such exact ties, so the biases are
    redrawn here from PyTorch's default conv init (uniform +-1/sqrt(fan_in)), seeded.
    """
    import dac
    import torch

    config = PRESETS[config] if isinstance(config, str) else config
    torch.manual_seed(seed)
    model = dac.DAC(**config.to_kwargs()).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv1d):
                fan_in = module.weight_v.shape[1] * module.weight_v.shape[2]
                module.bias.uniform_(-(fan_in**-0.5), fan_in**-0.5)
    return model


@functools.lru_cache(maxsize=None)
def _saved(config: DACConfig, seed: int, folder: str) -> Path:
    path = Path(folder) / f"dac_{abs(hash(config))}_{seed}.pth"
    torch_model(config, seed).save(str(path), package=False)
    return path


def reference_checkpoint(config: DACConfig | str, folder: Path, seed: int = 0) -> Path:
    """Path of a released-format ``.pth`` of a seeded original model (written once per session)."""
    config = PRESETS[config] if isinstance(config, str) else config
    return _saved(config, seed, str(folder))


def load_torch(path: Path):
    """The original's own loader for a ``.pth`` (``dac.DAC.load``)."""
    import dac

    return dac.DAC.load(str(path)).eval()


def to_parametrizations(model):
    """``model`` with every old-style weight norm (``weight_g`` / ``weight_v``) re-applied in PyTorch
    >= 2.1's style, whose state dict names ``parametrizations.weight.original0/1`` (in place)."""
    import torch

    for module in model.modules():
        if hasattr(module, "weight_g"):
            torch.nn.utils.remove_weight_norm(module)
            torch.nn.utils.parametrizations.weight_norm(module)
    return model


def test_signals(sample_rate: int, lengths=(0.5, 0.75, 1.0)) -> dict[str, np.ndarray]:
    """Noise, a sine sweep and a speech-like signal, each a batch of 3 with different lengths
    zero-padded to the longest: ``{name: float32 [3, 1, T]}``."""
    makers = {
        "noise": lambda d, s: synth.noise(d, sample_rate, seed=s),
        "sweep": lambda d, s: synth.sine_sweep(d, sample_rate, f0=40.0 * (s + 1)),
        "speech": lambda d, s: synth.speech_like(d, sample_rate, seed=s),
    }
    out = {}
    for name, make in makers.items():
        clips = [make(d, i) for i, d in enumerate(lengths)]
        batch = np.zeros((len(clips), 1, max(len(c) for c in clips)), np.float32)
        for i, c in enumerate(clips):
            batch[i, 0, : len(c)] = c
        out[name] = batch
    return out


def run_torch(model, audio: np.ndarray, n_quantizers=None) -> dict[str, np.ndarray]:
    """The original's forward pass on ``audio [B, 1, T]``: numpy outputs."""
    import torch

    with torch.no_grad():
        out = model(torch.from_numpy(audio), n_quantizers=n_quantizers)
    return {k: v.numpy() for k, v in out.items()}



def use_compiled_lfilter() -> bool:
    """Give torchaudio back a compiled IIR loop when its C++ extension cannot load here.

    The torchaudio wheel installed for the reference is a CUDA build whose extension fails on CPU
    torch (scripts/install_reference.sh removes it), so ``torchaudio.functional.lfilter`` falls
    back to a Python loop over samples: ~1.3 s per second of audio, per call. audiotools'
    loudness, which the original's compress/decompress call, goes through it. On a normal CPU
    install the extension's ``_lfilter_core_loop`` runs instead; this is that loop (float32, the
    same order of operations), compiled with numba. tests/audio/test_loudness.py checks it against
    the Python loop. Returns whether it was installed.
    """
    from torchaudio.functional import filtering

    if filtering._lfilter_core_loop is not filtering._lfilter_core_generic_loop:
        return False
    import numba
    import torch

    @numba.njit
    def loop(x, a_flipped, out):
        # torchaudio/csrc/lfilter.cpp, host_lfilter_core_loop, one row (item and channel) at a time
        n_rows, n_samples = x.shape
        n_channel, n_order = a_flipped.shape
        for row in range(n_rows):
            c = row % n_channel
            for i in range(n_samples):
                acc = x[row, i]
                for k in range(n_order):
                    acc -= out[row, i + k] * a_flipped[c, k]
                out[row, i + n_order - 1] = acc

    def core_loop(input_signal_windows, a_coeffs_flipped, padded_output_waveform):
        b, c, t = input_signal_windows.shape
        x = input_signal_windows.detach().contiguous().numpy().reshape(b * c, t)
        result = padded_output_waveform.detach().numpy().copy().reshape(b * c, -1)
        loop(x, a_coeffs_flipped.detach().contiguous().numpy(), result)
        padded_output_waveform.copy_(torch.from_numpy(result.reshape(padded_output_waveform.shape)))

    filtering._lfilter_core_loop = core_loop
    return True

