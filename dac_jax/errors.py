"""Errors that reach users: each names the file or value at fault and what is wrong with it."""


class DacJaxError(Exception):
    """Base class of every error dac-jax raises on purpose."""


class AudioError(DacJaxError, ValueError):
    """Audio that cannot be processed: wrong shape, dtype, rate, or an unreadable file."""


class FileFormatError(DacJaxError, ValueError):
    """A file that is not in the expected format (a .dac file, our checkpoint, ...)."""


class WeightsError(DacJaxError, ValueError):
    """Weights that do not fit the model: missing, extra or mis-shaped keys, or unreadable files."""


class UsageError(DacJaxError, ValueError):
    """An argument out of range: n_quantizers, a window, a batch size, codes that do not fit."""


class MissingDependencyError(DacJaxError, ImportError):
    """An optional dependency (torch, the reference ``dac`` package) is needed and not installed."""


class DataError(DacJaxError, ValueError):
    """A training data source that cannot be used: a missing or empty folder, a group with no
    readable audio, an unknown or unprepared tensorflow-datasets dataset."""


class EquivalenceError(DacJaxError, AssertionError):
    """The imported model does not reproduce the original within the stated tolerances."""


class LostProcessError(DacJaxError, RuntimeError):
    """A multi-process job lost one of its processes (killed, preempted, its host down): the
    collectives of the others fail. The checkpoints are kept; the job resumes when every process
    is started again with the same command."""
