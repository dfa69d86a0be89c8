"""Training loops on a real rendered corpus: the loss falls, runs resume where they stopped, export loads.

Tiny model configs (the models' `tiny` size) keep every run to a few seconds on 2 CPU cores.
"""
from __future__ import annotations

import json
import math
import os
import signal

import numpy as np
import pytest
import torch

from notono_live import constants
from notono_live.training import common

os.environ.setdefault("NOTONO_NO_PROGRESS", "1")


@pytest.fixture(scope="module", autouse=True)
def _threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


# --- common.py pieces ---------------------------------------------------------------------

def test_resumable_sampler_shards_and_resumes():
    full = [list(common.ResumableSampler(10, 2, rank, 2, seed=3)) for rank in range(2)]
    assert sorted(full[0] + full[1]) == list(range(10))         # ranks split one epoch between them
    assert full[0] != list(range(0, 10, 2))                       # shuffled
    sampler = common.ResumableSampler(10, 2, 0, 2, seed=3)
    sampler.set_epoch(0, start_batch=1)
    assert list(sampler) == full[0][2:]                           # resuming skips the batches already seen
    sampler.set_epoch(1)
    assert list(sampler) != full[0]                               # a new epoch has a new order


def test_training_state_round_trip_and_refusals(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    path = tmp_path / common.TRAINING_STATE_FILE
    common.save_training_state(path, common.TrainingState(step=7, epoch=1, batch_in_epoch=3, notes_seen=28,
                                                          train_seconds=1.5, extra={"k": 1}), {"m": optimizer})
    fresh = torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), lr=1e-3)
    state = common.load_training_state(path, {"m": fresh})
    assert (state.step, state.epoch, state.batch_in_epoch, state.extra) == (7, 1, 3, {"k": 1})
    for a, b in zip(optimizer.state_dict()["state"].values(), fresh.state_dict()["state"].values()):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["step"], b["step"])

    mismatched = torch.optim.Adam(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 2)).parameters())
    with pytest.raises(ValueError, match="does not match"):
        common.load_training_state(path, {"m": mismatched})
    with pytest.raises(ValueError, match="no state for optimiser"):
        common.load_training_state(path, {"other": fresh})
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="damaged.safetensors"):
        common.load_training_state(damaged, {"m": fresh})


def test_stop_control_obeys_sigterm_and_budget():
    context = common.DistributedContext()
    control = common.StopControl(context, minutes=None, checkpoint_minutes=60)
    control.install_signal_handlers()
    try:
        assert control.poll() == (False, False)
        os.kill(os.getpid(), signal.SIGTERM)          # a real signal, as a cluster scheduler sends it
        assert control.poll() == (True, True)
        assert control.signalled == "SIGTERM"
    finally:
        control.restore_signal_handlers()
    assert common.StopControl(context, minutes=0.0).poll() == (True, True)
    assert common.StopControl(context, minutes=None, checkpoint_minutes=0.0).poll() == (True, False)


def test_checkpoint_dir_swap_keeps_a_complete_checkpoint(tmp_path):
    def writer(text):
        def write(folder):
            (folder / common.TRAINING_STATE_FILE).write_text(text)
        return write
    common.write_checkpoint_dir(tmp_path, writer("one"))
    common.write_checkpoint_dir(tmp_path, writer("two"))
    found = common.find_checkpoint_dir(tmp_path)
    assert (found / common.TRAINING_STATE_FILE).read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == [common.CHECKPOINT_DIR]

    def crash(folder):
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        common.write_checkpoint_dir(tmp_path, crash)
    assert (common.find_checkpoint_dir(tmp_path) / common.TRAINING_STATE_FILE).read_text() == "two"


# --- the VQ-VAE loop ------------------------------------------------------------------------

def _reconstruction_mse(run_dir, corpus, cache, count=8):
    from notono_live.training import modelio
    from notono_live.training.data import open_split

    model, stats = modelio.load_vqvae(run_dir / common.CHECKPOINT_DIR, torch.device("cpu"))
    model.eval()
    dataset = open_split(corpus, "train", constants.DEFAULT_SPLIT_SEED, cache)
    x = stats.normalize(torch.stack([dataset[i]["image"] for i in range(count)]))
    with torch.no_grad():
        return float(torch.nn.functional.mse_loss(model(x).reconstruction, x))


