"""One full training step of the recipe, dac-jax beside the original, interleaved in one run.

    .venv/bin/python -m benchmarks.train_step [--presets 16khz 44khz] [--batch 4] [--seconds 0.38]
        [--steps 5] [--output results/train_step] [--device cpu|gpu] [--winograd auto|off] [--same_process]

A step is what the original's ``scripts/train.py`` ``train_loop`` does: the transforms (VolumeNorm
-16 LUFS, RescaleAudio, ShiftPhase), the generator forward, the discriminator update on the
detached reconstruction (AdamW, grad-norm clip 10, ExponentialLR), then the generator update with
every loss of ``conf/final/44khz.yml`` (mel 15, feature matching 2, adversarial 1, commitment 0.25,
codebook 1; STFT and waveform losses computed at weight 0; clip 1e3). The original runs on the
installed ``dac`` and audiotools in eager PyTorch (float32, ``torch.set_num_threads`` = all cores);
dac-jax runs its compiled ``make_train_step`` on one device (``--device``: the CPU, or the first GPU
for both, float32 without TF32). Both get the same architecture,
batch and excerpt length, random weights (each its own initialisation) and random-noise audio.

For each preset: the first step of each is timed apart (dac-jax: trace + compile; the original:
allocator warm-up), then ``--steps`` steps alternate between the two, so that load on the machine
touches both alike. By default each implementation runs in its own worker process, as a trainer
runs alone: the parent only tells them in turn to take a step; dac-jax's worker starts with the
allocator settings ``train.py`` runs with (:mod:`dac_jax.memory`; ``DAC_JAX_KEEP_MEMORY=0`` for
the system's), the original's with the system's, as its ``scripts/train.py`` runs. Without them
dac-jax's step page-faults its working memory afresh every step, which costs most when the other
implementation has just run (benchmarks/RESULTS.md). ``--same_process`` runs both in this process
instead (the method of the first measurements), with this process's allocator settings. Reported: median seconds per step, steps/s,
excerpts/s, the first step, each step's user and system CPU seconds and minor page faults (the
process's ``getrusage`` around the step), and peak resident memory (``ru_maxrss``): each worker's
own, or with ``--same_process`` the process's after dac-jax's first step and after the
original's. Results: ``<output>/train_step.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path

import numpy as np

from dac_jax import memory

LAMBDAS = {"mel/loss": 15.0, "adv/feat_loss": 2.0, "adv/gen_loss": 1.0, "vq/commitment_loss": 0.25,
           "vq/codebook_loss": 1.0, "stft/loss": 0.0, "waveform/loss": 0.0}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Original:
    """The original's train_loop on the installed packages (its objects built as scripts/train.py builds them)."""

    def __init__(self, preset: str, seed: int = 0, device: str = "cpu"):
        import torch
        from audiotools import AudioSignal
        from audiotools.core import util
        from audiotools.data import transforms as tfm
        import dac
        from dac.nn import loss as L

        from dac_jax.model.config import PRESETS

        torch.manual_seed(seed)
        self.device = "cuda" if device == "gpu" else "cpu"
        if self.device == "cpu":
            torch.set_num_threads(os.cpu_count())
        else:  # float32, as dac-jax's default
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        c = PRESETS[preset]
        self.torch, self.AudioSignal, self.prepare_batch = torch, AudioSignal, util.prepare_batch
        self.sample_rate = c.sample_rate
        self.generator = dac.DAC(encoder_dim=c.encoder_dim, encoder_rates=list(c.encoder_rates), latent_dim=c.latent_dim,
                                 decoder_dim=c.decoder_dim, decoder_rates=list(c.decoder_rates),
                                 n_codebooks=c.n_codebooks, codebook_size=c.codebook_size, codebook_dim=c.codebook_dim,
                                 quantizer_dropout=c.quantizer_dropout, sample_rate=c.sample_rate)
        self.discriminator = dac.model.Discriminator(sample_rate=c.sample_rate)
        self.generator.to(self.device)
        self.discriminator.to(self.device)
        adam = dict(lr=1e-4, betas=(0.8, 0.99), weight_decay=0.01)
        self.opt_g = torch.optim.AdamW(self.generator.parameters(), **adam)
        self.opt_d = torch.optim.AdamW(self.discriminator.parameters(), **adam)
        self.sched_g = torch.optim.lr_scheduler.ExponentialLR(self.opt_g, 0.999996)
        self.sched_d = torch.optim.lr_scheduler.ExponentialLR(self.opt_d, 0.999996)
        self.transform = tfm.Compose(tfm.VolumeNorm(("const", -16)), tfm.RescaleAudio(), tfm.ShiftPhase())
        self.waveform_loss = L.L1Loss()
        self.stft_loss = L.MultiScaleSTFTLoss(window_lengths=[2048, 512])
        self.mel_loss = L.MelSpectrogramLoss(n_mels=[5, 10, 20, 40, 80, 160, 320],
                                             window_lengths=[32, 64, 128, 256, 512, 1024, 2048],
                                             mel_fmin=[0.0] * 7, mel_fmax=[None] * 7, pow=1.0, clamp_eps=1e-5,
                                             mag_weight=0.0)
        self.gan_loss = L.GANLoss(self.discriminator)
        self.rng = np.random.RandomState(seed)

    def step(self, audio: np.ndarray) -> float:
        torch, AudioSignal = self.torch, self.AudioSignal
        self.generator.train()
        self.discriminator.train()
        signal = AudioSignal(torch.from_numpy(audio).to(self.device), self.sample_rate)
        with torch.no_grad():
            # per item, as the original's dataset instantiates and collates them (then on the device, as train.py)
            kwargs = self.transform.batch_instantiate([int(self.rng.randint(2**31)) for _ in range(len(audio))], signal)
            kwargs = self.prepare_batch(kwargs, self.device)
            signal = self.transform(signal.clone(), **kwargs)
        out = self.generator(signal.audio_data, signal.sample_rate)
        recons = AudioSignal(out["audio"], signal.sample_rate)
        if recons.signal_length < signal.signal_length:
            # the stride-5 decoders (16/24 kHz) give 320 * frames - 8 samples: the losses compare the
            # overlap, as dac-jax's step does (the original's train_loop, written for 44 kHz, would fail)
            signal = AudioSignal(signal.audio_data[..., : recons.signal_length], signal.sample_rate)
        output = {"adv/disc_loss": self.gan_loss.discriminator_loss(recons, signal)}
        self.opt_d.zero_grad()
        output["adv/disc_loss"].backward()
        torch.nn.utils.clip_grad_norm_(self.discriminator.parameters(), 10.0)
        self.opt_d.step()
        self.sched_d.step()
        output["stft/loss"] = self.stft_loss(recons, signal)
        output["mel/loss"] = self.mel_loss(recons, signal)
        output["waveform/loss"] = self.waveform_loss(recons, signal)
        output["adv/gen_loss"], output["adv/feat_loss"] = self.gan_loss.generator_loss(recons, signal)
        output["vq/commitment_loss"] = out["vq/commitment_loss"]
        output["vq/codebook_loss"] = out["vq/codebook_loss"]
        loss = sum(v * output[k] for k, v in LAMBDAS.items())
        self.opt_g.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.generator.parameters(), 1e3)
        self.opt_g.step()
        self.sched_g.step()
        return float(loss.detach())


