"""`notono-live eval` end to end in --quick mode, and the measures it is built from."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch

from notono_live import constants

os.environ.setdefault("NOTONO_NO_PROGRESS", "1")


def test_spectral_distances_are_zero_for_identical_audio_and_grow_with_noise():
    from notono_live.evaluation.report import spectral_distances

    rng = np.random.default_rng(0)
    t = np.arange(constants.NUM_SAMPLES) / constants.SAMPLE_RATE
    tone = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    lsd, sc = spectral_distances(tone[None], tone[None])
    assert lsd[0] == pytest.approx(0.0, abs=1e-9) and sc[0] == pytest.approx(0.0, abs=1e-9)
    small = tone + 0.001 * rng.standard_normal(tone.shape).astype(np.float32)
    large = tone + 0.1 * rng.standard_normal(tone.shape).astype(np.float32)
    lsd, sc = spectral_distances(np.stack([tone, tone]), np.stack([small, large]))
    assert 0 < lsd[0] < lsd[1] and 0 < sc[0] < sc[1]


def test_family_classifier_recognises_real_notes(small_corpus, spectrogram_cache):
    from notono_live.evaluation.classifier import FamilyClassifier, family_features
    from notono_live.training.data import open_split

    train = open_split(small_corpus, "train", cache=spectrogram_cache)
    heldout = open_split(small_corpus, "heldout", cache=spectrogram_cache)
    features = family_features(torch.stack([train.image(i) for i in range(len(train))]))
    labels = torch.tensor([r.family_index for r in train.records])
    classifier = FamilyClassifier.fit(features, labels)
    assert classifier.accuracy(features, labels) > 0.9
    held = family_features(torch.stack([heldout.image(i) for i in range(len(heldout))]))
    accuracy = classifier.accuracy(held, torch.tensor([r.family_index for r in heldout.records]))
    assert accuracy > 2.0 / constants.NUM_FAMILIES     # well above chance (1/11) on unseen notes


def test_band_bias_reads_where_paired_spectra_differ():
    from notono_live.evaluation.classifier import band_bias, family_features

    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.uniform(-0.8, 0.8, (3, 2, 1024, 128)).astype(np.float32))
    brighter = images.clone()
    brighter[:, 0, 768:, :8] += 0.5        # the upper quarter of the Mel rows, louder in the attack (8 frames: 0.25 s)
    bias = band_bias(family_features(brighter), family_features(images))
    assert bias["attack"][:3] == [0.0, 0.0, 0.0] and bias["attack"][3] == pytest.approx(0.5, abs=1e-4)
    assert bias["mean"][3] == pytest.approx(0.5 * 8 / 128, abs=1e-4) and bias["mean"][:3] == [0.0, 0.0, 0.0]
    assert bias["release"] == [0.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="paired"):
        band_bias(family_features(brighter), family_features(images[:2]))


def test_eval_quick_writes_the_report(tmp_path, small_corpus, spectrogram_cache, capsys):
    from notono_live.cli import main
    from notono_live.models.bundle import DEFAULT_CANDIDATES, NotonoModel

    models = tmp_path / "models"
    NotonoModel.untrained(size="tiny", seed=0).save(models)
    out = tmp_path / "report"
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        status = main(["eval", "--models", str(models), "--corpus", str(small_corpus), "--out", str(out),
                       "--quick", "--cache", str(spectrogram_cache)])
    finally:
        torch.set_num_threads(previous)     # never leak the thread count into the rest of the session
    assert status == 0
    printed = capsys.readouterr().out
    assert "reconstruction LSD" in printed and "family classifier" in printed
    assert sum(line.startswith(("PASS ", "FAIL ")) for line in printed.splitlines()) == 5
    for name in ("report.md", "metrics.json", "reconstruction.png", "codemaps.png", "grid_generated.png",
                 "grid_real.png", "operations.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    wavs = sorted(p.name for p in (out / "operations").glob("*.wav"))
    assert wavs == ["keep_top_new_bottom.wav", "original.wav", "reconstruction.wav",
                    "regenerate_first_2s.wav", "regenerate_lowest_quarter.wav"]
    metrics = json.loads((out / "metrics.json").read_text())
    # the sampling settings are recorded, guidance resolved (an untrained model has no guidance: 1)
    assert metrics["sampling"]["guidance"] == 1.0 and metrics["sampling"]["top_p"] == 0.8
    assert metrics["sampling"]["phase_iterations"] == constants.PHASE_ITERATIONS
    # each generated sound is picked on pitch from the model's default number of draws, and the
    # priors' first draws are judged beside them
    assert metrics["sampling"]["candidates"] == metrics["grid"]["candidates"] == DEFAULT_CANDIDATES
    assert 0.0 <= metrics["grid"]["first_draw_on_real_cells"] <= 1.0
    reconstruction = metrics["reconstruction"]
    # an untrained VQ-VAE reconstructs far worse than the model-free Mel-IF round trip
    assert reconstruction["ceiling_lsd_db"] < reconstruction["lsd_db"]
    assert reconstruction["ceiling_spectral_convergence"] < reconstruction["spectral_convergence"]
    # the bottom prior alone: up to 2 (quick) of the notes whose original is on pitch get a new bottom
    assert reconstruction["new_bottom_notes"] == min(2, reconstruction["originals_passing_pitch"]) > 0
    assert 0 <= reconstruction["new_bottoms_keeping_pitch"] <= reconstruction["new_bottom_notes"]
    assert metrics["grid"]["generated_count"] > 0 and metrics["grid"]["real_count"] > 0
    # the family of the reconstructions: one figure over every note reconstructed
    family = metrics["family"]
    assert family["reconstructed_count"] == reconstruction["notes"] and 0.0 <= family["reconstructed"] <= 1.0
    assert family["new_bottom_count"] == reconstruction["new_bottom_notes"] and 0.0 <= family["new_bottom"] <= 1.0
    # and how those new bottoms' spectra differ from the same notes' reconstructions
    bias = family["new_bottom_bias"]
    assert list(bias) == ["mean", "std", "max", "attack", "release"]
    assert all(len(values) == 4 and all(math.isfinite(v) for v in values) for values in bias.values())
    assert any(v != 0.0 for v in bias["mean"])    # an untrained bottom prior's draws are not its notes
    assert 1.0 <= metrics["codebook"]["top_perplexity"] <= constants.CODEBOOK_SIZE
    assert [bar["name"] for bar in metrics["bars"]] == ["reconstruction keeps pitch",
                                                          "reconstruction spectral convergence",
                                                          "first-draw pitch accuracy / real",
                                                          "picked pitch accuracy / real",
                                                          "family accuracy generated / real"]
    bars = {bar["name"]: bar for bar in metrics["bars"]}
    # spectral convergence is a bar from above: an untrained VQ-VAE's is far over it
    sc = bars["reconstruction spectral convergence"]
    assert sc["at_most"] and sc["value"] == reconstruction["spectral_convergence"] > sc["threshold"]
    assert not sc["passed"] and "FAIL reconstruction spectral convergence" in printed and "(bar ≤ 0.30;" in printed
    assert {name: bar["threshold"] for name, bar in bars.items()} == {
        "reconstruction keeps pitch": 0.97, "reconstruction spectral convergence": 0.30,
        "first-draw pitch accuracy / real": 0.85, "picked pitch accuracy / real": 0.95,
        "family accuracy generated / real": 0.90}
    assert [name for name, bar in bars.items() if bar["at_most"]] == ["reconstruction spectral convergence"]
    text = (out / "report.md").read_text()
    assert "![original vs reconstruction](reconstruction.png)" in text and "quick mode" in text
    assert "new bottom map drawn under the note's own top map" in text
    assert "on the VQ-VAE's reconstructions of the" in text
    assert "| attack | " in text and "bands 49-64" in text
    assert f"best on pitch of {DEFAULT_CANDIDATES} draws" in text and "first draw" in text
    # --candidates 1: the priors' single draws, judged as they come

    def quick_eval(out, *options):
        torch.set_num_threads(2)
        try:
            assert main(["eval", "--models", str(models), "--corpus", str(small_corpus), "--out", str(out),
                         "--quick", "--cache", str(spectrogram_cache), *options]) == 0
        finally:
            torch.set_num_threads(previous)
        return json.loads((out / "metrics.json").read_text())

    single = tmp_path / "single"
    one = quick_eval(single, "--candidates", "1")
    assert one["sampling"]["candidates"] == one["grid"]["candidates"] == one["model"]["candidates"] == 1
    assert one["grid"]["first_draw_on_real_cells"] == one["grid"]["generated_on_real_cells"]
    # one draw per sound: nothing is picked, so there is no picked bar; the first draws are still judged
    assert [bar["name"] for bar in one["bars"]] == ["reconstruction keeps pitch", "reconstruction spectral convergence",
                                                    "first-draw pitch accuracy / real",
                                                    "family accuracy generated / real"]
    assert "the priors' single draw" in (single / "report.md").read_text()
    # picked on previews of the top maps: the first draws are not decoded whole, so their bar is
    # there but not measured (and fails), pointing at a --candidates 1 run
    previews = tmp_path / "previews"
    picked = quick_eval(previews, "--pick-on", "previews")
    assert picked["sampling"]["pick_on"] == picked["grid"]["pick_on"] == picked["model"]["pick_on"] == "previews"
    assert picked["grid"]["first_draw_on_real_cells"] is None   # JSON's NaN
    first = {bar["name"]: bar for bar in picked["bars"]}["first-draw pitch accuracy / real"]
    assert first["value"] is None and not first["passed"] and "run --candidates 1" in first["detail"]
    assert "previews of their top maps" in (previews / "report.md").read_text()
    assert "picked on previews of their top maps" in capsys.readouterr().out


def test_eval_refuses_a_missing_model_folder(tmp_path, small_corpus):
    from notono_live.cli import main

    with pytest.raises((FileNotFoundError, ValueError), match="no-model-here"):
        main(["eval", "--models", str(tmp_path / "no-model-here"), "--corpus", str(small_corpus),
              "--out", str(tmp_path / "r"), "--quick"])
    assert not (tmp_path / "r" / "report.md").exists()


def test_eval_refuses_a_negative_phase_iterations_or_no_candidates_before_writing(tmp_path, small_corpus):
    from notono_live.cli import main
    from notono_live.models.bundle import NotonoModel

    models = tmp_path / "models"
    NotonoModel.untrained(size="tiny", seed=0).save(models)
    with pytest.raises(ValueError, match="phase_iterations must be an integer >= 0, got -2"):
        main(["eval", "--models", str(models), "--corpus", str(small_corpus), "--out", str(tmp_path / "r"),
              "--quick", "--phase-iterations", "-2"])
    assert not (tmp_path / "r").exists()
    with pytest.raises(ValueError, match="candidates 0 must be a whole number in 1..8"):
        main(["eval", "--models", str(models), "--corpus", str(small_corpus), "--out", str(tmp_path / "r"),
              "--quick", "--candidates", "0"])
    assert not (tmp_path / "r").exists()
