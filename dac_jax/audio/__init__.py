"""Audio: file I/O (soundfile), resampling (julius' algorithm), loudness (BS.1770), STFT / mel,
test signals. Knows nothing of models."""