@pytest.fixture(scope="module")
def vqvae_run(tmp_path_factory, small_corpus, spectrogram_cache):
    from notono_live.training.vqvae import VQVAETrainConfig, train_vqvae

    run_dir = tmp_path_factory.mktemp("runs") / "vqvae"
    config = VQVAETrainConfig(corpus=small_corpus, out=run_dir, size="tiny", max_steps=2, batch_size=4, lr=3e-3,
                              cache=spectrogram_cache, validation_notes=2)
    first = train_vqvae(config)
    mse_first = _reconstruction_mse(run_dir, small_corpus, spectrogram_cache)
    second = train_vqvae(VQVAETrainConfig(**{**config.__dict__, "max_steps": 14}))
    mse_second = _reconstruction_mse(run_dir, small_corpus, spectrogram_cache)
    return run_dir, first, second, mse_first, mse_second


def test_vqvae_loss_falls(vqvae_run):
    _, first, second, mse_first, mse_second = vqvae_run
    assert mse_second < 0.8 * mse_first, (mse_first, mse_second)
    assert second.summary.last_losses["codebook/bottom_perplexity"] >= 1.0


def test_vqvae_resumes_at_saved_step(vqvae_run, small_corpus, spectrogram_cache):
    run_dir, first, second, _, _ = vqvae_run
    assert first.summary.step == 2 and first.summary.stopped_because == "max steps"
    assert second.summary.step == 14 and second.summary.notes_seen == 14 * 4
    # Adam's own step counter went on from 2: the optimiser state was restored, not restarted
    from safetensors import safe_open
    with safe_open(str(run_dir / common.CHECKPOINT_DIR / common.TRAINING_STATE_FILE), "pt") as handle:
        assert float(handle.get_tensor("optim.vqvae.state.0.step")) == 14
    events = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [2, 14]
    # the held-out curve: image MSE, the decoded audio's SC and LSD as eval measures them, perplexities
    validations = [e for e in events if e["event"] == "validation"]
    assert [e["step"] for e in validations] == [2, 14] and all(e["notes"] == 2 for e in validations)
    for e in validations:
        assert 0 < e["mse"] and 0 < e["spectral_convergence"] < 10 and 0 < e["lsd_db"] < 100
        assert 1 <= e["top_perplexity"] <= 512 and 1 <= e["bottom_perplexity"] <= 512
        # a 4 s note ends in silence: some cells are wholly at the threshold floor
        assert 0 < e["bottom_silent_cells"] < 1 and 0 < e["bottom_silence_code_share"] <= 1
    assert any(p.name.startswith("events") for p in (run_dir / "tensorboard").iterdir())
    # a third call with the same limit has nothing left to do and changes nothing
    from notono_live.training.vqvae import VQVAETrainConfig, train_vqvae
    again = train_vqvae(VQVAETrainConfig(corpus=small_corpus, out=run_dir, size="tiny", max_steps=14,
                                         cache=spectrogram_cache))
    assert again.summary.step == 14 and again.summary.stopped_because == "already done"


# --- the priors loop ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def priors_run(tmp_path_factory, small_corpus, spectrogram_cache, vqvae_run):
    from notono_live.training.priors import PriorsTrainConfig, train_priors

    run_dir = tmp_path_factory.mktemp("runs") / "priors"
    config = PriorsTrainConfig(corpus=small_corpus, vqvae=vqvae_run[0], out=run_dir, size="tiny", max_steps=1,
                               batch_size=8, lr=3e-3, cache=spectrogram_cache, validation_maps=8)
    first = train_priors(config)
    second = train_priors(PriorsTrainConfig(**{**config.__dict__, "max_steps": 12}))
    return run_dir, first, second


def test_priors_codes_file(priors_run, small_corpus):
    from notono_live.data.nsynth import NSynthDataset
    from notono_live.training.priors import CODES_FILE, load_codes

    run_dir, _, _ = priors_run
    sets, header = load_codes(run_dir / CODES_FILE)
    train = NSynthDataset(small_corpus, split="train")
    assert len(sets["train"]) == len(train) and len(sets["heldout"]) > 0
    assert tuple(sets["train"].top.shape[1:]) == constants.TOP_SHAPE
    assert tuple(sets["train"].bottom.shape[1:]) == constants.BOTTOM_SHAPE
    assert sets["train"].pitch.tolist() == [r.pitch for r in train.records]
    assert header["names"]["train"] == [r.note for r in train.records]


