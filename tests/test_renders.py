"""Every render is what its name says: a real `notono-live serve` with the shipped model over real UDP.

- a sample pack over two octaves (MIDI 48-72, step 6: five WAVs) sits on its labels by pYIN at least as
  often as the eval's generated sounds do (the share is read from the model card);
- a new bottom at a new pitch lands on it, or its reply says it did not;
- erase lowers its region by the amount asked (within the documented 3 dB) or says it cannot, and the
  drop it reports is the one the WAVs have;
- encode without a pitch estimates it and says so, and says when a file was trimmed or padded;
- `notono-live send` resolves relative paths in the caller's folder and imports no torch;
- progress fractions and queue stages are exact;
- last, every WAV the module rendered is at the target loudness, under the true-peak ceiling, DC-free.
"""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from notono_live.audio_io import ResampledAudioWarning, load_audio
from notono_live.daemon.process import DaemonProcess
from notono_live.engine import levels, render
from notono_live.evaluation.pitch import estimate_f0, pitch_within_cents
from notono_live.osc.client import NotonoClient

REPO = Path(__file__).resolve().parents[1]
SR = 44_100


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("renders")
    proc = DaemonProcess(root / "data", [])
    proc.start()
    proc.root = root
    yield proc
    assert proc.stop() == 0, proc.log_text()[-2000:]
    assert "Traceback" not in proc.log_text(), proc.log_text()[-4000:]


@pytest.fixture(scope="module")
def client(daemon):
    with NotonoClient(daemon.host, daemon.port, timeout=300.0) as c:
        c.connect(sample_rate=SR)
        yield c


@pytest.fixture(scope="module")
def keyboard(client, small_corpus):
    """A corpus piano C3 (MIDI 60), encoded."""
    reply = client.request("/notono/encode", str(small_corpus / "audio" / "keyboard_synthetic_000-060-100.wav"),
                           60, "keyboard")
    assert reply.ok, reply.error
    return reply.sounds[0]


def version_params(daemon, sound: int, version: int) -> dict:
    path = Path(daemon.root / "data" / "session" / "sounds" / f"{sound:04d}" / f"v{version:04d}.json")
    return json.loads(path.read_text())["params"]


def wav16k(path: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResampledAudioWarning)
        return load_audio(path)


def model_card_share() -> float:
    """The share of generated sounds at the asked pitch that the eval reports (models/README.md)."""
    text = (REPO / "models" / "README.md").read_text()
    found = re.search(r"\| generated pitch accuracy[^|]*\| \**(\d+(?:\.\d+)?) ?%", text)
    assert found, "models/README.md has no generated pitch accuracy row"
    return float(found.group(1)) / 100.0


def notices_of(reply, sound: dict) -> dict[str, str]:
    return {n[2]: n[3] for n in reply.of("/notono/notice") if n[:2] == [sound["sound"], sound["version"]]}


def test_pack_over_two_octaves_sits_on_its_labels(client, keyboard):
    reply = client.request("/notono/pack", keyboard["sound"], 48, 72, 6, 3)
    assert reply.ok, reply.error
    pack = reply.sounds
    assert [s["pitch"] for s in pack] == [48, 54, 60, 66, 72]
    on_pitch = []
    for s in pack:
        audio = wav16k(s["wav"])
        passed = pitch_within_cents(audio, 16_000, s["pitch"], 50.0)
        on_pitch.append(passed)
        notices = notices_of(reply, s)
        assert "transposed" in notices
        # never named with a pitch it does not have without saying so
        assert passed == ("pitch_missed" not in notices), (s["label"], notices, estimate_f0(audio, 16_000))
    share = model_card_share()
    assert sum(on_pitch) / len(on_pitch) >= share, (
        f"{sum(on_pitch)} of {len(on_pitch)} pack WAVs within 50 cents of their labels; the eval's generated "
        f"sounds reach {share:.1%}: {[round(estimate_f0(wav16k(s['wav']), 16_000), 1) for s in pack]} Hz")


