"""MIDI mapping, controller, learn and ports.

Every message is a real `mido.Message` fed to `MidiHandle.receive`, the function the open port calls
back, and lands in `RecordingSink`, a real ControlSink that keeps what it was asked to do.
"""
from __future__ import annotations

import logging
import threading

import mido
import pytest

from notono_live.cli import main as cli_main
from notono_live.codemaps import layer_shape
from notono_live.constants import FAMILIES, PITCH_MAX, PITCH_MIN
from notono_live.midi import (
    ACTIONS, CONTROL_TARGETS, Binding, Mapping, MappingError, MidiHandle, MidiUnavailable, QueuedSink,
    default_mapping, load_mapping, load_mapping_or_default, midi_system_problem, normalise_port_name,
    open_midi_input, save_mapping,
)
from notono_live.midi import ports
from notono_live.midi.controller import relative_ticks
from notono_live.midi.mapping import TEMPERATURE_RANGE, parse_mapping
from notono_live.midi.ports import resolve_input_name

PORT = "NOTONO Live"


class RecordingSink:
    """A ControlSink that records every call in order."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def set_control(self, name, value) -> None:
        self.calls.append(("set", name, value))

    def trigger(self, action) -> None:
        self.calls.append(("trigger", action))

    def take(self) -> list[tuple]:
        calls, self.calls = self.calls, []
        return calls

    def last(self, name):
        values = [c[2] for c in self.calls if c[0] == "set" and c[1] == name]
        return values[-1] if values else None


def cc(number, value, channel=1):
    return mido.Message("control_change", control=number, value=value, channel=channel - 1)


def note(number, channel=1, velocity=100):
    return mido.Message("note_on", note=number, velocity=velocity, channel=channel - 1)


def handle_for(mapping=None, tmp_path=None, sink=None, **kwargs):
    sink = sink or RecordingSink()
    path = None if tmp_path is None else tmp_path / "midi_mapping.toml"
    handle = MidiHandle(mapping or default_mapping(), sink, path, port_name=PORT, **kwargs)
    return handle, sink


def mapping_of(*bindings: dict) -> Mapping:
    return Mapping([Binding.from_dict(b) for b in bindings])


# --- the default mapping -------------------------------------------------------------------------

def test_default_mapping_binds_every_control_and_action():
    mapping = default_mapping()
    targets = {b.target for b in mapping.bindings}
    assert set(CONTROL_TARGETS) | set(ACTIONS) <= targets
    knobs = [b for b in mapping.bindings if b.type == "cc"]
    pads = [b for b in mapping.bindings if b.type == "note" and b.number is not None]
    assert [b.number for b in knobs] == list(range(21, 29))
    assert [b.number for b in pads] == list(range(36, 44)) and {b.channel for b in pads} == {10}


# --- CC to region and parameters -----------------------------------------------------------------

@pytest.mark.parametrize("layer", ["top", "bottom"])
def test_region_knobs_span_the_current_layers_cells(layer):
    handle, sink = handle_for()
    handle.sync("layer", layer)
    rows, cols = layer_shape(layer)
    for knob, name, low, high in ((21, "region_x", 0, cols - 1), (22, "region_y", 0, rows - 1)):
        seen = []
        for raw in range(128):
            handle.receive(cc(knob, raw))
            seen.append(handle.controller.values()[name])
        assert seen[0] == low and seen[-1] == high
        assert seen == sorted(seen) and set(seen) == set(range(low, high + 1))
    handle.receive(cc(21, 0))
    handle.receive(cc(22, 0))
    sink.take()
    handle.receive(cc(23, 127))
    handle.receive(cc(24, 127))
    assert sink.take() == [("set", "region_width", cols), ("set", "region_height", rows)]


def test_region_stays_inside_the_map_and_follows_a_layer_change():
    handle, sink = handle_for()
    handle.sync("layer", "top")
    handle.receive(cc(23, 127))                 # width asked: all 4 columns
    handle.receive(cc(21, 127))                 # x = 3: only 1 column fits
    assert sink.take() == [("set", "region_width", 4), ("set", "region_x", 3), ("set", "region_width", 1)]
    handle.receive(cc(21, 40))                  # x = 1: the asked width comes back as far as it fits
    assert sink.take() == [("set", "region_x", 1), ("set", "region_width", 3)]
    handle.receive(cc(22, 127))                 # y = 31 (top row), height defaults to what fits
    handle.receive(cc(24, 0))
    assert handle.controller.values()["region_height"] == 1
    sink.take()
    handle.receive(note(42, channel=10))        # pad: layer = bottom; same spectrogram area, new cells
    assert sink.take() == [("set", "layer", "bottom"), ("set", "region_x", 2), ("set", "region_y", 62),
                           ("set", "region_width", 6), ("set", "region_height", 2)]
    handle.receive(note(41, channel=10))        # back to top
    assert sink.take() == [("set", "layer", "top"), ("set", "region_x", 1), ("set", "region_y", 31),
                           ("set", "region_width", 3), ("set", "region_height", 1)]


def test_parameter_knobs_cover_their_ranges():
    handle, sink = handle_for()
    swept = {name: [] for name in ("temperature", "pitch", "family", "layer")}
    for raw in range(128):
        for knob, name in ((25, "temperature"), (26, "pitch"), (27, "family"), (28, "layer")):
            handle.receive(cc(knob, raw))
            swept[name].append(handle.controller.values()[name])
    assert swept["temperature"][0] == TEMPERATURE_RANGE[0] and swept["temperature"][-1] == TEMPERATURE_RANGE[1]
    assert all(TEMPERATURE_RANGE[0] <= t <= TEMPERATURE_RANGE[1] for t in swept["temperature"])
    assert set(swept["pitch"]) == set(range(PITCH_MIN, PITCH_MAX + 1))
    assert swept["family"][0] == FAMILIES[0] and swept["family"][-1] == FAMILIES[-1]
    assert set(swept["family"]) == set(FAMILIES)
    assert swept["layer"][0] == "top" and swept["layer"][-1] == "bottom"
    # only changes reach the sink: 61 pitches, not 128 messages
    assert len([c for c in sink.calls if c[1] == "pitch"]) == PITCH_MAX - PITCH_MIN + 1


def test_min_max_narrow_and_invert_a_knob():
    mapping = mapping_of({"target": "pitch", "type": "cc", "number": 1, "min": 48, "max": 60},
                         {"target": "region_y", "type": "cc", "number": 2, "min": 31, "max": 0})
    handle, sink = handle_for(mapping)
    handle.receive(cc(1, 0))
    handle.receive(cc(1, 127))
    handle.receive(cc(2, 0))
    handle.receive(cc(2, 127))
    assert sink.take() == [("set", "pitch", 48), ("set", "pitch", 60),
                           ("set", "region_y", 31), ("set", "region_y", 0)]


def test_notes_pads_and_program_changes():
    handle, sink = handle_for()
    handle.receive(note(36, channel=10))        # pad 1
    handle.receive(note(38, channel=10))        # pad 3
    handle.receive(note(36, channel=1))         # the same note from the keys is a pitch
    handle.receive(note(100))                   # above the range: folded by octaves
    handle.receive(note(12))
    handle.receive(note(60, velocity=0))        # a note-off by velocity 0
    handle.receive(mido.Message("note_off", note=60))
    handle.receive(mido.Message("program_change", program=3))
    handle.receive(mido.Message("program_change", program=40))   # no family 40
    handle.receive(mido.Message("clock"))
    assert sink.take() == [("trigger", "generate"), ("trigger", "new_bottom"), ("set", "pitch", 36),
                           ("set", "pitch", 76), ("set", "pitch", 24), ("set", "family", "guitar")]
    handle.receive(note(43, channel=10))        # pad 8 steps the family on, wrapping round
    assert sink.take() == [("set", "family", "keyboard")]
    handle.sync("family", FAMILIES[-1])
    handle.receive(note(43, channel=10))
    assert sink.take() == [("set", "family", FAMILIES[0])]


def test_note_sets_pitch_then_triggers_and_cc_buttons_fire_on_press():
    mapping = mapping_of({"target": "pitch", "type": "note", "trigger": "generate"},
                         {"target": "undo", "type": "cc", "number": 64},
                         {"target": "temperature", "type": "cc", "number": 65, "value": 0.5})
    handle, sink = handle_for(mapping)
    handle.receive(note(62))
    handle.receive(note(62))                    # a press always reaches the sink
    handle.receive(cc(64, 127))
    handle.receive(cc(64, 0))                   # release
    handle.receive(cc(65, 127))
    assert sink.take() == [("set", "pitch", 62), ("trigger", "generate"), ("set", "pitch", 62),
                           ("trigger", "generate"), ("trigger", "undo"), ("set", "temperature", 0.5)]


# --- relative encoders ---------------------------------------------------------------------------

def test_relative_encodings():
    cases = {"relative_twos_complement": {1: 1, 5: 5, 127: -1, 123: -5, 64: -64, 0: 0},
             "relative_binary_offset": {65: 1, 69: 5, 63: -1, 59: -5, 64: 0},
             "relative_sign_magnitude": {1: 1, 5: 5, 65: -1, 69: -5, 0: 0}}
    for mode, table in cases.items():
        assert {value: relative_ticks(mode, value) for value in table} == table, mode


@pytest.mark.parametrize("mode,up,down", [("relative_twos_complement", 1, 127),
                                          ("relative_binary_offset", 65, 63),
                                          ("relative_sign_magnitude", 1, 65)])
def test_endless_encoder_steps_and_clamps(mode, up, down):
    mapping = mapping_of({"target": "region_y", "type": "cc", "number": 30, "mode": mode},
                         {"target": "temperature", "type": "cc", "number": 31, "mode": mode, "step": 0.1},
                         {"target": "pitch", "type": "cc", "number": 32, "mode": mode, "step": 0.5})
    handle, sink = handle_for(mapping)
    handle.sync("region_y", 30)
    for value in (up, up, up):
        handle.receive(cc(30, value))
    assert sink.take() == [("set", "region_y", 31)]          # 30 -> 31, then clamped at the top row
    handle.receive(cc(30, down))
    assert sink.take() == [("set", "region_y", 30)]
    handle.receive(cc(31, up))                                 # unknown temperature starts at 1.0
    handle.receive(cc(31, down))
    handle.receive(cc(31, down))
    assert sink.take() == [("set", "temperature", 1.1), ("set", "temperature", 1.0),
                           ("set", "temperature", 0.9)]
    handle.sync("pitch", 60)
    for _ in range(4):                                          # half a semitone a tick
        handle.receive(cc(32, up))
    assert sink.take() == [("set", "pitch", 61), ("set", "pitch", 62)]


# --- pick-up (soft takeover) ---------------------------------------------------------------------

def test_pickup_waits_for_the_knob_to_reach_the_value():
    handle, sink = handle_for()
    handle.sync("temperature", 1.0)             # knob 5 (CC 25) spans 0.1-2.0; 1.0 is near raw 60
    for raw in (0, 10, 30):
        handle.receive(cc(25, raw))
    assert sink.take() == []                    # still below the value: ignored
    handle.receive(cc(25, 70))                  # passed it: the knob takes over
    handle.receive(cc(25, 20))                  # and now follows
    assert [c[1:] for c in sink.take()] == [("temperature", round(0.1 + 1.9 * 70 / 127, 3)),
                                             ("temperature", round(0.1 + 1.9 * 20 / 127, 3))]
    handle.sync("temperature", 1.8)             # changed over OSC: the knob must catch up again
    handle.receive(cc(25, 21))
    assert sink.take() == []
    handle.receive(cc(25, 127))
    assert sink.take() == [("set", "temperature", 2.0)]


def test_pickup_on_a_region_knob_and_jump_mode():
    handle, sink = handle_for()
    handle.sync("layer", "top")
    handle.sync("region_x", 2)
    handle.receive(cc(21, 0))                   # x knob at column 0, value at 2: waits
    assert sink.take() == []
    handle.receive(cc(21, 70))                  # lands on column 2: picked up (nothing to change yet)
    assert sink.take() == []
    handle.receive(cc(21, 0))                   # and now it moves x
    assert sink.take() == [("set", "region_x", 0)]
    # the layer knob is "jump": it acts on its first message whatever the value
    handle.sync("layer", "bottom")
    handle.receive(cc(28, 0))
    assert sink.take()[0] == ("set", "layer", "top")


def test_pickup_knob_acts_at_once_when_the_value_is_unknown():
    handle, sink = handle_for()
    handle.receive(cc(26, 127))
    assert sink.take() == [("set", "pitch", PITCH_MAX)]


# --- learn ---------------------------------------------------------------------------------------

def test_learn_binds_the_next_cc_saves_and_reloads(tmp_path):
    learned = []
    handle, sink = handle_for(tmp_path=tmp_path, on_learned=learned.append)
    handle.learn("region_x", mode="relative_binary_offset")
    assert handle.learning == "region_x"
    handle.receive(cc(70, 65, channel=3))       # consumed by learn: nothing acts
    assert sink.take() == [] and handle.learning is None
    (result,) = learned
    assert result.binding.to_dict() == {"target": "region_x", "type": "cc", "number": 70, "channel": 3,
                                         "port": PORT, "mode": "relative_binary_offset"}
    assert [b.number for b in result.replaced] == [21]          # the default knob for region_x
    assert result.error is None and result.saved_to == tmp_path / "midi_mapping.toml"
    handle.receive(cc(70, 65, channel=3))
    handle.receive(cc(21, 127))                 # the old knob no longer moves x
    assert sink.take() == [("set", "region_x", 1)]
    # the saved file reloads to the same mapping and drives a new handle the same way
    reloaded = load_mapping(result.saved_to)
    assert reloaded == handle.controller.mapping
    again, sink2 = handle_for(reloaded)
    again.receive(cc(70, 65, channel=3))
    assert sink2.take() == [("set", "region_x", 1)]
    assert handle.mappings() == reloaded.to_dicts()


def test_learn_notes_for_actions_and_pitch_and_cancel(tmp_path):
    handle, sink = handle_for(tmp_path=tmp_path)
    handle.learn("undo")
    handle.receive(note(50, channel=2))
    handle.receive(note(50, channel=2))
    assert sink.take() == [("trigger", "undo")]
    handle.learn("region_y")                    # a knob target: a key keeps playing pitch
    handle.receive(note(55))
    assert sink.take() == [("set", "pitch", 55)] and handle.learning == "region_y"
    assert handle.cancel_learn() is True and handle.cancel_learn() is False
    handle.receive(cc(22, 127))                 # not learnt: the default knob acts
    assert sink.take() == [("set", "region_y", 31)]
    handle.learn("pitch", trigger="generate")   # a key: the whole keyboard on that channel
    handle.receive(note(40, channel=5))
    handle.receive(note(70, channel=5))
    assert sink.take() == [("set", "pitch", 70), ("trigger", "generate")]
    saved = load_mapping(tmp_path / "midi_mapping.toml")
    pitch_notes = [b for b in saved.bindings if b.target == "pitch" and b.type == "note"]
    assert [(b.number, b.channel, b.trigger) for b in pitch_notes] == [(None, 5, "generate")]
    with pytest.raises(ValueError, match="cannot learn 'loudness'"):
        handle.learn("loudness")


def test_learn_replaces_an_invalid_file_but_keeps_it(tmp_path):
    path = tmp_path / "midi_mapping.toml"
    path.write_text('format = "notono-midi-mapping"\nversion = 1\n[[binding]]\ntarget = "region_x"\n'
                    'type = "cc"\nnumber = 300\n')
    mapping, problem = load_mapping_or_default(path)
    assert "'number'" in problem and mapping == default_mapping()
    handle = MidiHandle(mapping, RecordingSink(), path, port_name=PORT, mapping_problem=problem)
    handle.learn("redo")
    handle.receive(note(60, channel=16))
    assert (tmp_path / "midi_mapping.toml.invalid").read_text().endswith("number = 300\n")
    assert any(b.target == "redo" and b.number == 60 for b in load_mapping(path).bindings)


# --- the mapping file ----------------------------------------------------------------------------

HEADER = 'format = "notono-midi-mapping"\nversion = 1\n'


@pytest.mark.parametrize("body,key", [
    ('[[binding]]\ntarget = "region_x"\ntype = "cc"\nnumber = 128\n', "number"),
    ('[[binding]]\ntarget = "loudness"\ntype = "cc"\nnumber = 1\n', "target"),
    ('[[binding]]\ntarget = "pitch"\ntype = "cc"\nnumber = 1\nchanel = 2\n', "chanel"),
    ('[[binding]]\ntarget = "pitch"\ntype = "cc"\nnumber = 1\nchannel = 17\n', "channel"),
    ('[[binding]]\ntarget = "pitch"\ntype = "cc"\nnumber = 1\nmode = "sideways"\n', "mode"),
    ('[[binding]]\ntarget = "temperature"\ntype = "cc"\nnumber = 1\nmax = 9.0\n', "max"),
    ('[[binding]]\ntarget = "family"\ntype = "note"\nnumber = 1\nvalue = "kazoo"\n', "value"),
    ('[[binding]]\ntarget = "region_x"\ntype = "note"\nnumber = 1\n', "value"),
    ('[[binding]]\ntarget = "undo"\ntype = "cc"\n', "number"),
])
def test_bad_mapping_file_names_the_key_and_keeps_the_defaults(tmp_path, body, key):
    path = tmp_path / "bad.toml"
    path.write_text(HEADER + '[[binding]]\ntarget = "generate"\ntype = "note"\nnumber = 36\n\n' + body)
    with pytest.raises(MappingError) as error:
        load_mapping(path)
    assert str(path) in str(error.value) and "binding 2" in str(error.value) and f"'{key}'" in str(error.value)
    mapping, problem = load_mapping_or_default(path)
    assert mapping == default_mapping() and f"'{key}'" in problem


@pytest.mark.parametrize("text,key", [("format = 1\n", "format"), (HEADER.replace("1", "7"), "version"),
                                      (HEADER + "bindings = []\n", "bindings"), (HEADER + "[[binding\n", "TOML")])
def test_bad_mapping_header(tmp_path, text, key):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(MappingError, match=key):
        load_mapping(path)


def test_mapping_file_round_trip_with_awkward_names(tmp_path):
    name = 'Ctrl "A" \\ Zoë\tport'
    mapping = Mapping([Binding.from_dict({"target": "family", "type": "cc", "number": 7, "channel": 16,
                                          "port": name, "min": "brass", "max": 3, "takeover": "jump"}),
                       Binding.from_dict({"target": "temperature", "type": "cc", "number": 8, "step": 0.025,
                                          "mode": "relative_sign_magnitude", "min": 0.5, "max": 1.5}),
                       Binding.from_dict({"target": "layer", "type": "program", "value": "bottom"})],
                      port="nanoKONTROL2")
    path = save_mapping(mapping, tmp_path / "sub" / "m.toml")
    assert load_mapping(path) == mapping
    assert mapping.bindings[0].min == 1          # a family name is stored as its index
    assert not list((tmp_path / "sub").glob(".*tmp"))


# --- ports, threads, and a machine without MIDI --------------------------------------------------

def test_port_names_match_without_alsa_numbers():
    names = ["Midi Through:Midi Through Port-0 14:0", "nanoKONTROL2:nanoKONTROL2 _ CTRL 20:0",
             "Launchkey MK3 49:Launchkey MK3 49 LKMK3 MIDI Port 24:0",
             "Launchkey MK3 49:Launchkey MK3 49 LKMK3 DAW Port 24:1"]
    assert normalise_port_name(names[1]) == "nanoKONTROL2:nanoKONTROL2 _ CTRL"
    assert normalise_port_name("IAC Driver Bus 1") == "IAC Driver Bus 1"
    assert resolve_input_name("nanoKONTROL2:nanoKONTROL2 _ CTRL 28:0", names) == names[1]
    assert resolve_input_name("nanokontrol2", names) == names[1]
    assert resolve_input_name("lkmk3 midi", names) == names[2]
    with pytest.raises(ValueError, match="ambiguous"):
        resolve_input_name("Launchkey", names)
    with pytest.raises(ValueError, match="no MIDI input named 'Keystation'.*nanoKONTROL2"):
        resolve_input_name("Keystation", names)


def test_bindings_for_another_port_do_not_act():
    mapping = mapping_of({"target": "undo", "type": "cc", "number": 1, "port": "nanoKONTROL2 20:0"},
                         {"target": "redo", "type": "cc", "number": 1})
    on_nano = MidiHandle(mapping, RecordingSink(), port_name="nanoKONTROL2 24:0")
    elsewhere = MidiHandle(mapping, RecordingSink(), port_name=PORT)
    for handle in (on_nano, elsewhere):
        handle.receive(cc(1, 127))
    assert on_nano.controller.sink.calls == [("trigger", "undo")]
    assert elsewhere.controller.sink.calls == [("trigger", "redo")]


def test_queued_sink_moves_calls_from_the_midi_thread():
    queued = QueuedSink()
    handle = MidiHandle(default_mapping(), queued, port_name=PORT)
    messages = [cc(26, 127), note(36, channel=10), cc(25, 0)]
    thread = threading.Thread(target=lambda: [handle.receive(m) for m in messages])
    thread.start()
    thread.join()
    daemon_side = RecordingSink()
    assert queued.drain(daemon_side, timeout=5) == 3
    assert daemon_side.calls == [("set", "pitch", 84), ("trigger", "generate"), ("set", "temperature", 0.1)]
    assert queued.drain(daemon_side) == 0


def test_a_failing_sink_does_not_stop_the_midi_thread(caplog):
    class RefusingSink(RecordingSink):
        def trigger(self, action):
            raise ValueError("no current sound")

    sink = RefusingSink()
    handle = MidiHandle(default_mapping(), sink, port_name=PORT)
    with caplog.at_level(logging.WARNING):
        handle.receive(note(37, channel=10))
    handle.receive(cc(26, 0))
    assert "no current sound" in caplog.text and sink.calls == [("set", "pitch", PITCH_MIN)]


NO_MIDI = midi_system_problem()
needs_no_midi = pytest.mark.skipif(NO_MIDI is None, reason="this machine has a MIDI system")


@needs_no_midi
def test_open_midi_input_warns_once_and_returns_none(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="notono_live.midi"):
        handle = open_midi_input(None, tmp_path / "none.toml", RecordingSink())
    assert handle is None
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "running without midi" in warnings[0].getMessage().lower()
    assert NO_MIDI in warnings[0].getMessage()


@needs_no_midi
def test_open_midi_input_reports_a_bad_mapping_file_too(tmp_path, caplog):
    path = tmp_path / "bad.toml"
    path.write_text(HEADER + '[[binding]]\ntarget = "pitch"\ntype = "cc"\nnumber = -1\n')
    with caplog.at_level(logging.WARNING, logger="notono_live.midi"):
        assert open_midi_input("nanoKONTROL2", path, RecordingSink()) is None
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "'number'" in errors[0] and str(path) in errors[0]


@needs_no_midi
def test_rtmidi_failure_itself_becomes_midi_unavailable(monkeypatch):
    # Skip the up-front check so the real python-rtmidi open runs and fails on this machine.
    monkeypatch.setattr(ports, "midi_system_problem", lambda: None)
    with pytest.raises(MidiUnavailable, match="virtual MIDI input 'NOTONO Live'"):
        ports.open_input_port(None, "NOTONO Live", callback=None)
    with pytest.raises(MidiUnavailable, match="listing MIDI inputs failed"):
        ports.list_input_ports()


@needs_no_midi
def test_midi_list_says_why_there_are_no_ports(capsys):
    assert cli_main(["midi", "list"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("No MIDI inputs: ") and NO_MIDI in out
    assert cli_main(["midi", "learn", "undo", "--timeout", "0.1"]) == 1     # cannot open: says so, no hang


def test_midi_mapping_command(tmp_path, monkeypatch, capsys):
    path = tmp_path / "cfg" / "midi_mapping.toml"
    monkeypatch.setenv("NOTONO_MIDI_MAPPING", str(path))
    assert cli_main(["midi", "mapping"]) == 0
    assert f"{path} (not created yet" in capsys.readouterr().out
    assert cli_main(["midi", "mapping", "--write-default"]) == 0
    assert parse_mapping(path.read_text(), "written") == default_mapping()
    assert cli_main(["midi", "mapping", "--write-default"]) == 1            # no silent overwrite
    path.write_text(path.read_text().replace("number = 25", "number = 999"))
    capsys.readouterr()
    assert cli_main(["midi", "mapping"]) == 1
    assert "'number': 999" in capsys.readouterr().err


def test_sync_clamps_numbers_and_refuses_unknown_names():
    handle, sink = handle_for()
    handle.sync("temperature", 5.0)
    handle.sync("pitch", 100)
    assert handle.controller.values()["temperature"] == TEMPERATURE_RANGE[1]
    assert handle.controller.values()["pitch"] == PITCH_MAX
    with pytest.raises(ValueError, match="'middle' is not a layer"):
        handle.sync("layer", "middle")
    with pytest.raises(ValueError, match="'loudness' is not a control"):
        handle.sync("loudness", 1)
    assert sink.calls == []


def test_a_pickup_knob_lets_go_when_another_control_moves_its_value():
    mapping = mapping_of({"target": "temperature", "type": "cc", "number": 1},
                         {"target": "temperature", "type": "cc", "number": 2, "value": 0.5})
    handle, sink = handle_for(mapping)
    handle.receive(cc(1, 127))                  # value unknown: the knob takes it at once
    handle.receive(cc(2, 127))                  # a button sets 0.5
    handle.receive(cc(1, 126))                  # the knob is far from 0.5 now: it waits
    assert sink.take() == [("set", "temperature", 2.0), ("set", "temperature", 0.5)]
    handle.receive(cc(1, 10))                   # passed 0.5 on the way down: it acts again
    assert sink.take() == [("set", "temperature", round(0.1 + 1.9 * 10 / 127, 3))]