def test_priors_loss_falls_and_resume(priors_run):
    _, first, second = priors_run
    assert first.summary.step == 1 and second.summary.step == 12
    for name in ("loss/top", "loss/bottom"):
        assert second.summary.last_losses[name] < first.summary.last_losses[name] - 0.5, (name, first, second)


def test_priors_train_under_bf16_autocast_and_keep_fp32_weights(tmp_path, small_corpus, spectrogram_cache,
                                                                 vqvae_run):
    from safetensors import safe_open

    from notono_live.training.priors import PriorsTrainConfig, train_priors

    config = PriorsTrainConfig(corpus=small_corpus, vqvae=vqvae_run[0], out=tmp_path / "bf16", size="tiny",
                               which="bottom", max_steps=1, batch_size=8, lr=3e-3, cache=spectrogram_cache,
                               validation_maps=8, precision="bf16")
    first = train_priors(config)
    second = train_priors(PriorsTrainConfig(**{**config.__dict__, "max_steps": 12}))
    assert second.summary.last_losses["loss/bottom"] < first.summary.last_losses["loss/bottom"] - 0.5
    weights = next((tmp_path / "bf16" / common.CHECKPOINT_DIR).glob("bottom*.safetensors"))
    with safe_open(str(weights), "pt") as handle:
        assert {handle.get_tensor(k).dtype for k in handle.keys()} == {torch.float32}
    with pytest.raises(ValueError, match="precision"):
        train_priors(PriorsTrainConfig(**{**config.__dict__, "precision": "fp8"}))


def test_the_learning_rate_cools_down_over_the_last_steps_and_resumes_on_schedule(tmp_path, small_corpus,
                                                                                   spectrogram_cache, vqvae_run):
    from safetensors import safe_open

    from notono_live.training.priors import PriorsTrainConfig, train_priors

    assert [common.decayed_lr(1.0, step, 10, 4) for step in (0, 5, 6, 7, 8, 9, 10)] == [1, 1, 1, .75, .5, .25, 0]
    assert common.decayed_lr(1.0, 9, None, 4) == common.decayed_lr(1.0, 9, 10, 0) == 1.0

    def saved_lr(run_dir):
        state = run_dir / common.CHECKPOINT_DIR / common.TRAINING_STATE_FILE
        with safe_open(str(state), "pt") as handle:
            groups = json.loads(handle.metadata()["notono"])["optimizers"]["top"]["param_groups"]
        return {group["lr"] for group in groups}

    config = PriorsTrainConfig(corpus=small_corpus, vqvae=vqvae_run[0], out=tmp_path / "cool", size="tiny",
                               which="top", max_steps=4, batch_size=8, lr=1e-3, cache=spectrogram_cache,
                               validation_maps=8)
    train_priors(config)
    assert saved_lr(tmp_path / "cool") == {1e-3}   # a constant rate
    # the run resumed with a cool-down over its last 4 steps: its last step (7 of 8) runs at a quarter
    cooled = PriorsTrainConfig(**{**config.__dict__, "max_steps": 8, "lr_decay_steps": 4})
    assert train_priors(cooled).summary.step == 8
    assert saved_lr(tmp_path / "cool") == {1e-3 / 4}
    with pytest.raises(ValueError, match="lr_decay_steps"):
        train_priors(PriorsTrainConfig(**{**cooled.__dict__, "out": tmp_path / "open", "max_steps": None}))


def test_vqvae_trains_under_bf16_autocast_with_an_fp32_quantiser(tmp_path, small_corpus, spectrogram_cache):
    from safetensors import safe_open

    from notono_live.models.quantizer import EMAQuantizer
    from notono_live.training.vqvae import VQVAETrainConfig, train_vqvae

    # the quantiser ignores autocast: bf16 features are quantised, and the codebook moves, in fp32
    quantiser = EMAQuantizer(codebook_size=16, dim=4).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = quantiser(torch.randn(2, 4, 3, 3).bfloat16())
    assert out.quantized.dtype == torch.float32 and quantiser.embed.dtype == torch.float32
    assert int(quantiser.initialized) == 1

    run_dir = tmp_path / "bf16"
    config = VQVAETrainConfig(corpus=small_corpus, out=run_dir, size="tiny", max_steps=2, batch_size=4, lr=3e-3,
                              cache=spectrogram_cache, validation_notes=2, precision="bf16")
    train_vqvae(config)
    mse_first = _reconstruction_mse(run_dir, small_corpus, spectrogram_cache)
    train_vqvae(VQVAETrainConfig(**{**config.__dict__, "max_steps": 14}))
    mse_second = _reconstruction_mse(run_dir, small_corpus, spectrogram_cache)
    assert mse_second < 0.8 * mse_first, (mse_first, mse_second)
    weights = next((run_dir / common.CHECKPOINT_DIR).glob("*.safetensors"))
    with safe_open(str(weights), "pt") as handle:
        assert {handle.get_tensor(k).dtype for k in handle.keys()} <= {torch.float32, torch.int64}
    with pytest.raises(ValueError, match="precision"):
        train_vqvae(VQVAETrainConfig(**{**config.__dict__, "precision": "fp16"}))