def test_new_bottom_at_a_new_pitch_lands_on_it_or_says_so(client, keyboard):
    before = client.request("/notono/codemap/get", keyboard["sound"], 1).of("/notono/codemap/row")
    reply = client.request("/notono/bottom/regenerate", keyboard["sound"], 67, "", 1.0, 0.8, 5)
    assert reply.ok, reply.error
    s = reply.sounds[0]
    assert (s["pitch"], s["operation"], s["label"].split()[1]) == (67, "bottom", "G3")
    notices = notices_of(reply, s)
    assert "semitones" in notices["transposed"]
    after = client.request("/notono/codemap/get", s["sound"], s["version"]).of("/notono/codemap/row")
    assert [r[4:] for r in after if r[2] == "top"] != [r[4:] for r in before if r[2] == "top"], (
        "the top map carries the pitch: a new pitch must change it")
    passed = pitch_within_cents(wav16k(s["wav"]), 16_000, 67, 50.0)
    assert passed or "pitch_missed" in notices
    assert passed == ("pitch_missed" not in notices)


def test_a_generated_sound_off_its_pitch_is_told_after_the_reply(client, daemon):
    # four organ sounds at C0, each picked on pitch from 4 draws: with this seed one of them still
    # misses (a keyboard at C0 no longer missed once over seeds 1-15)
    rid = client.send("/notono/generate", 24, "organ", 1.0, 0.8, 4, 2)
    reply = client.wait(rid)
    assert reply.ok, reply.error
    assert reply.of("/notono/notice") == [], "the pitch check runs after the reply, not before it"
    missed = {s["sound"] for s in reply.sounds if not pitch_within_cents(wav16k(s["wav"]), 16_000, 24, 50.0)}
    assert 0 < len(missed) < 4, "the seed no longer gives both cases"

    def told() -> dict[int, list]:
        return {args[1]: args for address, args in list(client.unsolicited)
                if address == "/notono/notice" and args[0] == rid}
    deadline = time.monotonic() + 30.0
    while set(told()) != missed and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)   # time for a notice about an on-pitch sound, were one wrongly sent
    notices = told()
    assert set(notices) == missed, (notices, missed)
    for sound in missed:
        _, _, version, kind, message = notices[sound]
        assert (version, kind) == (1, "pitch_missed") and "C0" in message
        assert [kind, message] in version_params(daemon, sound, 1)["notices"]


def test_erase_lowers_the_region_by_the_amount(client, daemon, keyboard):
    region = ((32, 4), 0, 1, 8, 2)   # the low rows, where the piano's energy is, over seconds 1-3
    reply = client.request("/notono/region/erase", keyboard["sound"], "top", 0, 1, 8, 2, 24.0)
    assert reply.ok, reply.error
    erased = reply.sounds[0]
    assert "dB quieter" in notices_of(reply, erased)["erased"]
    params = version_params(daemon, erased["sound"], erased["version"])
    parent = version_params(daemon, erased["sound"], erased["parent"])
    # the WAVs are levelled: the version's metadata gives each one's gain back
    raw = [wav16k(client.request("/notono/sound/get", erased["sound"], v).sounds[0]["wav"])
           / 10.0 ** (p["level"]["gain_db"] / 20.0) for v, p in ((erased["parent"], parent),
                                                                (erased["version"], params))]
    drop = 10.0 * math.log10(render.region_power(raw[0], *region) / render.region_power(raw[1], *region))
    # what the reply says is what the WAVs have, and it is the amount or it says it is not
    notice = notices_of(reply, erased)["erased"]
    assert abs(drop - params["erased_db"]) < 0.5 and f"{params['erased_db']:.1f} dB quieter" in notice, (drop, notice)
    assert drop > 12.0, notice
    assert abs(drop - 24.0) <= 3.0 or "cannot bring this region closer" in notice, notice


