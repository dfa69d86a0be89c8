"""Bottom dropout: during training, some notes are decoded from their top codes alone, so the top
codes learn to carry more of the sound. The codes and the codebooks are untouched by it."""
from __future__ import annotations

import json

import pytest
import torch

from notono_live.models.vqvae import VQVAE2, VQVAE2Config


def test_a_dropped_note_is_decoded_from_its_top_codes_alone_and_the_others_as_before():
    torch.manual_seed(0)
    model = VQVAE2(VQVAE2Config.from_size("tiny")).eval()
    x = torch.randn(3, 2, 1024, 128)
    with torch.no_grad():
        plain = model(x)
        dropped = model(x, torch.tensor([True, False, False]))
        top_alone = model.decode_top(plain.top_codes)
        both = model.decode_codes(plain.top_codes, plain.bottom_codes)
    assert torch.equal(dropped.top_codes, plain.top_codes)
    assert torch.equal(dropped.bottom_codes, plain.bottom_codes)
    assert torch.allclose(dropped.commitment_loss, plain.commitment_loss)
    assert torch.allclose(dropped.reconstruction[1:], plain.reconstruction[1:])
    assert torch.allclose(dropped.reconstruction[0], top_alone[0], atol=1e-5)
    assert not torch.equal(dropped.reconstruction[0], plain.reconstruction[0])
    assert torch.allclose(both, plain.reconstruction, atol=1e-5)
    with pytest.raises(ValueError, match="codes must be top"):
        model.decode_top(plain.bottom_codes)
    with pytest.raises(ValueError, match=r"drop_bottom must be one flag per note, \[3\]"):
        model(x, torch.tensor([True, False]))


def test_training_with_bottom_dropout_drops_notes_records_the_share_and_refuses_one(
        tmp_path, small_corpus, spectrogram_cache, capsys, monkeypatch):
    from notono_live.cli import main
    from notono_live.training.vqvae import read_run_config

    flags = []   # what each training step's forward pass was given (the real forward runs)
    forward = VQVAE2.forward

    def recording(self, x, drop_bottom=None):
        if self.training:
            flags.append(drop_bottom)
        return forward(self, x, drop_bottom)

    monkeypatch.setattr(VQVAE2, "forward", recording)
    run = tmp_path / "vqvae"
    args = ["train", "vqvae", "--corpus", str(small_corpus), "--out", str(run), "--size", "tiny",
            "--max-steps", "3", "--batch-size", "4", "--cache", str(spectrogram_cache),
            "--validation-notes", "2"]
    assert main(args + ["--bottom-dropout", "0.5"]) == 0
    assert len(flags) == 3 and all(f is not None and f.shape == (4,) for f in flags)
    dropped = torch.cat(flags)
    assert 0 < int(dropped.sum()) < len(dropped)   # some notes dropped, not all (seeded)
    assert read_run_config(run)["config"]["bottom_dropout"] == 0.5
    # the checkpoint's VQ-VAE carries the share, which makes a model built on it pick on previews;
    # export reads it from the training state beside a checkpoint written without it
    from notono_live.training.export import _bottom_dropout
    metadata = json.loads((run / "checkpoint" / "vqvae.json").read_text())["metadata"]
    assert metadata["bottom_dropout"] == 0.5
    assert _bottom_dropout({}, run / "checkpoint") == 0.5 and _bottom_dropout({}, tmp_path) == 0.0
    validation = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()
                  if '"validation"' in line]
    assert validation and all(0 < v["top_alone_spectral_convergence"] for v in validation)
    with pytest.raises(SystemExit):
        main(args + ["--bottom-dropout", "1"])
    assert "--bottom-dropout: must be from 0 up to (not including) 1, got 1.0" in capsys.readouterr().err