def test_channels_last_changes_the_memory_order_not_the_model(vqvae_run, small_corpus, spectrogram_cache):
    """vqvae_run trained channels-last (the default): its checkpoint is written in the usual order and
    the same weights give the same output in either order."""
    from safetensors import safe_open

    from notono_live.training import modelio
    from notono_live.training.data import open_split

    run_dir = vqvae_run[0]
    weights = next((run_dir / common.CHECKPOINT_DIR).glob("*.safetensors"))
    with safe_open(str(weights), "pt") as handle:
        assert all(handle.get_tensor(k).is_contiguous() for k in handle.keys())
    model, stats = modelio.load_vqvae(run_dir / common.CHECKPOINT_DIR, torch.device("cpu"))
    again, _ = modelio.load_vqvae(run_dir / common.CHECKPOINT_DIR, torch.device("cpu"))
    again = again.to(memory_format=torch.channels_last)
    assert any(p.dim() == 4 and not p.is_contiguous() for p in again.parameters())
    held_out = open_split(small_corpus, "heldout", cache=spectrogram_cache)
    x = stats.normalize(torch.stack([held_out[i]["image"] for i in range(2)]))
    with torch.no_grad():
        a = model.eval()(x).reconstruction
        b = again.eval()(x.contiguous(memory_format=torch.channels_last)).reconstruction
    assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()


def test_condition_dropout_on_resume_adds_the_unconditioned_input(tmp_path, priors_run, vqvae_run, small_corpus,
                                                                  spectrogram_cache):
    import shutil

    from safetensors import safe_open

    from notono_live.models.bundle import DEFAULT_GUIDANCE, NotonoModel
    from notono_live.training import modelio
    from notono_live.training.export import export_model
    from notono_live.training.priors import PriorsTrainConfig, train_priors

    run_dir = tmp_path / "priors"
    shutil.copytree(priors_run[0], run_dir)
    before = {name: modelio.load_prior(run_dir / common.CHECKPOINT_DIR, name, torch.device("cpu"))
              for name in ("top", "bottom")}
    config = PriorsTrainConfig(corpus=small_corpus, vqvae=vqvae_run[0], out=run_dir, size="tiny", max_steps=14,
                               batch_size=8, lr=3e-3, cache=spectrogram_cache, validation_maps=8,
                               condition_dropout=0.5)
    result = train_priors(config)
    assert result.summary.step == 14
    state_file = run_dir / common.CHECKPOINT_DIR / common.TRAINING_STATE_FILE
    for name, old in before.items():
        new = modelio.load_prior(run_dir / common.CHECKPOINT_DIR, name, torch.device("cpu"))
        assert new.config.unconditional and not old.config.unconditional
        count = len(list(old.parameters()))
        assert len(list(new.parameters())) == count + 1
        # Adam went on for the earlier parameters (12 + 2 steps) and started the new input at the resume
        with safe_open(str(state_file), "pt") as handle:
            assert float(handle.get_tensor(f"optim.{name}.state.0.step")) == 14
            assert float(handle.get_tensor(f"optim.{name}.state.{count}.step")) == 2
        # the new input moved off its starting point, the mean label embedding
        start = torch.cat([old.pitch_embedding.weight.mean(0), old.family_embedding.weight.mean(0)])
        assert not torch.allclose(new.null_condition.weight[0], start)
    # a later resume reads the two parameter groups back
    again = train_priors(PriorsTrainConfig(**{**config.__dict__, "max_steps": 16}))
    assert again.summary.step == 16
    with safe_open(str(state_file), "pt") as handle:
        for name, old in before.items():
            count = len(list(old.parameters()))
            assert float(handle.get_tensor(f"optim.{name}.state.0.step")) == 16
            assert float(handle.get_tensor(f"optim.{name}.state.{count}.step")) == 4
    # held-out losses are measured with and without the labels
    from notono_live.training.priors import CODES_FILE, evaluate_priors, load_codes
    sets, _ = load_codes(run_dir / CODES_FILE)
    trained = {name: modelio.load_prior(run_dir / common.CHECKPOINT_DIR, name, torch.device("cpu"))
               for name in ("top", "bottom")}
    losses = evaluate_priors(trained, sets["heldout"], torch.device("cpu"))
    assert set(losses) == {"top", "bottom", "top_unconditioned", "bottom_unconditioned"}
    assert all(np.isfinite(value) for value in losses.values())
    assert losses["bottom"] != losses["bottom_unconditioned"]
    with pytest.raises(ValueError, match="condition-dropout"):
        train_priors(PriorsTrainConfig(**{**config.__dict__, "condition_dropout": 1.0}))

    model = NotonoModel.load(export_model(vqvae_run[0], run_dir, tmp_path / "models"))
    assert model.default_guidance == DEFAULT_GUIDANCE and model.info()["size"] == "tiny"
    guided = model.generate(48, "organ", n=1, seed=4)[0]
    plain = model.generate(48, "organ", n=1, seed=4, guidance=1.0)[0]
    assert guided.top.shape == constants.TOP_SHAPE and not np.array_equal(guided.bottom, plain.bottom)


