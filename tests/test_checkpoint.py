"""Checkpoints: a saved model loads back identical; a damaged or mismatched one is refused by name."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from notono_live.models.checkpoint import (CheckpointError, component_paths, load_model, save_model)
from notono_live.models.priors import BottomPrior, PriorConfig, TopPrior
from notono_live.models.vqvae import VQVAE2, VQVAE2Config


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _trained_tiny_vqvae():
    torch.manual_seed(0)
    model = VQVAE2(VQVAE2Config.from_size("tiny"))
    model(torch.randn(2, 2, 1024, 128))      # one training pass: EMA buffers hold real statistics
    return model.eval()


def test_vqvae_round_trip_is_exact_in_float32(tmp_path):
    model = _trained_tiny_vqvae()
    save_model(tmp_path, "vqvae", model, {"normalization_stats": {"a": 1}})
    loaded, checkpoint = load_model(tmp_path, "vqvae", "vqvae")
    assert checkpoint.metadata == {"normalization_stats": {"a": 1}}
    x = torch.randn(1, 2, 1024, 128)
    with torch.no_grad():
        assert torch.equal(model(x).reconstruction, loaded(x).reconstruction)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("cls", [TopPrior, BottomPrior])
def test_prior_round_trip_is_exact_and_fp16_is_close(tmp_path, cls):
    torch.manual_seed(0)
    model = cls(PriorConfig.from_size("tiny")).eval()
    kind = "top_prior" if cls is TopPrior else "bottom_prior"
    save_model(tmp_path / "fp32", kind, model)
    save_model(tmp_path / "fp16", kind, model, dtype=torch.float16)
    tokens = torch.randint(0, 512, (2, 128))
    pitch, family = torch.tensor([0, 30]), torch.tensor([2, 9])

    def logits(m):
        with torch.no_grad():
            if cls is TopPrior:
                return m(tokens, torch.rand(2, 128) < 0.5, pitch, family)
            return m(torch.randint(0, 512, (2, 512), generator=torch.Generator().manual_seed(0)),
                     tokens, pitch, family)

    torch.manual_seed(1)
    expected = logits(model)
    for folder, exact in (("fp32", True), ("fp16", False)):
        loaded, _ = load_model(tmp_path / folder, kind, kind)
        assert all(p.dtype == torch.float32 for p in loaded.parameters())
        torch.manual_seed(1)
        got = logits(loaded)
        assert torch.equal(got, expected) if exact else torch.allclose(got, expected, atol=0.05)
    fp32_size = component_paths(tmp_path / "fp32", kind)[1].stat().st_size
    fp16_size = component_paths(tmp_path / "fp16", kind)[1].stat().st_size
    assert fp16_size < 0.6 * fp32_size


@pytest.fixture()
def saved(tmp_path):
    save_model(tmp_path, "vqvae", _trained_tiny_vqvae())
    return tmp_path


def test_missing_files_are_named(saved):
    json_path, weights_path = component_paths(saved, "vqvae")
    weights_path.unlink()
    with pytest.raises(FileNotFoundError, match="vqvae.safetensors"):
        load_model(saved, "vqvae", "vqvae")
    json_path.unlink()
    with pytest.raises(FileNotFoundError, match="vqvae.json"):
        load_model(saved, "vqvae", "vqvae")


@pytest.mark.parametrize("damage", ["truncate", "random", "flip"])
def test_corrupt_weights_are_refused_by_name(saved, damage):
    json_path, weights_path = component_paths(saved, "vqvae")
    data = weights_path.read_bytes()
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "random":
        data = np.random.default_rng(0).integers(0, 256, len(data), dtype=np.uint8).tobytes()
    else:
        data = data[:-10] + bytes(b ^ 0xFF for b in data[-10:])
    weights_path.write_bytes(data)
    with pytest.raises(CheckpointError, match=r"vqvae\.safetensors.*(corrupt|truncated)"):
        load_model(saved, "vqvae", "vqvae")


def test_unreadable_safetensors_without_a_digest_is_refused(saved):
    json_path, weights_path = component_paths(saved, "vqvae")
    document = json.loads(json_path.read_text())
    del document["weights_sha256"]
    json_path.write_text(json.dumps(document))
    weights_path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    with pytest.raises(CheckpointError, match=r"vqvae\.safetensors: not a readable safetensors"):
        load_model(saved, "vqvae", "vqvae")


def _edit_json(saved, edit):
    json_path, _ = component_paths(saved, "vqvae")
    document = json.loads(json_path.read_text())
    edit(document)
    json_path.write_text(json.dumps(document))


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["config"].update(VQVAE2Config.from_size("lite").to_dict()),
     r"config in vqvae.json.*does not match the weights"),
    (lambda d: d["config"].update(channels=[4, 8, 8, 32]), r"has shape \[16\] but the model built .* expects \[32\]"),
    (lambda d: d["config"].update(channels=[4, 8, 8]), "invalid vqvae config"),
    (lambda d: d["config"].update(depth=3), "unknown VQ-VAE config keys: depth"),
    (lambda d: d.update(version=99), "version 99 is not supported"),
    (lambda d: d.update(format="something-else"), "not a NOTONO checkpoint"),
    (lambda d: d.update(component="top_prior"), "holds a 'top_prior' component"),
    (lambda d: d["tensors"].update(extra=[1]), "missing tensors .*extra"),
])
def test_mismatched_descriptions_are_refused_by_name(saved, edit, message):
    _edit_json(saved, edit)
    with pytest.raises(CheckpointError, match=message) as error:
        load_model(saved, "vqvae", "vqvae")
    assert "vqvae.json" in str(error.value) or "vqvae.safetensors" in str(error.value)


def test_invalid_json_is_refused_by_name(saved):
    component_paths(saved, "vqvae")[0].write_text("{ not json")
    with pytest.raises(CheckpointError, match=r"vqvae\.json: not valid JSON"):
        load_model(saved, "vqvae", "vqvae")


def test_weights_with_unexpected_tensors_are_refused(saved, tmp_path):
    from notono_live.models.checkpoint import save_component
    model = _trained_tiny_vqvae()
    state = dict(model.state_dict()) | {"stowaway": torch.zeros(3)}
    save_component(saved, "vqvae", state, "vqvae", model.config.to_dict())
    with pytest.raises(CheckpointError, match="unexpected tensors .*stowaway"):
        load_model(saved, "vqvae", "vqvae")


# --- the whole model folder ----------------------------------------------------------------------

def test_model_folder_round_trip_and_refusals(tmp_path, monkeypatch):
    from notono_live.models.bundle import NotonoModel

    model = NotonoModel.untrained("tiny", seed=3)
    model.save(tmp_path / "m", dtype=torch.float32)
    monkeypatch.setenv("NOTONO_MODELS", str(tmp_path / "m"))
    loaded = NotonoModel.load(None)
    assert loaded.stats == model.stats
    maps = model.generate(60, "reed", n=2, seed=4)
    assert loaded.generate(60, "reed", n=2, seed=4) == maps
    assert np.array_equal(loaded.decode(maps), model.decode(maps))

    with pytest.raises(FileNotFoundError, match="nowhere"):
        NotonoModel.load(tmp_path / "nowhere")
    (tmp_path / "m" / "top_prior.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="top_prior.safetensors"):
        NotonoModel.load(tmp_path / "m")
    model.save(tmp_path / "m", dtype=torch.float32)
    _edit = json.loads((tmp_path / "m" / "bottom_prior.json").read_text())
    _edit["metadata"]["label_encoders"]["family"] = ["kazoo"]
    (tmp_path / "m" / "bottom_prior.json").write_text(json.dumps(_edit))
    with pytest.raises(CheckpointError, match="bottom_prior.json: family list"):
        NotonoModel.load(tmp_path / "m")
    del _edit["metadata"]["label_encoders"]
    (tmp_path / "m" / "bottom_prior.json").write_text(json.dumps(_edit))
    with pytest.raises(CheckpointError, match="bottom_prior.json: no label_encoders"):
        NotonoModel.load(tmp_path / "m")


def _reordered_header(data: bytes) -> bytes:
    """The same safetensors contents with the header's keys written in reverse order."""
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    header = {key: header[key] for key in reversed(list(header))}
    header["__metadata__"] = {k: v for k, v in reversed(list(header["__metadata__"].items()))}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + size:]


def test_saving_unchanged_weights_keeps_the_file_and_changed_ones_replace_it(tmp_path):
    model = _trained_tiny_vqvae()
    _, weights = save_model(tmp_path, "vqvae", model, dtype=torch.float16)
    reordered = _reordered_header(weights.read_bytes())
    assert reordered != weights.read_bytes()
    weights.write_bytes(reordered)   # what another process's writer may produce for the same tensors

    save_model(tmp_path, "vqvae", model, dtype=torch.float16)
    assert weights.read_bytes() == reordered
    document = json.loads(component_paths(tmp_path, "vqvae")[0].read_text())
    assert document["weights_sha256"] == hashlib.sha256(reordered).hexdigest()
    load_model(tmp_path, "vqvae", "vqvae")   # the digest check passes on the kept file

    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    save_model(tmp_path, "vqvae", model, dtype=torch.float16)
    assert weights.read_bytes() != reordered
    reloaded, _ = load_model(tmp_path, "vqvae", "vqvae")
    name = next(iter(dict(model.named_parameters())))
    assert torch.equal(reloaded.state_dict()[name], model.state_dict()[name].half().float())
