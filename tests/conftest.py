import os
import tempfile

# Tests compare float32 numerics with the PyTorch reference on the CPU.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# not setdefault: a plugin that imports jax first (pytest-xdist's workers) leaves jax's "1", and
# TensorFlow's INFO lines then reach the stderr that the command-line tests check line by line
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

# XLA's CPU compiler takes seconds per model function, and the CLI and training tests start many
# processes that compile the same functions: one persistent compilation cache for the session and
# every process it starts (inherited through the environment).
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="dac_jax_xla_cache_")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
# the command lines turn the cache on themselves (in ~/.cache/dac_jax/xla): the session's one instead
os.environ.setdefault("DAC_JAX_COMPILATION_CACHE", os.environ["JAX_COMPILATION_CACHE_DIR"])

import pytest  # noqa: E402

from tests.requires import require_reference  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def compiled_lfilter():
    """audiotools' loudness (the original's compress/decompress) with torchaudio's IIR loop
    compiled, as on a normal CPU install: see tests.reference.use_compiled_lfilter."""
    try:
        import torchaudio  # noqa: F401
    except ImportError:
        return False
    from tests import reference

    return reference.use_compiled_lfilter()


@pytest.fixture(scope="session")
def reference_dir(tmp_path_factory):
    """A folder for the original models' checkpoints, shared by the whole session."""
    require_reference("dac")
    return tmp_path_factory.mktemp("reference")


@pytest.fixture(scope="session")
def reference_models(reference_dir):
    """``get(preset) -> (original torch model, our codec loaded from its .pth)``, each built once."""
    import dac_jax
    from tests import reference

    cache = {}

    def get(preset):
        if preset not in cache:
            path = reference.reference_checkpoint(preset, reference_dir)
            cache[preset] = (reference.load_torch(path), dac_jax.load_model(path))
        return cache[preset]

    return get