def test_a_run_started_from_trained_priors_keeps_them_and_adds_the_comb_and_previous_column(
        tmp_path, priors_run, vqvae_run, small_corpus, spectrogram_cache):
    from notono_live.models.bundle import NotonoModel
    from notono_live.training import modelio
    from notono_live.training.export import export_model
    from notono_live.training.priors import PriorsTrainConfig, train_priors

    source = priors_run[0]
    trained = modelio.load_prior(source / common.CHECKPOINT_DIR, "bottom", torch.device("cpu"))
    run_dir = tmp_path / "comb"
    config = PriorsTrainConfig(corpus=small_corpus, vqvae=vqvae_run[0], out=run_dir, size="tiny", which="bottom",
                               max_steps=1, batch_size=8, lr=1e-3, cache=spectrogram_cache, validation_maps=8,
                               init_from=source, pitch_comb=True, previous_column=True)
    assert train_priors(config).summary.step == 1
    started = modelio.load_prior(run_dir / common.CHECKPOINT_DIR, "bottom", torch.device("cpu"))
    assert started.config.pitch_comb and not trained.config.pitch_comb
    assert started.config.previous_column and not trained.config.previous_column
    # every trained weight is where it was but for one Adam step (at most lr); the comb and the
    # previous column's embedding (both zero at first) have started
    for name, tensor in trained.state_dict().items():
        assert (started.state_dict()[name] - tensor).abs().max() <= 1.01e-3, name
    assert started.comb.weight.any()
    embedding = started.previous_column_embedding.weight
    assert embedding.any() and embedding.abs().max() <= 1.01e-3
    # the run resumes from its own checkpoint, not the source's
    assert train_priors(PriorsTrainConfig(**{**config.__dict__, "max_steps": 3})).summary.step == 3
    model = NotonoModel.load(export_model(vqvae_run[0], [run_dir, source], tmp_path / "model"))
    assert model.bottom_prior.config.pitch_comb and not model.top_prior.config.pitch_comb
    assert model.bottom_prior.config.previous_column
    assert model.generate(48, "organ", n=1, seed=4)[0].bottom.shape == constants.BOTTOM_SHAPE
    with pytest.raises(ValueError, match="no top prior"):
        train_priors(PriorsTrainConfig(**{**config.__dict__, "out": tmp_path / "none", "which": "top",
                                          "init_from": run_dir}))


