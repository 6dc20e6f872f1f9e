"""Where a model's voicing lives, and a model grown by more codebooks (the demo model's seventh sitting).

    .venv/bin/python -m benchmarks.demo_voicing codebooks WEIGHTS [--counts 1 2 4 8]
    .venv/bin/python -m benchmarks.demo_voicing grow WEIGHTS OUT --codebooks 12
    .venv/bin/python -m benchmarks.demo_voicing probe WEIGHTS [--corpus runs/corpus]

``codebooks``: the demo clip's sentence (its first 3.6 s at 16 kHz, as ``benchmarks.demo_pitch``)
encoded and decoded from the first n codebooks, and from the encoder's output unquantised; pYIN's
voiced frames and pitch against the input's for each. Then the all-codebook reconstruction's
largest normalised cross-correlation with the input over +-2000 samples of lag, per band: near 1 at
lag 0 where the waveform follows the input's, near 0 where only its spectrum does.

``grow``: WEIGHTS with more codebooks, saved as a dac-jax folder: the encoder, the decoder and the
first stages as they were; the new stages random (seed 7) with their output projections' gains
times 0.01 and biases 0, so that they start as near no-ops (the grown model's output equals the
original's to rounding) and fine-tune from there (``train.py --generator_weights OUT
--DAC.n_codebooks N``).

``probe``: does the encoder's output carry the input's pitch? pYIN's f0 (60-400 Hz, one frame per
latent frame: hop 320, 1024-sample frames) of every voiced frame of the corpus's speech, predicted
from five latent frames around it (the encoder's output before quantisation, and the quantised
``z``) by a ridge regression and a small MLP (scikit-learn, fixed seed), fitted on ``train/speech``
and scored on ``val/speech`` (sentences never spoken in ``train/``). The same probes on the
input's own 80-band log-mel spectrogram say what a representation that holds the pitch gives; on a
randomly initialised model of the same architecture, what the architecture alone gives; a constant
(the mean log f0), chance.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
from pathlib import Path

import numpy as np

import dac_jax
from benchmarks.demo_pitch import RATE, SENTENCE_SECONDS, _read, compare, pitch

ROOT = Path(__file__).resolve().parents[1]


def _sentence() -> np.ndarray:
    x = _read(ROOT / "dac_jax" / "data" / "demo_input.wav", RATE)[: int(SENTENCE_SECONDS * RATE)]
    return x[: len(x) // 320 * 320]


def codebooks(weights: str, counts: list[int]) -> None:
    import jax.numpy as jnp
    import scipy.signal as ss

    from dac_jax.model.dac import DAC, to_channels_first, to_channels_last

    codec = dac_jax.load_model(weights)
    assert codec.sample_rate == RATE, "a 16 kHz model"
    model, variables = DAC(codec.config), codec.variables
    x = _sentence()
    audio = jnp.asarray(x)[None, None]
    reference = pitch(x)

    def unquantised(module, a):
        return to_channels_first(module.encoder(to_channels_last(a)))

    print("| codebooks | voiced frames: input / reconstruction / both | within 5 % | median error (cents) |")
    print("|---|---|---|---|")
    for n in counts + [None]:
        z = model.apply(variables, audio, method=unquantised) if n is None else \
            model.apply(variables, audio, n, method=model.encode).z
        y = np.asarray(model.apply(variables, z, method=model.decode))[0, 0]
        r = compare(reference, pitch(y))
        print(f"| {n or 'none (unquantised)'} | {r['voiced_in']} / {r['voiced_out']} / {r['both']} | "
              f"{r['within_5pct']} | {r['median_cents']:.0f} |", flush=True)
        if n == max(counts):
            full = y
    n = min(len(x), len(full))
    for low, high in ((60, 400), (400, 1500), (1500, 4000)):
        b, a = ss.butter(4, [low, high], btype="band", fs=RATE)
        xf, yf = ss.filtfilt(b, a, x[:n]), ss.filtfilt(b, a, full[:n])
        lag = 2000
        c = np.correlate(yf, xf[lag:-lag], mode="valid")  # lags -2000..2000
        norm = np.sqrt((xf[lag:-lag] ** 2).sum() * (yf ** 2).sum() * (n - 2 * lag) / n)
        i = int(np.argmax(np.abs(c)))
        print(f"{low}-{high} Hz: largest |correlation| {abs(c[i]) / norm:.3f} at lag {i - lag}, at lag 0 {c[lag] / norm:.3f}")


def grow(weights: str, out: str, n: int) -> None:
    import jax

    old = dac_jax.load_model(weights)
    if n <= old.config.n_codebooks:
        raise SystemExit(f"--codebooks {n}: {weights} already has {old.config.n_codebooks}")
    config = dataclasses.replace(old.config, n_codebooks=n)
    params = jax.tree_util.tree_map(np.array, dac_jax.init_model(config, 7).variables["params"])
    kept = old.variables["params"]
    params["encoder"], params["decoder"] = kept["encoder"], kept["decoder"]
    for i in range(n):
        stage = params["quantizer"][f"quantizers_{i}"]
        if i < old.config.n_codebooks:
            params["quantizer"][f"quantizers_{i}"] = kept["quantizer"][f"quantizers_{i}"]
        else:
            stage["out_proj"]["weight_g"] *= 0.01
            stage["out_proj"]["bias"][:] = 0.0
    grown = dac_jax.api.Codec(config, {"params": params}, source=f"{weights} grown to {n} codebooks")
    print(grown.save(out, metadata={"grown_from": str(weights), "new_stages": f"{old.config.n_codebooks}-{n - 1}"}))


HOP = 320


@functools.lru_cache(maxsize=None)
def _clip_and_pitch(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A file at 16 kHz cut to whole latent frames, and pYIN's ``(f0, voiced)`` per frame (once per
    file, whichever features are probed)."""
    import librosa

    x = _read(path, RATE)
    x = x[: len(x) // HOP * HOP]
    f0, voiced, _ = librosa.pyin(x, fmin=60.0, fmax=400.0, sr=RATE, frame_length=1024, hop_length=HOP)
    return x, f0, voiced


def _voiced_frames(files: list[Path], features) -> tuple[np.ndarray, np.ndarray]:
    """``(X, log2 f0)`` over the voiced frames of ``files``: ``features(x) -> [frames, D]``, each
    frame with its two neighbours on either side."""
    xs, ys = [], []
    for f in files:
        x, f0, voiced = _clip_and_pitch(f)
        z = features(x)
        n = min(len(f0), len(z))
        padded = np.pad(z[:n], ((2, 2), (0, 0)), mode="edge")
        context = np.concatenate([padded[i : i + n] for i in range(5)], axis=1)
        keep = voiced[:n]
        xs.append(context[keep])
        ys.append(np.log2(f0[:n][keep]))
    return np.concatenate(xs), np.concatenate(ys)


def probe(weights: str, corpus: str) -> None:
    import jax
    import jax.numpy as jnp
    import librosa
    from sklearn.linear_model import Ridge
    from sklearn.neural_network import MLPRegressor
    from sklearn.preprocessing import StandardScaler

    from dac_jax.model.dac import DAC, to_channels_last

    train = sorted((Path(corpus) / "train" / "speech").glob("*.wav"))
    val = sorted((Path(corpus) / "val" / "speech").glob("*.wav"))
    codec = dac_jax.load_model(weights)
    assert codec.sample_rate == RATE, "a 16 kHz model"
    model = DAC(codec.config)

    @functools.partial(jax.jit, static_argnums=2)
    def latent(variables, audio, quantised):
        if quantised:
            return model.apply(variables, audio, method=model.encode).z[0].T
        return model.apply(variables, audio, method=lambda m, a: m.encoder(to_channels_last(a)))[0]

    def encoder(variables, quantised):
        return lambda x: np.asarray(latent(variables, jnp.asarray(x)[None, None], quantised))

    random = dac_jax.init_model(codec.config, 0).variables
    sources = {
        "the input's log-mel (80 bands)": lambda x: np.log(librosa.feature.melspectrogram(
            y=x, sr=RATE, n_fft=1024, hop_length=HOP, n_mels=80) + 1e-5).T,
        "the model's encoder output": encoder(codec.variables, False),
        "the model's quantised z": encoder(codec.variables, True),
        "random weights: encoder output": encoder(random, False),
        "random weights: quantised z": encoder(random, True),
    }
    print("| features | probe | median error (cents) | within 5 % |")
    print("|---|---|---|---|")
    for name, features in sources.items():
        x_train, y_train = _voiced_frames(train, features)
        x_val, y_val = _voiced_frames(val, features)
        if name.startswith("the input"):
            cents = 1200 * np.abs(y_train.mean() - y_val)
            print(f"| none: the mean log f0 | constant | {np.median(cents):.0f} | {np.mean(cents < 84.5):.2f} |")
        scale = StandardScaler().fit(x_train)
        for label, regressor in (("ridge", Ridge(alpha=10.0)), ("MLP 256-256", MLPRegressor(
                hidden_layer_sizes=(256, 256), max_iter=300, early_stopping=True, random_state=0))):
            regressor.fit(scale.transform(x_train), y_train)
            cents = 1200 * np.abs(regressor.predict(scale.transform(x_val)) - y_val)
            # 84.5 cents is a 5 % frequency ratio
            print(f"| {name} | {label} | {np.median(cents):.0f} | {np.mean(cents < 84.5):.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("codebooks")
    c.add_argument("weights")
    c.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4, 8])
    g = sub.add_parser("grow")
    g.add_argument("weights")
    g.add_argument("out")
    g.add_argument("--codebooks", type=int, required=True)
    p = sub.add_parser("probe")
    p.add_argument("weights")
    p.add_argument("--corpus", default="runs/corpus", help="benchmarks.make_corpus's output folder")
    args = parser.parse_args()
    if args.command == "codebooks":
        codebooks(args.weights, sorted(args.counts))
    elif args.command == "probe":
        probe(args.weights, args.corpus)
    else:
        grow(args.weights, args.out, args.codebooks)


if __name__ == "__main__":
    main()
