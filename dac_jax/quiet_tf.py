"""TensorFlow, imported quietly: dac-jax uses it only for tf.data, and a training or tokenizing
command's stderr is for its own lines.

TensorFlow 2.21 logs through absl before absl is initialised, so ``TF_CPP_MIN_LOG_LEVEL`` no longer
hides its start-up notices ("oneDNN custom operations are on", the CPU-feature guard). The oneDNN
notice goes only with the oneDNN ops themselves (``TF_ENABLE_ONEDNN_OPTS=0``); tf.data's reading,
decoding and shuffling do not use them. Both are defaults: a user's own setting wins. They act only
if set before tensorflow's first import, which is why every dac-jax import of it goes through here.
"""

from __future__ import annotations

import os


def quiet_tensorflow_environment() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def import_tensorflow():
    quiet_tensorflow_environment()
    import tensorflow

    return tensorflow
