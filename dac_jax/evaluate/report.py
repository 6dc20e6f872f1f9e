"""The evaluator's output: a per-file CSV and a summary (Markdown and JSON), each written atomically.

The summary gives, per metric, the number of files with a value, the mean, the sample standard
deviation (``ddof=1``) and the 95 % confidence interval of the mean (Student's t, ``n - 1``
degrees of freedom), for all files and for every subfolder (the relative folder of each file; the
top folder is ``.``). A metric that could not be computed for a file (NaN) is left out of its
statistics, not counted as 0.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from dac_jax.fileio import atomic_path, check_writable

#: the files the evaluator writes in its ``--output`` folder
CSV_NAME, MARKDOWN_NAME, JSON_NAME = "metrics.csv", "summary.md", "summary.json"
OUTPUTS = (CSV_NAME, MARKDOWN_NAME, JSON_NAME)

# two-sided 95 % quantiles of Student's t for 1..4 degrees of freedom; above, the Cornish-Fisher
# expansion below is within 1e-3 of the exact value (scipy is not a dependency)
_T975 = {1: 12.7062047, 2: 4.30265273, 3: 3.18244631, 4: 2.77644511}
_Z975 = 1.959963984540054


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom."""
    if df in _T975:
        return _T975[df]
    z, v = _Z975, float(df)
    return (z + (z**3 + z) / (4 * v) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
            + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * v**4))


def statistics(values: Iterable[float]) -> dict:
    """``{"n", "mean", "std", "ci95": [lo, hi]}`` of the finite ``values`` (None where undefined:
    no value, or a single one for ``std`` and ``ci95``)."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], np.float64)
    n = int(x.size)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "ci95": None}
    mean = float(x.mean())
    if n == 1:
        return {"n": 1, "mean": mean, "std": None, "ci95": None}
    std = float(x.std(ddof=1))
    half = t975(n - 1) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci95": [mean - half, mean + half]}


def summarize(rows: list[dict], metric_columns: list[str]) -> dict:
    """Statistics of every metric column (and of ``kbps``, ``file_kbps``, ``time_s`` where
    present) over the rows without an error: ``{"all": {...}, "subfolders": {folder: {...}}}``."""
    good = [r for r in rows if not r.get("error")]
    extra = [c for c in ("kbps", "file_kbps", "time_s") if any(r.get(c) is not None for r in good)]
    names = list(metric_columns) + extra

    def of(subset):
        return {c: statistics(r.get(c) for r in subset) for c in names}

    folders = sorted({r["subfolder"] for r in good})
    return {"all": of(good), "subfolders": {f: of([r for r in good if r["subfolder"] == f]) for f in folders}}


def check_outputs(output: str | Path, overwrite: bool) -> None:
    """Refuse (one line) before any work: an output file that exists without ``overwrite``, or a
    folder that cannot be written."""
    for name in OUTPUTS:
        check_writable(Path(output) / name, overwrite=overwrite)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def write_csv(path: Path, rows: list[dict], fieldnames: list[str], overwrite: bool) -> Path:
    """One row per file (``fieldnames`` in order), written atomically."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fieldnames, extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: _cell(row.get(k)) for k in fieldnames})
    return Path(path)


def _table(stats: Mapping[str, dict], better: Mapping[str, bool]) -> list[str]:
    lines = ["| metric | n | mean | std | 95 % interval |", "|---|---:|---:|---:|---|"]
    for name, s in stats.items():
        group = name.rsplit("-", 1)[0]
        arrow = {True: " (higher is better)", False: " (lower is better)"}.get(better.get(group), "")
        ci = f"{s['ci95'][0]:.4g} .. {s['ci95'][1]:.4g}" if s["ci95"] else ""
        lines.append(f"| {name}{arrow} | {s['n']} | {_cell(s['mean'])} | {_cell(s['std'])} | {ci} |")
    return lines


def markdown(summary: dict) -> str:
    """The summary as Markdown: what was evaluated, then one table for all files and one per subfolder."""
    lines = [f"# Evaluation: {summary['title']}", ""]
    for key, value in summary["about"].items():
        lines.append(f"- {key}: {value}")
    lines.append(f"- files evaluated: {summary['evaluated']}, failed: {len(summary['failed'])}, "
                 f"unpaired: {len(summary['unpaired'])}")
    if summary["time_per_file_s"] is not None:
        lines.append(f"- time per file: {summary['time_per_file_s']:.3g} s")
    for notice in summary["notices"]:
        lines.append(f"- note: {notice}")
    better = summary["higher_is_better"]
    lines += ["", "## All files", "", *_table(summary["metrics"]["all"], better)]
    subfolders = summary["metrics"]["subfolders"]
    if len(subfolders) > 1 or (subfolders and next(iter(subfolders)) != "."):
        for folder, stats in subfolders.items():
            lines += ["", f"## {folder}", "", *_table(stats, better)]
    for title, entries in (("Failed", summary["failed"]), ("Unpaired", summary["unpaired"])):
        if entries:
            lines += ["", f"## {title}", ""] + [f"- {e['path']}: {e['error']}" for e in entries]
    return "\n".join(lines) + "\n"


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_summary(output: Path, summary: dict, overwrite: bool) -> tuple[Path, Path]:
    """``summary.md`` and ``summary.json`` in ``output``, each written atomically."""
    md, js = Path(output) / MARKDOWN_NAME, Path(output) / JSON_NAME
    with atomic_path(md, overwrite=overwrite) as tmp:
        tmp.write_text(markdown(summary))
    with atomic_path(js, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(_json_safe(summary), indent=2) + "\n")
    return md, js


__all__ = ["CSV_NAME", "JSON_NAME", "MARKDOWN_NAME", "OUTPUTS", "check_outputs", "markdown", "statistics",
           "summarize", "t975", "write_csv", "write_summary"]
