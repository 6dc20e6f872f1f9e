"""Window-size sweep: time per chunk of compress and decompress, dac-jax beside the original
PyTorch DAC, in one run; and whole-file throughput of both.

    .venv/bin/python -m benchmarks.window_sweep [--model_type 44khz] [--windows 0.37 0.38 ... 20]
        [--reps 3] [--file_seconds 60] [--device cpu|gpu] [--output results] [--winograd 2|4 | --direct]
        [--precision float32|tf32|bfloat16] [--no_compiled]

Three implementations: the original in eager PyTorch, the original as a user makes it faster
(weight norm removed, ``torch.compile``; ``--no_compiled`` skips it) and dac-jax. Per window ``w``,
each runs the original's chunk computation on one chunk: compress
encodes ``n_samples = ceil(int(w * sr) / hop) * hop`` samples with the unpadded model (the
original's ``compress`` loop body: ``preprocess`` + ``encode``), decompress decodes that chunk's
codes (``from_codes`` + ``decode``). A warm-up call comes first (compilation, reported
separately), then ``reps`` timed rounds that alternate the four measurements so that machine drift
hits both implementations alike (``block_until_ready`` in JAX, ``torch.no_grad`` and, on a GPU,
``torch.cuda.synchronize``). The hop is ``get_output_length(n_samples)``: the samples of new audio
each chunk advances, so the real-time factor is hop duration / chunk time.

Weights are random (seeded), as weights do not change the arithmetic. FLOPs come from XLA's cost
analysis of the compiled chunk function; the machine's peak is a measured float32 matrix product.
Results go to ``<output>/<device>_<date>/``: ``window_sweep.csv``, ``window_sweep.md``,
``window_sweep.png``. Each window also reports how many of dac-jax's codes equal the original's on
that chunk. dac-jax runs its default: on a CPU the decoder's Winograd F(4, 7) convolutions
(:mod:`dac_jax.nn.winograd`), whose GFLOP/s are then the FLOPs it executes, fewer than the direct
convolutions'; ``--winograd m`` picks other points, ``--direct`` direct convolutions everywhere
(results under ``<device>_<date>_winograd<m>/`` or ``_direct/``). The encoder is direct in all.
dac-jax computes in float32 (on a GPU too: no TF32) unless ``--precision tf32`` (a GPU's tensor
cores) or ``bfloat16`` asks for the opt-in (:mod:`dac_jax.nn.precision`; folder suffix
``_tf32`` / ``_bfloat16``): its codes-equal column is then the opt-in's code match.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import math
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np

DEFAULT_WINDOWS = (0.37, 0.38, 0.42, 0.46, 0.5, 1.0, 5.0, 10.0, 20.0)


# ---------------------------------------------------------------------------------------------
# the two implementations, on one chunk


class Original:
    """The installed original (``dac``), random weights saved in the released format."""

    def __init__(self, model_type: str, device: str, folder: Path, seed: int = 0):
        import torch
        from tests import reference

        self.torch = torch
        self.device = "cuda" if device == "gpu" else "cpu"
        if self.device == "cuda":
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        self.path = reference.reference_checkpoint(model_type, folder, seed)
        self.model = reference.load_torch(self.path).to(self.device)
        self.model.padding = False  # what compress sets for its chunk loop

    def sync(self):
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def compress_chunk(self, audio: np.ndarray):
        with self.torch.no_grad():
            x = self.torch.from_numpy(audio).to(self.device)
            x = self.model.preprocess(x, self.model.sample_rate)
            codes = self.model.encode(x)[1]
            self.sync()
        return codes

    def decompress_chunk(self, codes):
        with self.torch.no_grad():
            z = self.model.quantizer.from_codes(codes)[0]
            out = self.model.decode(z)
            self.sync()
        return out


class Compiled(Original):
    """The original at its best, as a user would run it faster: weight norm removed (folded into
    plain conv weights) and the chunk computation under ``torch.compile``. Its first call compiles."""

    def __init__(self, model_type: str, device: str, folder: Path, seed: int = 0):
        super().__init__(model_type, device, folder, seed)
        torch = self.torch
        from torch.nn.utils import parametrize

        for module in self.model.modules():
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight")
            elif hasattr(module, "weight_g"):
                torch.nn.utils.remove_weight_norm(module)
        model = self.model
        self._encode = torch.compile(lambda x: model.encode(model.preprocess(x, model.sample_rate))[1])
        self._decode = torch.compile(lambda codes: model.decode(model.quantizer.from_codes(codes)[0]))

    def compress_chunk(self, audio: np.ndarray):
        with self.torch.no_grad():
            codes = self._encode(self.torch.from_numpy(audio).to(self.device))
            self.sync()
        return codes

    def decompress_chunk(self, codes):
        with self.torch.no_grad():
            out = self._decode(codes)
            self.sync()
        return out


class Ours:
    """dac-jax on the same weights: the chunk functions the codec runs."""

    def __init__(self, path: Path):
        import jax

        import dac_jax
        from dac_jax import runtime

        self.jax, self.runtime = jax, runtime
        self.codec = dac_jax.load_model(path)

    def compress_chunk(self, audio: np.ndarray):
        out = self.runtime.encode(self.codec.unpadded_module, self.codec.inference_variables, audio, None).codes
        return self.jax.block_until_ready(out)

    def decompress_chunk(self, codes):
        out = self.runtime.decode(self.codec.unpadded_module, self.codec.inference_variables, codes)
        return self.jax.block_until_ready(out)

    def flops(self, audio: np.ndarray, codes) -> tuple[float, float]:
        """XLA's FLOP counts of the compiled chunk functions (compress, decompress)."""
        enc = self.runtime.encode.lower(self.codec.unpadded_module, self.codec.inference_variables, audio, None).compile()
        dec = self.runtime.decode.lower(self.codec.unpadded_module, self.codec.inference_variables, codes).compile()
        return _flops(enc), _flops(dec)


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", float("nan")))


