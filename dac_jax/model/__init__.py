"""Models: frozen configs and presets, the DAC and DAC-VAE autoencoders, the discriminator.
Built from :mod:`dac_jax.nn` (and :mod:`dac_jax.audio` for spectral pieces); no files, no argbind."""
