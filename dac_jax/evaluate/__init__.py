"""Evaluation: a codec over a folder of audio, or two folders, with the original DAC's metrics.

``python -m dac_jax evaluate`` (:mod:`dac_jax.cli.evaluate`) on top of :func:`evaluate_model` and
:func:`evaluate_folders` (:mod:`dac_jax.evaluate.run`); the metrics are
:mod:`dac_jax.evaluate.metrics`, the CSV and summaries :mod:`dac_jax.evaluate.report`.
"""

from dac_jax.evaluate.run import EvaluationSummary, evaluate_folders, evaluate_model

__all__ = ["EvaluationSummary", "evaluate_folders", "evaluate_model"]