def measured_peak_gflops(seconds: float = 2.0) -> float:
    """Sustained float32 GFLOP/s of a 2048^3 matrix product in JAX (the machine's practical peak)."""
    import jax
    import jax.numpy as jnp

    n = 2048
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        f(a).block_until_ready()
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - start) / 1e9


def _timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


# ---------------------------------------------------------------------------------------------
# the sweep


def sweep(original: Original, ours: Ours, windows, reps: int, seed: int = 0,
          compiled: Optional[Compiled] = None) -> list[dict]:
    codec = ours.codec
    sr, hop_length = codec.sample_rate, codec.hop_length
    rng = np.random.default_rng(seed)
    rows = []
    for w in windows:
        n_samples = math.ceil(int(w * sr) / hop_length) * hop_length
        hop = codec.output_length(n_samples)
        row = {"window_s": w, "n_samples": n_samples, "hop_samples": hop, "hop_ms": 1000 * hop / sr}
        if hop <= 0:
            rows.append({**row, "note": "hop <= 0: the original fails at this window"})
            print(f"window {w:g} s: hop {hop} <= 0, skipped")
            continue
        audio = (0.1 * rng.standard_normal((1, 1, n_samples))).astype(np.float32)
        # warm-up: compilation (JAX) and first-call allocation (torch), measured separately
        jax_compile_enc, codes = _timed(ours.compress_chunk, audio)
        jax_compile_dec, _ = _timed(ours.decompress_chunk, codes)
        torch_codes = original.torch.from_numpy(np.asarray(codes, np.int64)).to(original.device)
        torch_first_enc, their_codes = _timed(original.compress_chunk, audio)
        row["code_match"] = float(np.mean(np.asarray(codes) == their_codes.cpu().numpy()))
        torch_first_dec, _ = _timed(original.decompress_chunk, torch_codes)
        impls = {"jax": ours, "torch": original}
        if compiled is not None:  # its first calls compile (reported apart, as JAX's)
            row["compiled_compress_first_call_s"], compiled_codes = _timed(compiled.compress_chunk, audio)
            row["compiled_decompress_first_call_s"], _ = _timed(compiled.decompress_chunk, torch_codes)
            row["compiled_code_match"] = float(np.mean(compiled_codes.cpu().numpy() == their_codes.cpu().numpy()))
            impls["compiled"] = compiled
        times = {f"{impl}_{op}": [] for op in ("compress", "decompress") for impl in impls}
        for _ in range(reps):  # the implementations alternate, so that drift hits them alike
            for impl, runner in impls.items():
                times[f"{impl}_compress"].append(_timed(runner.compress_chunk, audio)[0])
            for impl, runner in impls.items():
                times[f"{impl}_decompress"].append(_timed(runner.decompress_chunk, codes if impl == "jax" else torch_codes)[0])
        flops_enc, flops_dec = ours.flops(audio, codes)
        for k, v in times.items():
            row[f"{k}_median_s"] = statistics.median(v)
            row[f"{k}_min_s"] = min(v)
            row[f"{k}_max_s"] = max(v)
        row["jax_compress_first_call_s"] = jax_compile_enc
        row["jax_decompress_first_call_s"] = jax_compile_dec
        row["torch_compress_first_call_s"] = torch_first_enc
        row["torch_decompress_first_call_s"] = torch_first_dec
        row["frames"] = int(codes.shape[-1])
        for op, flops in (("compress", flops_enc), ("decompress", flops_dec)):
            row[f"{op}_gflop"] = flops / 1e9
            row[f"jax_{op}_gflops_per_s"] = flops / 1e9 / row[f"jax_{op}_median_s"]
            row[f"{op}_speedup"] = row[f"torch_{op}_median_s"] / row[f"jax_{op}_median_s"]
            row[f"jax_{op}_rtf"] = (hop / sr) / row[f"jax_{op}_median_s"]
            row[f"torch_{op}_rtf"] = (hop / sr) / row[f"torch_{op}_median_s"]
            if compiled is not None:
                row[f"{op}_vs_compiled"] = row[f"compiled_{op}_median_s"] / row[f"jax_{op}_median_s"]
        rows.append(row)
        print(f"window {w:g} s (hop {hop} samples): compress jax {row['jax_compress_median_s'] * 1e3:.0f} ms, "
              f"torch {row['torch_compress_median_s'] * 1e3:.0f} ms ({row['compress_speedup']:.2f}x); "
              f"decompress jax {row['jax_decompress_median_s'] * 1e3:.0f} ms, "
              f"torch {row['torch_decompress_median_s'] * 1e3:.0f} ms ({row['decompress_speedup']:.2f}x)"
              + (f"; vs compiled: compress {row['compress_vs_compiled']:.2f}x, decompress {row['decompress_vs_compiled']:.2f}x"
                 if compiled is not None else ""), flush=True)
    return rows


