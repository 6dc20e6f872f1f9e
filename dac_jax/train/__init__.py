"""Training DAC in JAX: losses (``losses``), and later the input pipeline, augmentation, train
state, step and loop. Nothing here imports torch or tensorflow at import time; ``import dac_jax``
never imports this package."""