def test_encode_estimates_pitch_and_says_trimmed_or_padded(client, small_corpus, tmp_path):
    note, rate = sf.read(str(small_corpus / "audio" / "bass_synthetic_000-043-100.wav"), dtype="float32")
    sf.write(str(tmp_path / "long.wav"), np.concatenate([note, note[: rate * 2]]), rate)   # 6 s
    sf.write(str(tmp_path / "short.wav"), note[: rate * 3 // 2], rate)                    # 1.5 s
    long = client.request("/notono/encode", str(tmp_path / "long.wav"), -1, "bass")
    short = client.request("/notono/encode", str(tmp_path / "short.wav"))
    assert long.ok and short.ok, (long.error, short.error)
    for reply, kind in ((long, "trimmed"), (short, "padded")):
        s = reply.sounds[0]
        notices = notices_of(reply, s)
        assert s["pitch"] == 43 and "G1" in s["label"], (s["label"], notices)
        assert "MIDI 43" in notices["pitch_estimated"] and kind in notices, notices
    explicit = client.request("/notono/encode", str(small_corpus / "audio" / "bass_synthetic_000-043-100.wav"),
                              50, "bass")
    assert explicit.sounds[0]["pitch"] == 50 and not explicit.of("/notono/notice")


def test_send_resolves_paths_in_the_callers_folder_and_stays_light(client, daemon, small_corpus, tmp_path):
    heavy = ("torch", "numpy", "librosa", "scipy", "soundfile")
    out = subprocess.run([sys.executable, "-c", "import sys, notono_live.cli, notono_live.osc.client, "
                          "notono_live.osc.send; print(' '.join(m for m in %r if m in sys.modules))" % (heavy,)],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"the client imports {out.stdout.strip()}"
    (tmp_path / "mine.wav").write_bytes((small_corpus / "audio" / "flute_synthetic_000-072-100.wav").read_bytes())
    send = [sys.executable, "-m", "notono_live", "send", "--port", str(daemon.port)]
    ping = subprocess.run(send + ["ping"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert ping.returncode == 0 and ping.stdout.startswith("/notono/pong"), ping.stdout + ping.stderr
    done = subprocess.run(send + ["encode", "--path", "mine.wav", "--pitch", "72", "--family", "flute"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("/notono/sound "))
    sound, version = (int(v) for v in line.split()[2:4])
    assert version_params(daemon, sound, version)["source"] == str((tmp_path / "mine.wav").resolve())
    refused = client.request("/notono/encode", "mine.wav", 72, "flute")
    assert refused.error[0] == "bad_file" and "relative path" in refused.error[1]


def test_progress_and_queue_stages_are_exact(client, keyboard):
    first = client.send("/notono/inpaint/region", keyboard["sound"], "bottom", 0, 0, 64, 8)
    second = client.send("/notono/region/randomize", keyboard["sound"], "top", 0, 0, 1, 1)
    replies = [client.wait(first), client.wait(second)]
    assert all(r.ok for r in replies), [r.error for r in replies]
    stages = [[a[1] for a in r.of("/notono/progress")] for r in replies]
    assert stages[0][0] == "queued"
    assert stages[1][0] in ("queued (1 running ahead)", "queued (1 waiting ahead)"), stages[1]
    fractions = [a[0] for r in replies for a in r.of("/notono/progress")]
    assert {0.0, 0.1, 0.7, 0.9} <= set(fractions), fractions   # 0.1, not 0.10000000149011612
    # a request that a final reply prompts waits for nothing
    again = client.request("/notono/region/randomize", keyboard["sound"], "top", 1, 0, 1, 1)
    assert again.of("/notono/progress")[0][1] == "queued"


def test_every_render_is_levelled(client, daemon):
    """Last in the module: every WAV rendered above (encode, pack, new bottom, erase, inpaint, randomize)."""
    client.request("/notono/generate", 72, "flute", 1.0, 0.8, 1, 2)
    wavs = sorted((daemon.root / "data").rglob("*.wav"))
    assert len(wavs) >= 14
    for wav in wavs:
        audio, rate = sf.read(str(wav), dtype="float64")
        assert rate == SR
        loudness = levels.loudness(audio, rate)
        peak = 20.0 * math.log10(levels.true_peak(audio, rate))
        assert loudness is not None and abs(loudness - levels.TARGET_LUFS) <= 1.0, (wav.name, loudness)
        assert peak < levels.TRUE_PEAK_CEILING_DBTP, (wav.name, peak)
        assert levels.dc_dbfs(audio) < -60.0, (wav.name, levels.dc_dbfs(audio))
