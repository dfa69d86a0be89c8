"""Audio preview: plays where PortAudio and an output device exist, fails clearly where they do not."""
from __future__ import annotations

import pytest

from notono_live.preview import PreviewUnavailable, available, play_file, stop

CAN_PLAY, WHY = available()


def _portaudio_loads() -> bool:
    try:
        import sounddevice  # noqa: F401
    except OSError:
        return False
    return True


@pytest.mark.skipif(CAN_PLAY, reason="this machine can play audio")
def test_preview_without_portaudio_or_output_raises_a_clear_error(rendered_wav):
    with pytest.raises(PreviewUnavailable) as error:
        play_file(rendered_wav)
    message = str(error.value)
    assert message == WHY and message.startswith("audio preview is unavailable: ")
    if not _portaudio_loads():
        assert "PortAudio library could not be loaded" in message and "libportaudio2" in message
    else:
        assert "output device" in message
    stop()  # harmless where preview is unavailable


@pytest.mark.skipif(not CAN_PLAY, reason=f"no audio output here: {WHY}")
def test_preview_plays_a_rendered_note(rendered_wav):
    result = play_file(rendered_wav, blocking=False)
    stop()
    assert result.path == rendered_wav and result.duration_s == pytest.approx(4.0, abs=0.01)


def test_preview_of_a_missing_or_unreadable_file_names_it(tmp_path):
    missing = tmp_path / "gone.wav"
    with pytest.raises(FileNotFoundError, match="gone.wav"):
        play_file(missing)
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not audio")
    with pytest.raises(ValueError, match="notes.wav.*not a readable audio file"):
        play_file(not_audio)