class Ours:
    """dac-jax's compiled step (the recipe's StepConfig defaults) on one device."""

    def __init__(self, preset: str, seed: int = 0, winograd: str = "auto"):
        import dataclasses

        import jax

        from dac_jax.cli.train import winograd_tile
        from dac_jax.model.config import PRESETS
        from dac_jax.model.discriminator import DiscriminatorConfig
        from dac_jax.train import state as St
        from dac_jax.train import step as S
        from dac_jax.train.config import StepConfig

        c = PRESETS[preset]
        self.jax = jax
        self.config = StepConfig(model=c, discriminator=dataclasses.replace(DiscriminatorConfig(), sample_rate=c.sample_rate),
                                 winograd=winograd_tile(winograd))  # what train.py's --winograd gives
        self.mesh = S.make_mesh(1)
        self.state = S.replicate(St.create_train_state(self.config, seed=seed), self.mesh)
        self.fn = S.make_train_step(self.mesh, self.config)
        self.shard = S.shard_batch

    def step(self, audio: np.ndarray) -> float:
        self.state, metrics = self.fn(self.state, self.shard(audio, self.mesh))
        return float(self.jax.block_until_ready(metrics["loss"]))


def measured(step, audio) -> dict:
    """Wall seconds of ``step(audio)``, and the process's user / system CPU seconds and minor page
    faults during it."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    step(audio)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {"s": wall, "user_s": after.ru_utime - before.ru_utime, "sys_s": after.ru_stime - before.ru_stime,
            "minor_faults": after.ru_minflt - before.ru_minflt}


def median_seconds(fn, reps: int) -> float:
    """The median wall time of ``reps`` calls of ``fn`` after one untimed call (which compiles)."""
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def alternate(steppers: dict, batches: list[np.ndarray], steps: int) -> dict[str, list[dict]]:
    """Each ``steppers[name](audio)`` once on ``batches[0]`` (it compiles; its time printed), then
    ``steps`` rounds of one step each on ``batches[1:]``, the order rotating every round so that
    none always follows the same one: every step :func:`measured` and printed, then the medians.
    Returns the measurements by name."""
    for name, step in steppers.items():
        start = time.perf_counter()
        step(batches[0])
        print(f"{name}: first step (compiles) {time.perf_counter() - start:.1f} s", flush=True)
    results: dict[str, list[dict]] = {name: [] for name in steppers}
    names = list(steppers)
    for k in range(1, steps + 1):
        for name in names[k % len(names):] + names[: k % len(names)]:
            r = measured(steppers[name], batches[k])
            results[name].append(r)
            print(f"{name} step {k}: {r['s']:.2f} s, user {r['user_s']:.2f} s, sys {r['sys_s']:.2f} s", flush=True)
    for name, rs in results.items():
        med = {key: float(np.median([r[key] for r in rs])) for key in ("s", "user_s", "sys_s")}
        print(f"{name}: median {med['s']:.2f} s a step, user {med['user_s']:.2f} s, sys {med['sys_s']:.2f} s")
    return results


def make_batches(preset: str, batch: int, seconds: float, count: int) -> list[np.ndarray]:
    """``count`` batches of noise ``[batch, 1, whole frames]`` at the preset's rate (the same in every process)."""
    from dac_jax.model.config import PRESETS

    rate, hop = PRESETS[preset].sample_rate, PRESETS[preset].hop_length
    samples = int(round(seconds * rate / hop)) * hop
    rng = np.random.default_rng(0)
    return [(rng.standard_normal((batch, 1, samples)) * 0.1).astype(np.float32) for _ in range(count)]


