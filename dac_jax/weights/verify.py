"""Check an imported model against the original PyTorch DAC on the same test signal."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Optional

import numpy as np

from dac_jax.audio import synth
from dac_jax.errors import EquivalenceError, MissingDependencyError
from dac_jax.runtime import DACModel, forward

# The tolerances of the equivalence proof (float32 on CPU).
MIN_CODE_MATCH = 0.999
MAX_AUDIO_DIFF = 1e-4


@dataclasses.dataclass
class VerifyReport:
    code_match: float  # fraction of all codes equal
    codebook0_match: float  # fraction of codebook-0 codes equal (must be 1)
    max_audio_diff: float  # largest |audio_jax - audio_torch|
    z_rel_diff: float  # max |dz| / max |z|
    frames: int
    n_codebooks: int

    @property
    def passed(self) -> bool:
        return (
            self.codebook0_match == 1.0
            and self.code_match >= MIN_CODE_MATCH
            and self.max_audio_diff <= MAX_AUDIO_DIFF
        )

    def __str__(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"{verdict}: codes equal {100 * self.code_match:.3f}% (codebook 0: {100 * self.codebook0_match:.3f}%) "
            f"over {self.n_codebooks} x {self.frames} frames; max |audio diff| {self.max_audio_diff:.2e}; "
            f"z relative diff {self.z_rel_diff:.2e} "
            f"(tolerances: codes >= {100 * MIN_CODE_MATCH:.1f}%, codebook 0 exact, audio <= {MAX_AUDIO_DIFF:.0e})"
        )


def verification_signal(sample_rate: int, duration: float = 1.0, seed: int = 0) -> np.ndarray:
    """A batch of two: a speech-like signal and noise, ``[2, 1, T]`` float32."""
    return np.stack(
        [synth.speech_like(duration, sample_rate, seed), synth.noise(duration, sample_rate, seed)]
    )[:, None, :]


def verify_against_reference(
    codec: DACModel, checkpoint: str | Path, duration: float = 1.0, seed: int = 0, raise_on_failure: bool = True,
    reference_model: Optional[object] = None,
) -> VerifyReport:
    """Run the original (``dac`` package) on ``checkpoint`` and ``codec`` on the same signal and compare.

    Raises :class:`EquivalenceError` past the tolerances unless ``raise_on_failure`` is False.
    """
    try:
        import dac
        import torch
    except ImportError:
        raise MissingDependencyError(
            "verification runs the original PyTorch DAC: install torch==2.13.0 and descript-audio-codec "
            "(see scripts/install_reference.sh)"
        ) from None
    if reference_model is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference_model = dac.DAC.load(str(checkpoint))
    reference_model.eval()
    audio = verification_signal(codec.sample_rate, duration, seed)
    with torch.no_grad():
        ref = reference_model(torch.from_numpy(audio))
    out = forward(codec.module, codec.inference_variables, audio)
    ref_codes, codes = ref["codes"].numpy(), np.asarray(out.codes)
    ref_z = ref["z"].numpy()
    report = VerifyReport(
        code_match=float(np.mean(ref_codes == codes)),
        codebook0_match=float(np.mean(ref_codes[:, 0] == codes[:, 0])),
        max_audio_diff=float(np.max(np.abs(ref["audio"].numpy() - np.asarray(out.audio)))),
        z_rel_diff=float(np.max(np.abs(ref_z - np.asarray(out.z))) / np.max(np.abs(ref_z))),
        frames=codes.shape[-1],
        n_codebooks=codes.shape[1],
    )
    if raise_on_failure and not report.passed:
        raise EquivalenceError(f"{checkpoint}: the import does not reproduce the original. {report}")
    return report