def test_export_writes_a_loadable_model(priors_run, vqvae_run, tmp_path):
    from notono_live.models.bundle import NotonoModel
    from notono_live.training.export import export_model

    out = export_model(vqvae_run[0], priors_run[0], tmp_path / "models")
    model = NotonoModel.load(out)
    maps = model.generate(48, "organ", n=1, seed=1)
    audio = model.decode(maps)
    assert audio.shape == (1, constants.NUM_SAMPLES) and np.isfinite(audio).all()
    assert model.info()["training"]["vqvae"]["step"] == 14
    # the exported descriptions name the run folders, never the machine's paths
    for description in out.glob("*.json"):
        text = description.read_text()
        assert str(vqvae_run[0].parent) not in text and str(priors_run[0].parent) not in text
    assert model.info()["training"]["vqvae"]["run_dir"] == vqvae_run[0].name
    assert all(p.suffix in (".safetensors", ".json", ".md") for p in out.rglob("*") if p.is_file())

    # exporting the same runs again keeps every weights file byte for byte, even one whose header
    # another writer laid out in a different key order (safetensors does not fix that order)
    vqvae_file = out / "vqvae.safetensors"
    data = vqvae_file.read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    text = json.dumps({key: header[key] for key in reversed(list(header))}, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % 8)
    reordered = len(text).to_bytes(8, "little") + text + data[8 + size:]
    assert reordered != data
    vqvae_file.write_bytes(reordered)
    before = {path.name: path.read_bytes() for path in out.glob("*.safetensors")}
    export_model(vqvae_run[0], priors_run[0], out)
    assert {path.name: path.read_bytes() for path in out.glob("*.safetensors")} == before
    NotonoModel.load(out)   # the JSON digests describe the kept files


def test_decoder_only_run_keeps_the_codes_and_the_priors_that_learnt_them(tmp_path, vqvae_run, priors_run,
                                                                          small_corpus, spectrogram_cache):
    import shutil

    from notono_live.training import modelio
    from notono_live.training.export import export_model
    from notono_live.training.vqvae import DECODER_MODULES, VQVAETrainConfig, train_vqvae

    source_dir = vqvae_run[0]
    source, _, source_meta = modelio.load_vqvae(source_dir / common.CHECKPOINT_DIR, torch.device("cpu"),
                                                with_metadata=True)
    run_dir = tmp_path / "decoder"
    # a checkpoint, with its validation pass, after every step: validation puts the model back in
    # training mode, which must not wake the frozen codebooks
    config = VQVAETrainConfig(corpus=small_corpus, out=run_dir, size="tiny", max_steps=3, batch_size=4, lr=3e-3,
                              cache=spectrogram_cache, validation_notes=2, decoder_from=source_dir,
                              checkpoint_minutes=0.0)
    train_vqvae(config)
    # resuming without --decoder-from stays decoder-only: the checkpoint says whose codes it keeps
    resumed = train_vqvae(VQVAETrainConfig(**{**config.__dict__, "max_steps": 10, "decoder_from": None}))
    assert resumed.summary.step == 10
    tuned, _, tuned_meta = modelio.load_vqvae(run_dir / common.CHECKPOINT_DIR, torch.device("cpu"),
                                              with_metadata=True)
    assert tuned_meta["codes_of"] == source_meta["weights_sha256"] != tuned_meta["weights_sha256"]
    before, after = source.state_dict(), tuned.state_dict()
    moved = {name.split(".")[0] for name in before if not torch.equal(before[name], after[name])}
    assert moved == set(DECODER_MODULES) - {"decoder_refine"}   # encoders, codebooks (EMA buffers included) untouched
    from safetensors import safe_open
    with safe_open(str(run_dir / common.CHECKPOINT_DIR / common.TRAINING_STATE_FILE), "pt") as handle:
        assert float(handle.get_tensor("optim.vqvae.state.0.step")) == 10
    # the decoder learnt: reconstruction error on training notes fell below the source's
    assert _reconstruction_mse(run_dir, small_corpus, spectrogram_cache) < _reconstruction_mse(
        source_dir, small_corpus, spectrogram_cache)

    # the priors trained on the source's codes export with the tuned decoder...
    from notono_live.models.bundle import NotonoModel
    model = NotonoModel.load(export_model(run_dir, priors_run[0], tmp_path / "models"))
    assert model.info()["training"]["vqvae"]["run_dir"] == run_dir.name
    assert np.isfinite(model.decode(model.generate(48, "organ", n=1, seed=1))).all()
    # ...but not with a VQ-VAE whose encoder trained on: its codes are no longer the priors'
    moved_on = tmp_path / "moved_on"
    shutil.copytree(source_dir, moved_on)
    train_vqvae(VQVAETrainConfig(corpus=small_corpus, out=moved_on, size="tiny", max_steps=16, batch_size=4,
                                 lr=3e-3, cache=spectrogram_cache, validation_notes=0))
    with pytest.raises(ValueError, match="trained on codes of another VQ-VAE"):
        export_model(moved_on, priors_run[0], tmp_path / "refused")
    assert not (tmp_path / "refused").exists()