def _worker(connection, name: str, preset: str, batch: int, seconds: float, steps: int, device: str,
            winograd: str = "auto") -> None:
    """One implementation in its own process: build it, then take step k whenever told ``k``."""
    if device == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"
    batches = make_batches(preset, batch, seconds, steps + 1)
    start = time.perf_counter()
    impl = Ours(preset, winograd=winograd) if name == "dac-jax" else Original(preset, device=device)
    connection.send(time.perf_counter() - start)
    while (k := connection.recv()) is not None:
        connection.send(measured(impl.step, batches[k]))
    connection.send(peak_mb())


def run_processes(preset: str, batch: int, seconds: float, steps: int, device: str = "cpu", winograd: str = "auto") -> dict:
    """:func:`run` with each implementation in its own worker process (``spawn``: nothing inherited)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    batches = make_batches(preset, batch, seconds, 1)
    result = {"preset": preset, "batch": batch, "samples": batches[0].shape[-1],
              "seconds": batches[0].shape[-1] / _rate(preset), "isolation": "processes", "winograd": winograd}
    workers = {}
    for name in ("dac-jax", "original"):  # built and warmed one after the other, as in run()
        parent, child = context.Pipe()
        process = context.Process(target=_worker, args=(child, name, preset, batch, seconds, steps, device, winograd))
        saved = dict(os.environ)
        if name == "dac-jax" and memory.applies():  # what train.py runs with (dac_jax.memory)
            os.environ.update(memory.tunables_environment())
        try:
            process.start()  # a spawned worker starts from this environment
        finally:
            os.environ.clear()
            os.environ.update(saved)
        build = parent.recv()
        parent.send(0)
        first = parent.recv()
        workers[name] = (process, parent)
        result[name] = {"build_s": build, "first_step_s": first["s"], "steps_s": [], "steps": [],
                        "keeps_freed_memory": name == "dac-jax" and memory.applies()}
    for k in range(1, steps + 1):
        for name, (_, connection) in workers.items():  # interleaved
            connection.send(k)
            step = connection.recv()
            result[name]["steps"].append(step)
            result[name]["steps_s"].append(step["s"])
    for name, (process, connection) in workers.items():
        connection.send(None)
        result[name]["peak_rss_mb"] = connection.recv()
        process.join(timeout=60)
    return _summarise(result, batch)


def _rate(preset: str) -> int:
    from dac_jax.model.config import PRESETS

    return PRESETS[preset].sample_rate


def _summarise(result: dict, batch: int) -> dict:
    for name in ("dac-jax", "original"):
        r = result[name]
        median = statistics.median(r["steps_s"])
        r.update(median_s=median, steps_per_s=1 / median, excerpts_per_s=batch / median)
        for key in ("user_s", "sys_s", "minor_faults"):
            r[f"median_{key}"] = statistics.median(step[key] for step in r["steps"])
    result["speedup"] = result["original"]["median_s"] / result["dac-jax"]["median_s"]
    return result


def run(preset: str, batch: int, seconds: float, steps: int, device: str = "cpu", winograd: str = "auto") -> dict:
    """Both implementations in this process (``--same_process``), steps interleaved."""
    batches = make_batches(preset, batch, seconds, steps + 1)
    result = {"preset": preset, "batch": batch, "samples": batches[0].shape[-1],
              "seconds": batches[0].shape[-1] / _rate(preset), "isolation": "same process", "winograd": winograd}
    impls = {}
    for name, make in (("dac-jax", Ours), ("original", Original)):
        t = time.perf_counter()
        impl = make(preset, device=device) if make is Original else make(preset, winograd=winograd)
        build = time.perf_counter() - t
        first = measured(impl.step, batches[0])["s"]
        impls[name] = impl
        result[name] = {"build_s": build, "first_step_s": first, "steps_s": [], "steps": [],
                        "peak_rss_mb_so_far": peak_mb()}
    for k in range(1, steps + 1):
        for name, impl in impls.items():  # interleaved
            step = measured(impl.step, batches[k])
            result[name]["steps"].append(step)
            result[name]["steps_s"].append(step["s"])
    result["peak_rss_mb_after_both"] = peak_mb()
    return _summarise(result, batch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["16khz", "44khz"])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=0.38)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--output", default="results/train_step")
    ap.add_argument("--device", default="cpu", choices=["cpu", "gpu"], help="both implementations on this device")
    ap.add_argument("--winograd", default="auto", choices=["auto", "off", "2", "4"],
                    help="dac-jax's step: train.py's --winograd (auto: F(4, 7) on a CPU)")
    ap.add_argument("--same_process", action="store_true",
                    help="run both implementations in this process (default: each in its own worker process)")
    args = ap.parse_args()
    if args.device == "cpu":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for preset in args.presets:
        measure = run if args.same_process else run_processes
        results.append(measure(preset, args.batch, args.seconds, args.steps, args.device, args.winograd))
        print(json.dumps(results[-1], indent=1), flush=True)
    import jax

    meta = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "jax": jax.__version__,
            "device": str(jax.devices()[0]), "results": results}
    (out / "train_step.json").write_text(json.dumps(meta, indent=2) + "\n")
    where = "in one process" if args.same_process else "each in its own process"
    lines = [f"One training step, batch {args.batch} x {args.seconds} s, {meta['machine']}, median of {args.steps} "
             f"interleaved steps, {where}", "",
             "| model | original s/step | dac-jax s/step | dac-jax vs original | original excerpts/s | dac-jax excerpts/s "
             "| first step: original / dac-jax (compile) | CPU s per step, user + sys: original / dac-jax "
             "| minor page faults per step: original / dac-jax |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        o, j = r["original"], r["dac-jax"]
        lines.append(f"| {r['preset']} | {o['median_s']:.2f} | {j['median_s']:.2f} | {r['speedup']:.2f}x | "
                     f"{o['excerpts_per_s']:.2f} | {j['excerpts_per_s']:.2f} | {o['first_step_s']:.1f} / {j['first_step_s']:.1f} s | "
                     f"{o['median_user_s']:.1f} + {o['median_sys_s']:.1f} / {j['median_user_s']:.1f} + {j['median_sys_s']:.1f} | "
                     f"{o['median_minor_faults']:.0f} / {j['median_minor_faults']:.0f} |")
    lines.append("")
    if args.same_process:
        lines.append("Peak resident memory of the process: " + ", ".join(
            f"{r['preset']} {r['dac-jax']['peak_rss_mb_so_far']:.0f} MB with dac-jax alone, "
            f"{r['original']['peak_rss_mb_so_far']:.0f} MB once the original ran too" for r in results))
    else:
        lines.append("Peak resident memory of each process: " + ", ".join(
            f"{r['preset']} original {r['original']['peak_rss_mb']:.0f} MB, dac-jax {r['dac-jax']['peak_rss_mb']:.0f} MB"
            for r in results))
    (out / "train_step.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
