"""The engine in-process with the shipped model: the MIDI control surface (ControlSink), the worker
queue, and the erase tool's promise that cells outside the region are kept."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from notono_live.daemon.worker import Busy, InferenceWorker, Job
from notono_live.engine.engine import Engine
from notono_live.engine.store import SoundStore


@pytest.fixture(scope="module")
def model():
    import torch

    from notono_live.models.bundle import NotonoModel

    torch.set_num_threads(1)
    return NotonoModel.load()


@pytest.fixture
def engine(model, tmp_path):
    return Engine(model, SoundStore(tmp_path / "session"), tmp_path / "samples")


def test_control_sink_drives_the_current_sound(engine):
    engine.set_control("pitch", 55)
    engine.set_control("family", "flute")
    engine.set_control("temperature", 0.9)
    engine.trigger("generate")           # no daemon attached: runs in place
    sound = engine.current_sound
    head = engine.get(sound)
    assert (head.pitch, head.family, head.operation) == (55, "flute", "generate")
    engine.set_control("layer", "bottom")
    for name, value in (("region_x", 6), ("region_y", 60), ("region_width", 9), ("region_height", 9)):
        engine.set_control(name, value)
    # the region is clamped to the map: columns 6-7, rows 60-63 of the bottom map
    before = engine.get(sound).codemaps
    engine.trigger("inpaint")
    after = engine.get(sound)
    assert after.version == 2 and after.params["region"] == [60, 6, 4, 2]
    outside = np.ones((64, 8), bool)
    outside[60:64, 6:8] = False
    assert np.array_equal(after.codemaps.bottom[outside], before.bottom[outside])
    assert np.array_equal(after.codemaps.top, before.top)
    engine.trigger("undo")
    assert engine.get(sound).version == 1
    engine.trigger("redo")
    assert engine.get(sound).version == 2
    with pytest.raises(ValueError, match="unknown control"):
        engine.set_control("volume", 3)
    with pytest.raises(ValueError, match="unknown action"):
        engine.trigger("explode")
    with pytest.raises(ValueError, match="kazoo"):
        engine.set_control("family", "kazoo")
    engine.set_control("pitch", 200)     # knobs saturate rather than fail
    assert engine.controls.pitch == 84


def test_guidance_requests_resolve_against_the_model(engine, model, tmp_path):
    from notono_live.models.bundle import DEFAULT_GUIDANCE, EDIT_GUIDANCE, NotonoModel

    # the shipped priors were trained with condition dropout: -1 asks for the model's default scale,
    # which is DEFAULT_GUIDANCE to generate from nothing and EDIT_GUIDANCE to edit
    assert model.supports_guidance and DEFAULT_GUIDANCE != EDIT_GUIDANCE
    assert engine.resolve_guidance(-1, generating=True) == model.default_guidance == DEFAULT_GUIDANCE
    assert engine.resolve_guidance(-1) == model.edit_guidance == EDIT_GUIDANCE
    assert engine.resolve_guidance(1) == 1.0 and engine.resolve_guidance(0) == 0.0
    for bad in (-0.5, 10.5):
        with pytest.raises(ValueError, match=f"guidance {bad}"):
            engine.resolve_guidance(bad)
    guided = engine.generate(36, "brass", seed=5)[0]
    plain = engine.generate(36, "brass", seed=5, guidance=1.0)[0]
    assert guided.params["guidance"] == DEFAULT_GUIDANCE and plain.params["guidance"] == 1.0
    assert not np.array_equal(guided.codemaps.bottom, plain.codemaps.bottom)
    edited = engine.regenerate_bottom(guided.sound, seed=2)
    assert edited.params["guidance"] == EDIT_GUIDANCE
    bottom = engine.regenerate_bottom(guided.sound, seed=2, guidance=3.0)
    assert bottom.params["guidance"] == 3.0 and np.array_equal(bottom.codemaps.top, guided.codemaps.top)
    assert not np.array_equal(bottom.codemaps.bottom, edited.codemaps.bottom)
    # the daemon's own default (serve --guidance) replaces the model's for every request left at -1
    fast = Engine(model, SoundStore(tmp_path / "fast"), tmp_path / "fast_samples", default_guidance=1.0)
    assert fast.resolve_guidance(-1, generating=True) == 1.0 and fast.resolve_guidance(3) == 3.0
    assert fast.generate(36, "brass", seed=5)[0].params["guidance"] == 1.0
    strong = Engine(model, SoundStore(tmp_path / "strong"), tmp_path / "strong_samples", default_guidance=3.0)
    assert strong.regenerate_bottom(strong.generate(36, "brass", seed=5)[0].sound, seed=2).params["guidance"] == 3.0
    # priors trained without condition dropout take only 1 (the default then)
    untrained = NotonoModel.untrained("tiny", seed=0)
    bare = Engine(untrained, SoundStore(tmp_path / "bare"), tmp_path / "bare_samples")
    assert bare.resolve_guidance(-1, generating=True) == 1.0 == bare.resolve_guidance(-1)
    with pytest.raises(ValueError, match="condition dropout"):
        bare.resolve_guidance(2.0)
    with pytest.raises(ValueError, match="condition dropout"):
        Engine(untrained, SoundStore(tmp_path / "bare2"), tmp_path / "bare_samples", default_guidance=2.0)


def test_generated_sounds_and_new_bottoms_record_the_draws_they_were_picked_from(engine, model, tmp_path):
    from notono_live.models.bundle import DEFAULT_CANDIDATES

    # by default each sound is picked on pitch from the model's DEFAULT_CANDIDATES draws; progress
    # reports sampling, then decoding (which now includes scoring the draws), then writing
    stages = []
    record = engine.generate(67, "string", seed=3, progress=lambda f, stage: stages.append((f, stage)))[0]
    assert [stage for _, stage in stages] == ["sampling", "decoding", "writing"]
    assert [f for f, _ in stages] == sorted(f for f, _ in stages)
    assert record.params["candidates"] == DEFAULT_CANDIDATES == model.candidates
    assert isinstance(record.params["pitch_score"], float)
    same = model.generate_sounds(67, "string", seed=3, guidance=record.params["guidance"])
    assert record.codemaps == same.maps[0] and record.params["pitch_score"] == round(same.pitch_scores[0], 4)
    # serve --candidates 1: the priors' first draw, nothing scored
    single = Engine(model, SoundStore(tmp_path / "one"), tmp_path / "one_samples", candidates=1)
    plain = single.generate(67, "string", seed=3, variations=2)
    assert [r.params["candidates"] for r in plain] == [1, 1] and all("pitch_score" not in r.params for r in plain)
    assert [r.codemaps for r in plain] == model.generate(67, "string", n=2, seed=3)
    # a new bottom is drawn the model's `bottom_candidates` times (once where the top map carries the
    # pitch: a model that picks on previews), picked the same way; one draw is regenerate_bottom
    stages.clear()
    bottom = engine.regenerate_bottom(record.sound, seed=8, progress=lambda f, stage: stages.append((f, stage)))
    assert [stage for _, stage in stages] == ["sampling", "decoding", "writing"]
    assert bottom.params["candidates"] == model.bottom_candidates
    assert ("pitch_score" in bottom.params) == (model.bottom_candidates > 1)
    picked = Engine(model, SoundStore(tmp_path / "four"), tmp_path / "four_samples", candidates=4)
    four = picked.regenerate_bottom(picked.generate(67, "string", seed=3)[0].sound, seed=8)
    assert four.params["candidates"] == 4 and "pitch_score" in four.params
    assert np.array_equal(bottom.codemaps.top, record.codemaps.top)
    assert bottom.codemaps == model.regenerate_bottom_sounds(record.codemaps, 67, "string", seed=8).maps[0]
    one_bottom = single.regenerate_bottom(plain[0].sound, seed=8)
    assert one_bottom.params["candidates"] == 1 and "pitch_score" not in one_bottom.params
    assert one_bottom.codemaps == model.regenerate_bottom(plain[0].codemaps, 67, "string", seed=8)[0]
    # inpainting keeps one draw: its versions record no candidates
    inpainted = engine.inpaint_region(record.sound, "top", 0, 0, 4, 1, seed=9)
    assert "candidates" not in inpainted.params and "pitch_score" not in inpainted.params
    for bad in (0, 9, 1.5):
        with pytest.raises(ValueError, match=f"candidates {bad}"):
            Engine(model, SoundStore(tmp_path / "bad"), tmp_path / "bad_samples", candidates=bad)


def test_warm_up_runs_the_samplers_at_the_default_scales(model, monkeypatch):
    from notono_live.models.bundle import DEFAULT_GUIDANCE, EDIT_GUIDANCE

    seen = []
    inpaint = model.inpaint
    monkeypatch.setattr(model, "inpaint", lambda *args, **kwargs: seen.append(kwargs["guidance"]) or
                        inpaint(*args, **kwargs))
    model.warm_up()
    assert seen == [model.edit_guidance, model.default_guidance] == [EDIT_GUIDANCE, DEFAULT_GUIDANCE]
    seen.clear()
    model.warm_up((3.0, 3.0))
    assert seen == [3.0]


def test_erase_keeps_cells_outside_the_region(engine, rendered_wav):
    record = engine.encode_file(str(rendered_wav), 60, "keyboard")
    erased = engine.erase_region(record.sound, "top", 0, 0, 8, 4, amount_db=60.0)
    outside = np.ones((32, 4), bool)
    outside[0:8] = False
    assert np.array_equal(erased.codemaps.top[outside], record.codemaps.top[outside])
    bottom_outside = np.ones((64, 8), bool)
    bottom_outside[0:16] = False
    assert np.array_equal(erased.codemaps.bottom[bottom_outside], record.codemaps.bottom[bottom_outside])
    assert erased.parent == record.version and erased.operation == "erase"


def test_output_folder_rules(engine, tmp_path):
    with pytest.raises(PermissionError, match="outside the allowed"):
        engine.set_output_folder(str(tmp_path.parent))
    link = tmp_path / "session" / "link"
    link.symlink_to(tmp_path.parent)     # a symlink inside cannot smuggle a write outside
    engine.allowed_folders.append((tmp_path / "session").resolve())
    with pytest.raises(PermissionError, match="outside the allowed"):
        engine.set_output_folder(str(link / "elsewhere"))
    assert engine.set_output_folder(str(tmp_path / "session" / "takes")).is_dir()


def test_worker_bounds_its_queue_and_coalesces():
    worker = InferenceWorker(max_queue=2)
    gate = threading.Event()
    ran: list[str] = []
    superseded: list[str] = []
    try:
        worker.submit(Job(run=lambda: (gate.wait(10), ran.append("first")), label="first"))
        for _ in range(100):                 # wait until the first job is running
            if worker.busy:
                break
            threading.Event().wait(0.01)
        worker.submit(Job(run=lambda: ran.append("a"), coalesce_key="k", label="a",
                          on_superseded=lambda newer: superseded.append("a")))
        worker.submit(Job(run=lambda: ran.append("b"), label="b"))
        with pytest.raises(Busy, match="full"):
            worker.submit(Job(run=lambda: ran.append("c"), label="c"))
        # a newer job with the same key takes the waiting one's place even when the queue is full
        worker.submit(Job(run=lambda: ran.append("a2"), coalesce_key="k", label="a2"))
        assert superseded == ["a"] and worker.queue_length == 2
        gate.set()
        for _ in range(500):
            if len(ran) == 3:
                break
            threading.Event().wait(0.01)
        assert ran == ["first", "a2", "b"]
        # stopping drops what still waits, telling its owner
        dropped: list[str] = []
        gate.clear()
        worker.submit(Job(run=lambda: gate.wait(10), label="slow"))
        worker.submit(Job(run=lambda: ran.append("never"), label="late", on_dropped=lambda: dropped.append("late")))
        threading.Timer(0.3, gate.set).start()   # the slow job ends only after stop() has begun
    finally:
        worker.stop()
    assert "never" not in ran and dropped == ["late"]


def test_midi_controller_drives_the_engine(engine, tmp_path):
    """The MIDI helper's controller, fed real mido messages, calls the engine's ControlSink."""
    import mido

    from notono_live.midi import MidiHandle, default_mapping

    handle = MidiHandle(default_mapping(), engine, mapping_path=tmp_path / "mapping.toml")
    handle.receive(mido.Message("program_change", program=6))            # family 6: organ
    handle.receive(mido.Message("note_on", note=50, velocity=100))       # a key: pitch 50
    handle.receive(mido.Message("note_on", note=36, velocity=100, channel=9))   # pad 1: generate
    sound = engine.current_sound
    first = engine.get(sound)
    assert (first.pitch, first.family, first.operation) == (50, "organ", "generate")
    handle.receive(mido.Message("note_on", note=37, velocity=100, channel=9))   # pad 2: inpaint
    assert engine.get(sound).version == 2 and engine.get(sound).operation == "inpaint"
    handle.receive(mido.Message("note_on", note=39, velocity=100, channel=9))   # pad 4: undo
    assert engine.get(sound).version == 1


def test_osc_control_changes_reach_midi_pickup(engine, tmp_path):
    """The daemon's MIDI wiring: start values and OSC changes are synced, so a pick-up knob waits."""
    import mido

    from notono_live.daemon.cli import attach_midi
    from notono_live.midi import MidiHandle, default_mapping

    handle = MidiHandle(default_mapping(), engine, mapping_path=tmp_path / "mapping.toml")
    attach_midi(engine, handle)
    assert handle.controller.values()["pitch"] == engine.controls.pitch == 60
    # what an OSC inpaint on the bottom map does: the region lies beyond the top map's 32 rows
    engine.apply_controls(region_y=60, region_height=4, layer="bottom", pitch=72)
    values = handle.controller.values()
    assert (values["region_y"], values["region_height"], values["pitch"]) == (60, 4, 72)
    handle.receive(mido.Message("control_change", control=26, value=0))     # pitch knob far below 72
    assert engine.controls.pitch == 72, "a pick-up knob away from the value must not make it jump"
    handle.receive(mido.Message("control_change", control=26, value=127))   # it passes 72: takes over
    assert engine.controls.pitch == 84