def test_a_decoder_only_run_adds_refinement_blocks_that_start_as_the_identity_and_cools_down(
        tmp_path, vqvae_run, priors_run, small_corpus, spectrogram_cache):
    from safetensors import safe_open

    from notono_live.cli import main
    from notono_live.models.bundle import NotonoModel
    from notono_live.training import modelio
    from notono_live.training.export import export_model
    from notono_live.training.vqvae import _with_refinement

    source_dir = vqvae_run[0]
    source, _ = modelio.load_vqvae(source_dir / common.CHECKPOINT_DIR, torch.device("cpu"))
    source.eval()
    # added blocks change nothing until they train: the same codes decode to the same image
    refined, refined_config = _with_refinement(source, 2)
    refined.eval()
    assert refined_config.decoder_refine == 2 and len(refined.decoder_refine) == 2
    generator = torch.Generator().manual_seed(3)
    top = torch.randint(0, 512, (2, *constants.TOP_SHAPE), generator=generator)
    bottom = torch.randint(0, 512, (2, *constants.BOTTOM_SHAPE), generator=generator)
    with torch.no_grad():
        assert torch.equal(refined.decode_codes(top, bottom), source.decode_codes(top, bottom))
    with pytest.raises(ValueError, match="add blocks, not remove"):
        _with_refinement(refined, 1)

    run_dir = tmp_path / "refined"
    args = ["train", "vqvae", "--corpus", str(small_corpus), "--out", str(run_dir), "--size", "tiny",
            "--batch-size", "4", "--lr", "3e-3", "--cache", str(spectrogram_cache), "--validation-notes", "0",
            "--decoder-from", str(source_dir), "--decoder-refine", "2", "--max-steps", "6", "--lr-decay-steps", "4"]
    assert main(args) == 0
    tuned, _, meta = modelio.load_vqvae(run_dir / common.CHECKPOINT_DIR, torch.device("cpu"), with_metadata=True)
    assert tuned.config.decoder_refine == 2
    assert meta["codes_of"] == modelio.codes_identity(modelio.load_vqvae(
        source_dir / common.CHECKPOINT_DIR, torch.device("cpu"), with_metadata=True)[2])
    before, after = source.state_dict(), tuned.state_dict()
    assert set(after) - set(before) == {key for key in after if key.startswith("decoder_refine.")}
    moved = {name.split(".")[0] for name in after
             if name not in before or not torch.equal(before[name], after[name])}
    assert moved == {"upsample_top", "decoder", "decoder_refine"}   # the codes stay the source's
    assert tuned.decoder_refine[0].body[-1].weight.abs().sum() > 0     # the blocks learnt
    with safe_open(str(run_dir / common.CHECKPOINT_DIR / common.TRAINING_STATE_FILE), "pt") as handle:
        groups = json.loads(handle.metadata()["notono"])["optimizers"]["vqvae"]["param_groups"]
    assert {group["lr"] for group in groups} == {3e-3 / 4}   # its last step (6 of 6) ran cooled to a quarter
    # the priors trained on the source's codes export and sample with the refined decoder
    model = NotonoModel.load(export_model(run_dir, priors_run[0], tmp_path / "models"))
    assert model.vqvae.config.decoder_refine == 2
    assert np.isfinite(model.decode(model.generate(48, "organ", n=1, seed=1))).all()
    # a decoder-only run changes no other size, and a cool-down needs a run end
    with pytest.raises(ValueError, match="only decoder_refine may change"):
        main(["train", "vqvae", "--corpus", str(small_corpus), "--out", str(tmp_path / "other"), "--size", "tiny",
              "--cache", str(spectrogram_cache), "--decoder-from", str(source_dir), "--bottom-codebook-size", "64",
              "--max-steps", "1"])
    with pytest.raises(ValueError, match="lr_decay_steps"):
        main(["train", "vqvae", "--corpus", str(small_corpus), "--out", str(tmp_path / "open"), "--size", "tiny",
              "--cache", str(spectrogram_cache), "--decoder-from", str(source_dir), "--lr-decay-steps", "4"])


def test_cli_refuses_a_missing_vqvae(tmp_path, small_corpus):
    from notono_live.cli import main

    with pytest.raises(FileNotFoundError, match="nowhere"):
        main(["train", "priors", "--corpus", str(small_corpus), "--vqvae", str(tmp_path / "nowhere"),
              "--out", str(tmp_path / "p"), "--size", "tiny", "--max-steps", "1"])


