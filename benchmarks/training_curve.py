"""The validation curve of a training run, from its TensorBoard logs: a Markdown table and a plot.

    .venv/bin/python -m benchmarks.training_curve runs/tiny [--output benchmarks/training_tiny.png]

Reads ``RUN/logs`` (the scalars ``train.py`` writes), prints a table of the validation metrics at
every validation step with wall-clock minutes since the first one, the change of the validation
mel distance from step 0, and training throughput (steps/s from CLU's progress reports); and
draws validation mel distance against steps and minutes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def read_scalars(logdir: Path) -> dict[str, list[tuple[int, float, float]]]:
    """``{tag: [(step, wall_time, value), ...]}`` from every event file under ``logdir``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logdir), size_guidance={"tensors": 0, "scalars": 0})
    events.Reload()
    out: dict[str, list[tuple[int, float, float]]] = {}
    for tag in events.Tags()["tensors"]:
        rows = []
        for e in events.Tensors(tag):
            value = np.frombuffer(e.tensor_proto.tensor_content, np.float32) if e.tensor_proto.tensor_content else \
                np.asarray(e.tensor_proto.float_val, np.float32)
            if value.size == 1:
                rows.append((e.step, e.wall_time, float(value[0])))
        if rows:
            out[tag] = sorted(rows)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the run's save_path (holds logs/)")
    parser.add_argument("--output", type=Path, help="PNG to write (default: RUN/val_curve.png)")
    args = parser.parse_args()

    scalars = read_scalars(args.run / "logs")
    mel = scalars.get("val/mel/loss")
    if not mel:
        raise SystemExit(f"{args.run / 'logs'}: no val/mel/loss scalars (was validation enabled?)")
    t0 = mel[0][1]
    cols = [c for c in ("val/mel/loss", "val/stft/loss", "val/waveform/loss", "val/sisdr") if c in scalars]
    by_step = {c: {s: v for s, _, v in scalars[c]} for c in cols}
    print("| step | minutes | " + " | ".join(c.removeprefix("val/") for c in cols) + " |")
    print("|---" * (len(cols) + 2) + "|")
    for step, wall, _ in mel:
        print(f"| {step} | {(wall - t0) / 60:.1f} | " + " | ".join(f"{by_step[c].get(step, float('nan')):.4f}" for c in cols) + " |")
    first, last = mel[0][2], mel[-1][2]
    print(f"\nvalidation mel distance: {first:.4f} at step {mel[0][0]} -> {last:.4f} at step {mel[-1][0]} "
          f"({100 * (first - last) / first:.1f} % lower) in {(mel[-1][1] - t0) / 60:.1f} min")
    rate = scalars.get("steps_per_sec")
    if rate:
        values = np.array([v for _, _, v in rate[1:]] or [rate[0][2]])
        print(f"training: median {np.median(values):.2f} steps/s over {len(values)} reports")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    steps = [s for s, _, _ in mel]
    values = [v for _, _, v in mel]
    a.plot(steps, values, marker="o", ms=3)
    a.set_xlabel("step")
    a.set_ylabel("validation mel distance")
    b.plot([(w - t0) / 60 for _, w, _ in mel], values, marker="o", ms=3)
    b.set_xlabel("minutes")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.suptitle(f"{args.run.name}: validation mel distance")
    fig.tight_layout()
    output = args.output or args.run / "val_curve.png"
    fig.savefig(output, dpi=110)
    print(f"plot: {output}")


if __name__ == "__main__":
    main()
