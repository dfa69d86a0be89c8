"""Shared fixtures: a small real corpus rendered once per test session (once per pytest-xdist
worker) by the project's own builder.

``small_corpus`` renders, from the default SoundFont (TimGM6mb.sf2, shipped by pretty_midi), the first
two GM programs of each of the 11 families at the pitches in ``SMALL_CORPUS_PITCHES``, velocity 100:
132 real 4-second WAVs in NSynth layout, in about a second.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Daemons started by the tests sample with the eager step: the shipped small priors would otherwise
# compile theirs in the background for about two minutes of CPU per daemon (`serve --compile-step`,
# whose own tests pass it explicitly, tests/test_compiled_step.py).
os.environ.setdefault("NOTONO_COMPILE_STEP", "0")


def pytest_configure(config):
    """Before pytest-xdist starts its workers, compile pYIN's numba kernels once in this process, so
    that librosa's cache holds them: workers (and the daemons they start) that compiled them into
    that cache at the same time could pair one process's kernel with another's wrapper and crash
    with a segfault (numba/numba#10128, a fresh install is enough)."""
    if os.environ.get("PYTEST_XDIST_WORKER") or not getattr(config.option, "numprocesses", None):
        return
    from notono_live.daemon.cli import warm_render_tools   # the daemon's own warm-up of the pitch checks

    warm_render_tools().join()


SMALL_CORPUS_PITCHES = (24, 36, 43, 48, 60, 67, 72, 84)
SMALL_CORPUS_PROGRAMS_PER_FAMILY = 2


@pytest.fixture(scope="session")
def small_corpus_settings():
    """The `RenderSettings` that `small_corpus` was rendered with."""
    from notono_live.data.render import RenderSettings

    return RenderSettings(pitches=SMALL_CORPUS_PITCHES, programs_per_family=SMALL_CORPUS_PROGRAMS_PER_FAMILY)


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory, small_corpus_settings) -> Path:
    """Path of a small NSynth-layout corpus (examples.json + audio/) rendered by `render_corpus`."""
    from notono_live.data.render import render_corpus

    out = tmp_path_factory.mktemp("corpus") / "small"
    result = render_corpus(None, out, small_corpus_settings, progress=False)
    assert result.total_notes > 0 and not result.skipped_presets, result.summary()
    return out


@pytest.fixture(scope="session")
def rendered_wav(small_corpus) -> Path:
    """One rendered note: the first keyboard (GM piano) note at MIDI 60."""
    return small_corpus / "audio" / "keyboard_synthetic_000-060-100.wav"


@pytest.fixture(scope="session")
def spectrogram_cache(tmp_path_factory) -> Path:
    """One spectrogram cache folder for the whole session (training, DDP and eval tests share it)."""
    path = tmp_path_factory.getbasetemp() / "spectrogram_cache"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def one_torch_thread():
    """One torch thread for a test, restored afterwards so it does not leak into the session
    (the suite shares 2 cores with itself; small CPU ops run faster without thread hand-offs)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