def test_cli_layer_counts_shape_new_priors_and_refuse_zero(tmp_path, small_corpus, spectrogram_cache, vqvae_run,
                                                           capsys):
    from notono_live.cli import main
    from notono_live.models.priors import PriorConfig
    from notono_live.training import modelio

    out = tmp_path / "deep_encoder"
    assert main(["train", "priors", "--corpus", str(small_corpus), "--vqvae", str(vqvae_run[0]), "--out", str(out),
                 "--size", "tiny", "--which", "bottom", "--max-steps", "1", "--batch-size", "4",
                 "--cache", str(spectrogram_cache), "--encoder-layers", "3", "--decoder-layers", "2"]) == 0
    prior = modelio.load_prior(common.find_checkpoint_dir(out), "bottom", torch.device("cpu"))
    tiny = PriorConfig.from_size("tiny")
    assert (tiny.encoder_layers, tiny.decoder_layers) == (1, 1)
    assert (prior.config.encoder_layers, prior.config.decoder_layers) == (3, 2)
    assert (len(prior.encoder_layers), len(prior.decoder_layers)) == (3, 2)
    # resuming keeps the run's own shape, and says so
    capsys.readouterr()
    assert main(["train", "priors", "--corpus", str(small_corpus), "--vqvae", str(vqvae_run[0]), "--out", str(out),
                 "--size", "tiny", "--which", "bottom", "--max-steps", "2", "--batch-size", "4",
                 "--cache", str(spectrogram_cache), "--encoder-layers", "1"]) == 0
    assert "has 3 encoder layers and keeps them; --encoder-layers 1 only shapes new priors" in capsys.readouterr().out
    resumed = modelio.load_prior(common.find_checkpoint_dir(out), "bottom", torch.device("cpu"))
    assert (resumed.config.encoder_layers, resumed.config.decoder_layers) == (3, 2)
    with pytest.raises(SystemExit):
        main(["train", "priors", "--corpus", str(small_corpus), "--vqvae", str(vqvae_run[0]),
              "--out", str(tmp_path / "none"), "--size", "tiny", "--decoder-layers", "0"])
    assert not (tmp_path / "none").exists()


def test_the_magnitude_weight_weighs_the_log_power_channel_and_keeps_the_loss_scale():
    from notono_live.training.vqvae import reconstruction_loss

    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, 2, 8, 4, 3, generator=generator).unbind(0)
    assert torch.equal(reconstruction_loss(x, y), torch.nn.functional.mse_loss(x, y))
    power, frequency = ((x - y) ** 2)[:, 0].mean(), ((x - y) ** 2)[:, 1].mean()
    torch.testing.assert_close(reconstruction_loss(x, y, 3.0), (3 * power + frequency) / 4)
    # equal errors in both channels: the same loss whatever the weight
    same = torch.cat([x[:, :1], x[:, :1]], 1), torch.cat([y[:, :1], y[:, :1]], 1)
    torch.testing.assert_close(reconstruction_loss(*same, 5.0), reconstruction_loss(*same))
    with pytest.raises(ValueError, match="magnitude_weight"):
        reconstruction_loss(x, y, 0.0)


def test_the_spectral_convergence_loss_scores_the_magnitude_error_against_the_magnitude():
    from notono_live.training.vqvae import spectral_convergence_loss

    generator = torch.Generator().manual_seed(1)
    image = torch.randn(3, 2, 16, 8, generator=generator)
    assert spectral_convergence_loss(image, image).item() == 0.0
    louder = image.clone()
    louder[:, 0] += 2 * math.log(1.5)   # every magnitude 1.5 times larger: an error of half the magnitude
    torch.testing.assert_close(spectral_convergence_loss(louder, image), torch.tensor(0.5))
    changed_if = image.clone()
    changed_if[:, 1] += 1.0   # the IF channel is not scored
    assert spectral_convergence_loss(changed_if, image).item() == 0.0
    grad = image.clone().requires_grad_(True)
    spectral_convergence_loss(grad, image + 0.1).backward()
    assert grad.grad is not None and grad.grad[:, 0].abs().sum() > 0


def test_bf16_on_a_cpu_without_bf16_arithmetic_warns_and_fp32_never_does():
    import warnings

    from notono_live.models.step import packed_bf16_available

    cpu = torch.device("cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        common.forward_autocast("fp32", cpu)
        common.forward_autocast("bf16", cpu)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    if packed_bf16_available(cpu):
        assert messages == []
    else:
        assert len(messages) == 1 and "use --precision fp32" in messages[0]