def whole_file(original: Original, ours: Ours, seconds: float, win_duration: float, batch_size: int,
               seed: int = 0) -> list[dict]:
    """End-to-end compress + decompress of one ``seconds``-long mono file in memory, as each
    implementation's API does it (loudness, chunking, codes, decoding, loudness restore)."""
    from audiotools import AudioSignal

    from dac_jax.audio import synth

    sr = ours.codec.sample_rate
    audio = (synth.speech_like(seconds, sr, seed) + 0.02 * synth.noise(seconds, sr, seed)).astype(np.float32)
    out = []
    runs = [
        ("dac-jax independent (batched)", lambda: ours.codec.compress(audio, win_duration=win_duration,
                                                                       mode="independent", batch_size=batch_size),
         lambda f: ours.codec.decompress(f, win_duration=win_duration, batch_size=batch_size)),
        ("dac-jax faithful", lambda: ours.codec.compress(audio, win_duration=win_duration, mode="faithful",
                                                         batch_size=1),
         lambda f: ours.codec.decompress(f, batch_size=1)),
        ("original", lambda: original.model.compress(AudioSignal(audio[None, None].copy(), sr), win_duration=win_duration),
         lambda f: original.model.decompress(f)),
    ]
    for name, compress, decompress in runs:
        if name.startswith("dac-jax"):  # compile outside the timing (same shapes as the timed run)
            decompress(compress())
        t_c, dacfile = _timed(compress)
        original.sync()
        t_d, _ = _timed(decompress, dacfile)
        original.sync()
        frames = dacfile.codes.shape[-1]
        out.append({"implementation": name, "window_s": win_duration, "audio_s": seconds, "compress_s": t_c,
                    "decompress_s": t_d, "compress_x_realtime": seconds / t_c, "decompress_x_realtime": seconds / t_d,
                    "frames_stored": int(frames)})
        print(f"{name}: compress {t_c:.1f} s ({seconds / t_c:.2f}x real time), decompress {t_d:.1f} s "
              f"({seconds / t_d:.2f}x), {frames} frames", flush=True)
    return out


# ---------------------------------------------------------------------------------------------
# outputs


