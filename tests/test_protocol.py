"""The OSC address table: docs/osc.md agrees with it, and parsing enforces it."""
from __future__ import annotations

from pathlib import Path

import pytest

from notono_live.constants import FAMILIES
from notono_live.osc import protocol as p

DOCS = Path(__file__).resolve().parents[1] / "docs" / "osc.md"


def test_docs_table_is_generated_from_the_code_table():
    text = DOCS.read_text(encoding="utf-8")
    assert p.generated_section(text) == p.render_markdown(), (
        "docs/osc.md is out of date: regenerate its table with `python -m notono_live.osc.protocol --write docs/osc.md`")


def test_every_address_is_documented_once_under_the_prefix():
    text = DOCS.read_text(encoding="utf-8")
    for table in (p.REQUESTS, p.REPLIES):
        for address, msg in table.items():
            assert address.startswith("/notono/")
            assert f"### `{address}`" in text
            for arg in msg.args + msg.repeated:
                assert arg.type in (int, float, str)
    for msg in p.REQUESTS.values():
        assert msg.final in p.REPLIES
        assert all(reply in p.REPLIES for reply in msg.replies)
        names = [a.name for a in msg.args + msg.repeated]
        assert len(names) == len(set(names)), msg.address
        # defaults only at the end: a required argument never follows an optional one
        seen_optional = False
        for arg in msg.args:
            assert not (seen_optional and arg.required), msg.address
            seen_optional |= not arg.required


def test_issue_operations_are_covered():
    for address in ["/notono/hello", "/notono/ping", "/notono/generate", "/notono/encode",
                    "/notono/inpaint/region", "/notono/inpaint/cells", "/notono/bottom/regenerate",
                    "/notono/codemap/set", "/notono/codemap/get", "/notono/region/erase",
                    "/notono/region/randomize", "/notono/sound/undo", "/notono/sound/redo",
                    "/notono/sound/list", "/notono/sound/versions", "/notono/pack", "/notono/output/folder",
                    "/notono/preview", "/notono/midi/learn", "/notono/midi/cancel", "/notono/midi/mappings"]:
        assert address in p.REQUESTS
    assert "/notono/error" in p.REPLIES and "/notono/progress" in p.REPLIES


def test_parse_fills_defaults_and_accepts_int_for_float():
    req = p.parse_request("/notono/generate", [7, 60, "organ", 1])
    assert req.request_id == 7
    assert req.values == {"pitch": 60, "family": "organ", "temperature": 1.0, "top_p": 0.8,
                          "variations": 1, "seed": -1, "top_k": 0, "guidance": -1.0}
    assert isinstance(req.values["temperature"], float)


def test_parse_repeated_groups():
    req = p.parse_request("/notono/codemap/set", [1, 3, "top", 0, 1, 500, 2, 3, 4])
    assert req.groups == [(0, 1, 500), (2, 3, 4)]
    with pytest.raises(p.ProtocolError) as info:
        p.parse_request("/notono/codemap/set", [1, 3, "top", 0, 1])
    assert info.value.code == "bad_request" and "whole groups of 3" in info.value.message


@pytest.mark.parametrize("address,args,code,needle", [
    ("/notono/nope", [1], "unknown_address", "/notono/nope"),
    ("/notono/generate", [], "bad_request", "request_id"),
    ("/notono/generate", ["x", 60, "organ"], "bad_request", "request_id"),
    ("/notono/generate", [-5, 60, "organ"], "bad_request", ">= 0"),
    ("/notono/generate", [1, 60], "bad_request", "family"),
    ("/notono/generate", [1, "60", "organ"], "bad_request", "pitch"),
    ("/notono/generate", [1, 60.5, "organ"], "bad_request", "pitch"),
    ("/notono/generate", [1, True, "organ"], "bad_request", "pitch"),
    ("/notono/ping", [1, 2], "bad_request", "extra"),
    ("/notono/generate", [1, 60, "organ", float("nan")], "bad_value", "NaN"),
    ("/notono/generate", [2 ** 31, 60, "organ"], "bad_request", "32-bit"),         # an OSC int64 id
    ("/notono/nope", [2 ** 40], "unknown_address", "/notono/nope"),
    ("/notono/nope", [-2 ** 40], "unknown_address", "/notono/nope"),
    ("/notono/generate", [1, 60, "organ", 1.0, 0.8, 1, 2 ** 40], "bad_value", "32-bit"),
    ("/notono/generate", [1, 60, "organ", 1.0, 0.8, 1, -2 ** 31 - 1], "bad_value", "32-bit"),
])
def test_parse_errors_name_what_is_wrong(address, args, code, needle):
    with pytest.raises(p.ProtocolError) as info:
        p.parse_request(address, args)
    assert info.value.code == code
    assert needle in info.value.message
    if args and isinstance(args[0], int) and not isinstance(args[0], bool) and 0 <= args[0] <= p.INT32_MAX:
        assert info.value.request_id == args[0]
    else:   # an id that is not a usable int32 is never echoed: the reply could not carry it
        assert info.value.request_id == p.DAEMON_REQUEST_ID


def test_family_doc_lists_every_family():
    doc = p.REQUESTS["/notono/generate"].args[1].doc
    assert all(f in doc for f in FAMILIES)


def test_numpy_scalars_are_cast():
    np = pytest.importorskip("numpy")
    assert type(p.to_osc_value(np.int64(3))) is int
    assert type(p.to_osc_value(np.float32(0.5))) is float
    assert p.to_osc_value(Path("/a b")) == "/a b"
