"""How tight could the checked fast encoder's bound be? Doubtful frames under four forms of it.

    .venv/bin/python -m benchmarks.guard_bounds [--model demo16khz | 44khz]

The guard (:mod:`dac_jax.guard`) bounds the error of each quantiser stage's normalised encoding by
``2 W rho scale / |z_e|``: ``W`` the in-projection's operator norm, ``rho`` the largest stage-input
error of the fast (Winograd F(4, 7)) encoder on the calibration signal relative to ``scale``, times
the safety factor. This script measures, for the loaded (or random) weights, the share of frames
that bound flags on speech-like audio, a chord and noise (5 s each) for:

- ``item`` / ``local``: ``scale`` is the item's largest frame norm (what the guard uses) or the
  largest within the encoder's receptive field of each frame;
- ``opnorm`` / ``proj``: the projected error bounded by ``W`` times the stage-input error (what the
  guard uses), or calibrated directly in the projected space, per stage.

``actual/bound`` is the largest error met on that audio over the bound used (1 would be a bound
that just holds; the guard is unsafe above it).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import soundfile as sf
from jax import lax

import dac_jax
from dac_jax import guard, runtime
from dac_jax.audio import synth
from dac_jax.demo import DEMO_INPUT
from dac_jax.nn.quantize import nearest_code_checked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="44khz", help="demo16khz (trained) or a preset (random weights, seed 0)")
    args = parser.parse_args()
    codec = dac_jax.load_model(args.model) if args.model == "demo16khz" else dac_jax.init_model(args.model, seed=0)
    codec.winograd, codec.fast_encoder = 4, True
    reach, module, n_q = codec.encoder_context, codec.module, codec.n_codebooks

    @jax.jit
    def project(variables, inputs):  # stage inputs [B, N, T, D] -> (z_e [B, N, T, d], W [N], codebooks [N, K, d])
        def f(m, x):
            quantizers = m.quantizer.quantizers[:n_q]
            return (jnp.stack([q.in_proj(x[:, i]) for i, q in enumerate(quantizers)], 1),
                    jnp.stack([q.in_proj.operator_norm() for q in quantizers]),
                    jnp.stack([q.codebook() for q in quantizers]))
        return module.apply(variables, inputs, method=f)

    def local_max(norms):
        return np.asarray(lax.reduce_window(jnp.asarray(norms), -jnp.inf, lax.max, (1, 2 * reach + 1), (1, 1),
                                            ((0, 0), (reach, reach))))

    def measure(audio):
        out = {}
        for path, variables in (("direct", codec.inference_variables), ("fast", codec.fast_encoder_variables)):
            codes, inputs, _ = runtime.encode_checked(module, variables, audio, 0.0, residuals=True)
            z_e, w, codebooks = project(codec.inference_variables, inputs)
            out[path] = (np.asarray(codes), np.asarray(inputs), np.asarray(z_e))
        (dc, di, dze), (fc, fi, fze) = out["direct"], out["fast"]
        agree = np.cumprod(dc == fc, axis=-2).astype(bool)  # stages after a differing code are left out
        same = np.concatenate([np.ones_like(agree[..., :1, :]), agree[..., :-1, :]], axis=-2)
        dz = np.where(same, np.linalg.norm(fi - di, axis=-1), 0.0)  # [B, N, T]
        dproj = np.where(same, np.linalg.norm(fze - dze, axis=-1), 0.0)
        norms = np.linalg.norm(di[:, 0], axis=-1)  # the encoder's output frames
        return dz, dproj, norms, fze, np.asarray(w), np.asarray(codebooks)

    def scale_of(norms, kind):
        return norms.max(-1, keepdims=True) if kind == "item" else local_max(norms)

    def relative(error, scale):  # frames of zero scale (silence) carry no error to scale
        return error / np.where(scale > 0, scale, np.inf)[:, None]

    dz, dproj, norms, _, w, _ = measure(guard.calibration_signal(codec.sample_rate))
    rhos = {}
    for s in ("item", "local"):
        scale = scale_of(norms, s)
        rhos[(s, "opnorm")] = guard.SAFETY * relative(w[:, None] * dz, scale).max(axis=(0, 2))  # per stage
        rhos[(s, "proj")] = guard.SAFETY * relative(dproj, scale).max(axis=(0, 2))
    print(f"{args.model}: in-projection operator norms {np.round(w, 2)}")
    print(f"calibrated projected error / W x stage-input error, per stage: "
          f"{np.round(rhos[('item', 'proj')] / rhos[('item', 'opnorm')], 3)}\n")
    print("| audio | scale | projected error | doubtful frames | actual / bound |")
    print("|---|---|---|---|---|")

    rate, n = codec.sample_rate, 5 * codec.sample_rate
    t = np.arange(n) / rate
    tests = {"speech-like": 0.5 * synth.speech_like(5.01, rate, seed=1)[:n]}
    speech, speech_rate = sf.read(DEMO_INPUT, dtype="float32")
    if speech_rate == rate:
        tests["the demo sentence"] = speech[:n]
    tests["chord"] = sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0)) / 4
    tests["noise"] = 0.2 * np.random.default_rng(0).standard_normal(n)
    for name, x in tests.items():
        dz, dproj, norms, fze, w, codebooks = measure(np.asarray(x, np.float32)[None, None])
        for s in ("item", "local"):
            scale = scale_of(norms, s)
            for kind in ("opnorm", "proj"):
                rho = rhos[(s, kind)]
                actual = relative(w[:, None] * dz if kind == "opnorm" else dproj, scale).max(axis=(0, 2)) / rho
                doubtful = np.zeros(norms.shape, bool)
                for i in range(n_q):
                    radius = 2 * rho[i] * scale / np.maximum(np.linalg.norm(fze[:, i], axis=-1), 1e-12)
                    _, slack = nearest_code_checked(jnp.asarray(fze[:, i]), jnp.asarray(codebooks[i]),
                                                    jnp.asarray(np.broadcast_to(radius, norms.shape)),
                                                    guard.SCORE_TOLERANCE)
                    doubtful |= np.asarray(slack) <= 0
                print(f"| {name} | {s} | {kind} | {100 * doubtful.mean():.2f} % | {actual.max():.3f} |", flush=True)


if __name__ == "__main__":
    main()
