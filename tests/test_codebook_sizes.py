"""A VQ-VAE whose bottom codebook is smaller than its top one, end to end: the VQ-VAE trains with
it, the priors trained on its codes draw from its vocabularies, the exported model loads and
samples codes its decoder can read, and a model or an edit that disagrees is refused."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from notono_live import constants
from notono_live.codemaps import Codemaps
from notono_live.models.priors import BottomPrior, PriorConfig, TopPrior
from notono_live.models.vqvae import VQVAE2, VQVAE2Config
from notono_live.training import common

BOTTOM_CODES = 16


def test_the_bottom_codebook_takes_its_own_size_and_round_trips():
    config = dataclasses.replace(VQVAE2Config.from_size("tiny"), bottom_codebook_size=BOTTOM_CODES)
    model = VQVAE2(config).train()
    assert config.codebook_sizes == (512, BOTTOM_CODES)
    assert model.quantize_top.embed.shape[0] == 512 and model.quantize_bottom.embed.shape[0] == BOTTOM_CODES
    torch.manual_seed(0)
    output = model(torch.randn(2, 2, 1024, 128))
    assert int(output.bottom_codes.max()) < BOTTOM_CODES
    assert VQVAE2Config.from_dict(config.to_dict()) == config
    # a config without the option writes what it wrote before the option existed
    assert "bottom_codebook_size" not in VQVAE2Config.from_size("tiny").to_dict()
    assert VQVAE2Config.from_size("tiny").codebook_sizes == (512, 512)
    bottom = PriorConfig.from_size("tiny")
    assert "top_codebook_size" not in bottom.to_dict() and bottom.context_codebook_size == 512


@pytest.fixture(scope="module")
def small_bottom_runs(tmp_path_factory, small_corpus, spectrogram_cache):
    from notono_live.cli import main
    from notono_live.training.priors import PriorsTrainConfig, train_priors
    from notono_live.training.vqvae import VQVAETrainConfig, train_vqvae

    runs = tmp_path_factory.mktemp("small_bottom")
    assert main(["train", "vqvae", "--corpus", str(small_corpus), "--out", str(runs / "vqvae"), "--size", "tiny",
                 "--max-steps", "3", "--batch-size", "4", "--lr", "3e-3", "--cache", str(spectrogram_cache),
                 "--validation-notes", "2", "--bottom-codebook-size", str(BOTTOM_CODES)]) == 0
    # resuming with another size keeps the run's own codebook
    train_vqvae(VQVAETrainConfig(corpus=small_corpus, out=runs / "vqvae", size="tiny", max_steps=4, batch_size=4,
                                 cache=spectrogram_cache, validation_notes=2))
    result = train_priors(PriorsTrainConfig(corpus=small_corpus, vqvae=runs / "vqvae", out=runs / "priors",
                                            size="tiny", max_steps=2, batch_size=8, lr=3e-3,
                                            cache=spectrogram_cache, validation_maps=8))
    return runs, result


def test_priors_learn_the_vqvae_vocabularies_and_the_model_draws_from_them(small_bottom_runs, tmp_path):
    from notono_live.models.bundle import NotonoModel
    from notono_live.training.export import export_model
    from notono_live.training.priors import CODES_FILE, load_codes

    runs, result = small_bottom_runs
    sets, header = load_codes(runs / "priors" / CODES_FILE)
    assert header["codebook_sizes"] == [512, BOTTOM_CODES]
    assert int(sets["train"].bottom.max()) < BOTTOM_CODES
    top, bottom = result.models["top_prior"], result.models["bottom_prior"]
    assert top.head.out_features == 512
    assert bottom.head.out_features == BOTTOM_CODES and bottom.decoder_token.num_embeddings == BOTTOM_CODES
    assert bottom.encoder_token.num_embeddings == 512   # it reads the whole top vocabulary
    assert np.isfinite(result.summary.last_losses["loss/bottom"])

    model = NotonoModel.load(export_model(runs / "vqvae", runs / "priors", tmp_path / "model"))
    assert model.codebook_sizes == (512, BOTTOM_CODES)
    maps = model.generate(48, "organ", n=2, seed=3)
    assert all(int(m.bottom.max()) < BOTTOM_CODES for m in maps)
    assert np.isfinite(model.decode(maps)).all()
    # a map written by a model with 512 bottom codes is refused, naming the layer, not crashed on
    foreign = Codemaps(maps[0].top, np.full(constants.BOTTOM_SHAPE, 300))
    with pytest.raises(ValueError, match="bottom code 300 is outside this model's bottom codebook"):
        model.decode([foreign])
    # and so is inpainting it, whose kept cells the priors would read
    mask = np.zeros(constants.TOP_SHAPE, dtype=bool)
    mask[:, 0] = True
    for edit in (lambda: model.inpaint(foreign, "top", mask, 48, "organ", seed=1),
                 lambda: model.regenerate_bottom_sounds(foreign, 48, "organ", seed=1, candidates=1)):
        with pytest.raises(ValueError, match="bottom code 300 is outside this model's bottom codebook"):
            edit()


def test_an_edit_outside_the_model_codebook_is_refused_and_random_codes_stay_inside(small_bottom_runs, tmp_path):
    from notono_live.engine.engine import Engine
    from notono_live.engine.store import SoundStore
    from notono_live.models.bundle import NotonoModel
    from notono_live.training.export import export_model

    runs, _ = small_bottom_runs
    model = NotonoModel.load(export_model(runs / "vqvae", runs / "priors", tmp_path / "model"))
    engine = Engine(model, SoundStore(tmp_path / "session"), tmp_path / "samples")
    first = engine.generate(48, "organ", seed=1)[0]
    with pytest.raises(ValueError, match=f"outside 0..{BOTTOM_CODES - 1}"):
        engine.set_cells(first.sound, "bottom", [(0, 0, BOTTOM_CODES)])
    assert engine.store.get(first.sound).version == first.version   # nothing was added
    engine.set_cells(first.sound, "top", [(0, 0, 300)])              # the top keeps 512 codes
    randomized = engine.randomize_region(first.sound, "bottom", 0, 0, 64, 8, seed=5)
    assert int(randomized.codemaps.bottom.max()) < BOTTOM_CODES


def test_priors_of_other_codebooks_are_refused_by_training_and_by_loading(small_bottom_runs, tmp_path,
                                                                           small_corpus, spectrogram_cache):
    import shutil

    from notono_live.models.bundle import NotonoModel, vocabulary_mismatch
    from notono_live.models.checkpoint import CheckpointError
    from notono_live.training import modelio
    from notono_live.training.export import export_model
    from notono_live.training.priors import CODES_FILE, PriorsTrainConfig, train_priors

    runs, _ = small_bottom_runs
    vqvae = VQVAE2(dataclasses.replace(VQVAE2Config.from_size("tiny"), bottom_codebook_size=BOTTOM_CODES))
    tiny = PriorConfig.from_size("tiny")
    message = vocabulary_mismatch(vqvae, TopPrior(tiny), BottomPrior(tiny))
    assert "the bottom prior draws 512 codes" in message and f"{BOTTOM_CODES} (bottom)" in message
    assert vocabulary_mismatch(vqvae, TopPrior(tiny), BottomPrior(
        dataclasses.replace(tiny, codebook_size=BOTTOM_CODES, top_codebook_size=512))) == ""

    # priors of 512-code maps, started on the small bottom's codes with --init-from
    other = tmp_path / "other"
    shutil.copytree(runs / "priors" / common.CHECKPOINT_DIR, other / common.CHECKPOINT_DIR)
    (tmp_path / "run").mkdir()
    shutil.copy(runs / "priors" / CODES_FILE, tmp_path / "run" / CODES_FILE)
    modelio.save_prior(other / common.CHECKPOINT_DIR, BottomPrior(tiny), "bottom", {}, size="tiny", codes={})
    with pytest.raises(ValueError, match="bottom prior reads codebooks of 512/512 codes"):
        train_priors(PriorsTrainConfig(corpus=small_corpus, vqvae=runs / "vqvae", out=tmp_path / "run",
                                       size="tiny", which="bottom", max_steps=1, batch_size=8,
                                       cache=spectrogram_cache, init_from=other))

    # a model folder whose bottom prior was trained on 512-code maps does not load
    folder = export_model(runs / "vqvae", runs / "priors", tmp_path / "model")
    modelio.save_prior(folder, BottomPrior(tiny), "bottom", {}, size="tiny", codes={})
    with pytest.raises(CheckpointError, match="the bottom prior draws 512 codes"):
        NotonoModel.load(folder)