def environment(device: str) -> dict:
    import jax
    import torch

    import dac
    import dac_jax

    info = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "device": device,
        "jax_device": str(jax.devices()[0]),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "versions": f"dac-jax {dac_jax.__version__}, jax {jax.__version__}, descript-audio-codec {dac.__version__}, "
                    f"torch {torch.__version__}",
    }
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            info["cpu"] = names[0]
    except OSError:
        pass
    if device == "gpu":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_outputs(folder: Path, rows: list[dict], files: list[dict], env: dict, peak: float, model_type: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    keys = sorted({k for r in rows for k in r}, key=lambda k: (k != "window_s", k))
    with open(folder / "window_sweep.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    if files:
        with open(folder / "whole_file.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(files[0]))
            writer.writeheader()
            writer.writerows(files)
    (folder / "window_sweep.md").write_text(markdown(rows, files, env, peak, model_type))
    plot(rows, folder / "window_sweep.png", env, model_type)


def markdown(rows, files, env, peak, model_type) -> str:
    lines = [
        f"Model {model_type}, random weights (weights do not change the arithmetic). {env['versions']}.",
        f"Device: {env.get('gpu', env['cpu'])} ({env['cpu_count']} CPU threads, torch {env['torch_threads']}); "
        f"measured float32 matmul peak {peak:.0f} GFLOP/s. {env['date']}. {env.get('convolutions', '')}",
        "",
        "Time per chunk, median of the timed rounds (min-max), and speed-up of dac-jax over the original:",
        "",
        "| window (s) | hop (samples / ms) | compress dac-jax (ms) | compress original (ms) | speed-up | "
        "decompress dac-jax (ms) | decompress original (ms) | speed-up | dac-jax GFLOP/s (c / d) | RTF dac-jax (c / d) "
        "| codes equal |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    if any("compiled_compress_median_s" in r for r in rows):  # the three implementations first
        lines = lines[:3] + [_compiled_table(rows), ""] + lines[3:]
    for r in rows:
        if "note" in r:
            lines.append(f"| {r['window_s']:g} | {r['hop_samples']} | {r['note']} | | | | | | | | |")
            continue
        ms = lambda k: f"{r[k + '_median_s'] * 1e3:.0f} ({r[k + '_min_s'] * 1e3:.0f}-{r[k + '_max_s'] * 1e3:.0f})"  # noqa: E731
        lines.append(
            f"| {r['window_s']:g} | {r['hop_samples']} / {r['hop_ms']:.1f} | {ms('jax_compress')} | {ms('torch_compress')} | "
            f"**{r['compress_speedup']:.2f}x** | {ms('jax_decompress')} | {ms('torch_decompress')} | "
            f"**{r['decompress_speedup']:.2f}x** | {r['jax_compress_gflops_per_s']:.0f} / {r['jax_decompress_gflops_per_s']:.0f} | "
            f"{r['jax_compress_rtf']:.1f} / {r['jax_decompress_rtf']:.1f} | {100 * r['code_match']:.2f}% |"
        )
    lines += ["", "First calls (dac-jax: compilation; original: first-call allocation), seconds:", "",
              "| window (s) | dac-jax compress | dac-jax decompress | original compress | original decompress |",
              "|---|---|---|---|---|"]
    for r in rows:
        if "note" not in r:
            lines.append(f"| {r['window_s']:g} | {r['jax_compress_first_call_s']:.1f} | {r['jax_decompress_first_call_s']:.1f} | "
                         f"{r['torch_compress_first_call_s']:.1f} | {r['torch_decompress_first_call_s']:.1f} |")
    if files:
        lines += ["", f"Whole file ({files[0]['audio_s']:g} s, mono), end to end, seconds of audio per second:", "",
                  "| implementation | window (s) | compress | decompress | frames stored |", "|---|---|---|---|---|"]
        for f in files:
            lines.append(f"| {f['implementation']} | {f['window_s']:g} | {f['compress_x_realtime']:.2f} | "
                         f"{f['decompress_x_realtime']:.2f} | {f['frames_stored']} |")
    return "\n".join(lines) + "\n"


def _compiled_table(rows) -> str:
    """Three implementations side by side: the original eager, the original compiled, dac-jax."""
    lines = ["Time per chunk (median, ms), three implementations in one run: the original in eager PyTorch, "
             "the original with weight norm removed under `torch.compile`, dac-jax; and dac-jax's speed-up over each:",
             "",
             "| window (s) | compress: eager / compiled / dac-jax | vs eager | vs compiled | decompress: eager / compiled / "
             "dac-jax | vs eager | vs compiled | compiled codes equal eager | compile (s): compiled c / d |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "note" in r or "compiled_compress_median_s" not in r:
            continue
        ms = lambda op: " / ".join(f"{r[f'{i}_{op}_median_s'] * 1e3:.0f}" for i in ("torch", "compiled", "jax"))  # noqa: E731
        lines.append(
            f"| {r['window_s']:g} | {ms('compress')} | {r['compress_speedup']:.2f}x | **{r['compress_vs_compiled']:.2f}x** | "
            f"{ms('decompress')} | {r['decompress_speedup']:.2f}x | **{r['decompress_vs_compiled']:.2f}x** | "
            f"{100 * r['compiled_code_match']:.2f}% | {r['compiled_compress_first_call_s']:.1f} / "
            f"{r['compiled_decompress_first_call_s']:.1f} |")
    return "\n".join(lines)


def plot(rows, path: Path, env, model_type) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if "note" not in r]
    hops = [r["hop_samples"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for ax, op in zip(axes, ("compress", "decompress")):
        impls = [("jax", "dac-jax", "o-"), ("torch", "original (PyTorch eager)", "s--")]
        if "compiled_compress_median_s" in rows[0]:
            impls.append(("compiled", "original, torch.compile", "^:"))
        for impl, label, style in impls:
            med = [r[f"{impl}_{op}_median_s"] for r in rows]
            lo = [r[f"{impl}_{op}_median_s"] - r[f"{impl}_{op}_min_s"] for r in rows]
            hi = [r[f"{impl}_{op}_max_s"] - r[f"{impl}_{op}_median_s"] for r in rows]
            ax.errorbar(hops, med, yerr=[lo, hi], fmt=style, label=label, capsize=3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("chunk hop (samples)")
        ax.set_ylabel("time per chunk (s)")
        ax.set_title(f"{op}, {model_type}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        for r in rows:
            ax.annotate(f"{r['window_s']:g}s", (r["hop_samples"], r[f"torch_{op}_median_s"]), fontsize=7,
                        textcoords="offset points", xytext=(0, 6), ha="center")
    convolutions = f"; {env['convolutions']}" if "convolutions" in env else ""
    fig.suptitle(f"Window sweep on {env.get('gpu', env['cpu'])}{convolutions}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_type", default="44khz")
    parser.add_argument("--windows", type=float, nargs="+", default=list(DEFAULT_WINDOWS))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--file_seconds", type=float, default=60.0, help="0: skip the whole-file runs")
    parser.add_argument("--file_window", type=float, default=5.0, help="the original CLI's default window")
    parser.add_argument("--batch_size", type=int, default=4, help="windows per call in independent mode")
    parser.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--output", default="results")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--winograd", type=int, choices=[2, 4], default=None,
                        help="dac-jax's decoder with Winograd F(m, 7) (codec.winograd; default: the library's)")
    choice.add_argument("--direct", action="store_true", help="dac-jax with direct convolutions everywhere")
    parser.add_argument("--precision", default="float32", choices=["float32", "tf32", "bfloat16"],
                        help="dac-jax's convolutions (codec.precision; tf32 on a GPU only): the codes-equal "
                        "column then says how many codes the opt-in changes against the original's float32")
    parser.add_argument("--no_compiled", action="store_true",
                        help="skip the original under torch.compile (its first call per window compiles for 20-50 s)")
    args = parser.parse_args()

    if args.device == "cpu":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    jax.config.update("jax_default_matmul_precision", "highest")  # float32 numerics, as the original
    env = environment(args.device)
    peak = measured_peak_gflops()
    print(f"{env['versions']}\n{env.get('gpu', env['cpu'])}: matmul peak {peak:.0f} GFLOP/s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        original = Original(args.model_type, args.device, Path(tmp))
        ours = Ours(original.path)
        if args.direct or args.winograd:
            ours.codec.winograd = None if args.direct else args.winograd
        ours.codec.precision = args.precision
        m = ours.codec.winograd
        env["convolutions"] = (f"dac-jax {'default: ' if not (args.direct or args.winograd) else ''}the decoder's "
                               f"kernel-7 convolutions of >= 64 channels as Winograd F({m}, 7), the encoder direct"
                               if m else "dac-jax with direct convolutions") + f", {args.precision}"
        compiled = None if args.no_compiled else Compiled(args.model_type, args.device, Path(tmp))
        rows = sweep(original, ours, args.windows, args.reps, compiled=compiled)
        files = whole_file(original, ours, args.file_seconds, args.file_window, args.batch_size) if args.file_seconds else []
    name = f"{args.device}_{datetime.date.today().isoformat()}" + (
        "_direct" if args.direct else f"_winograd{args.winograd}" if args.winograd else "") + (
        "" if args.precision == "float32" else f"_{args.precision}")
    folder = Path(args.output) / name
    write_outputs(folder, rows, files, env, peak, args.model_type)
    print(f"\nwrote {folder}/window_sweep.csv, .md, .png")
    print((folder / "window_sweep.md").read_text())


if __name__ == "__main__":
    main()
