"""Fixtures shared by the input pipeline's tests (tests/train/test_sources, test_excerpts, test_pipeline)."""

from __future__ import annotations

import pytest

from tests.train.audio_corpus import write_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, str]:
    """Folders of real files (:func:`tests.train.audio_corpus.write_corpus`): name -> folder path."""
    return write_corpus(tmp_path_factory.mktemp("corpus"))