def test_pitch_check_runs_after_the_render_and_is_stored(model, tmp_path):
    import hashlib
    from pathlib import Path

    from notono_live.evaluation.pitch import pitch_within_cents

    # one draw each at MIDI 24, where some of the four may miss the pitch (the shipped model's first
    # draws of a keyboard at C0 missed 6 of 60 over seeds 1-15; 96 % on pitch over the eval's grid): with
    # this seed one of the four misses, and the check must tell them apart
    engine = Engine(model, SoundStore(tmp_path / "session"), tmp_path / "samples", candidates=1)
    records = engine.generate(24, "keyboard", variations=4, seed=4)
    assert all("pitch_missed" not in [n[0] for n in r.params.get("notices", [])] for r in records)
    on_pitch = {r.sound: pitch_within_cents(engine._decoded(r), 16_000, 24, 50.0) for r in records}
    assert set(on_pitch.values()) == {True, False}, on_pitch   # the seed gives both cases
    missed = engine.check_pitch(records)
    assert sorted(r.sound for r in missed) == sorted(s for s, ok in on_pitch.items() if not ok)
    for record in missed:
        kind, message = record.params["notices"][-1]
        assert kind == "pitch_missed" and "C0" in message, message
    assert engine.check_pitch(records) == []   # owed once: a second call has nothing to check
    # stored: a store reopened on the same folder has the notices; the WAVs are the bytes first written
    reopened = SoundStore(tmp_path / "session")
    for record in records:
        kinds = [n[0] for n in reopened.get(record.sound, record.version).params.get("notices", [])]
        assert ("pitch_missed" in kinds) == (not on_pitch[record.sound])
        assert hashlib.sha256(Path(record.wav).read_bytes()).hexdigest() == record.wav_sha256
    # a new bottom at the sound's own pitch owes its check too; other edits owe none
    bottom = engine.regenerate_bottom(records[0].sound, seed=3)
    inpainted = engine.inpaint_region(records[0].sound, "top", 0, 0, 4, 1, seed=3)
    assert engine._owed_checks.keys() == {(bottom.sound, bottom.version)}
    engine.check_pitch([bottom, inpainted])
    assert not engine._owed_checks
