"""`notono-live eval`: measure a model folder on the held-out split and write a markdown report.

What is measured, each against a reference that says how good "good" is:
- reconstruction: log-spectral distance and spectral convergence of VQ-VAE reconstructions, beside
  the model-free Mel-IF round trip of the same notes (the ceiling any model on this representation
  can reach);
- pitch kept by reconstruction: pyin f0 within 50 cents of the label, over the notes whose
  original passes the same test;
- generation: each family × `constants.EVAL_PITCH_GRID` cell, N samples each, pitch accuracy beside
  the same measure on real held-out notes of that family and pitch;
- family recognisability: a small classifier trained on real TRAINING notes, its accuracy on the
  generated sounds beside its accuracy on real held-out notes of the same grid cells;
- codebook usage (perplexity, fraction of codes used) of both maps over the held-out notes;
- the paper's three operations on one held-out note, written as WAVs with their pitch check.
The model's bars (issue 15's "Done when") are printed as PASS/FAIL lines and
kept in metrics.json.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .. import codemaps, constants
# One definition shared with the round-trip ceiling, so model and ceiling are measured alike.
from ..data.roundtrip import spectral_distances
from .text import headline, ratio, render_markdown   # the words; this module measures

# The model's bars (issue 15): reconstruction keeps the pitch of this share of the
# notes whose original passes, with at most this spectral convergence; the priors' first draws are on
# pitch this share as often as real notes, the picked sounds (when picking is on) this share, and the
# family classifier recognises the generated sounds this share as often as real notes.
BAR_RECONSTRUCTION_PITCH = 0.97
BAR_RECONSTRUCTION_SC = 0.30
BAR_FIRST_DRAW_PITCH_RATIO = 0.85
BAR_PICKED_PITCH_RATIO = 0.95
BAR_FAMILY_RATIO = 0.90


@dataclass
class EvalSettings:
    """What `run_evaluation` measures and how much of it.

    Args:
        models: model folder `NotonoModel.load` reads.
        corpus: NSynth-layout corpus the model was trained on (its held-out split is used).
        out: report folder (report.md, PNGs, WAVs, metrics.json).
        quick: tiny subsample of everything (tests, smoke runs).
        split_seed: seed of the 80/20 split (must be the training one).
        cache: spectrogram cache folder (None: compute).
        device: "auto", "cpu", "cuda".
        reconstruction_notes: held-out notes reconstructed (evenly spread over the split).
        new_bottom_notes: of those whose original passes the pitch check, how many (evenly spread)
            get a new bottom drawn under their own top map and are checked again: the bottom
            prior's own pitch accuracy, apart from the top prior's.
        samples_per_cell: generated sounds per family × pitch cell (issue: 4).
        families: families of the grid (None: all 11).
        pitches: pitches of the grid (None: `constants.EVAL_PITCH_GRID`).
        real_per_cell: real held-out notes checked per cell (at most).
        classifier_notes: training notes the family classifier is fitted on (at most).
        temperature, top_p, top_k: sampling settings of the generations.
        guidance: classifier-free guidance scale of every sampling operation (None: the model's
            `default_guidance` for the grid, its `edit_guidance` for the three operations).
        seed: seed of the generations and subsamples.
        candidates: draws per generated sound, of which the one that sits best on the asked pitch
            by harmonic score is kept (`NotonoModel.generate_sounds`; None: the model's, 4; 1: the
            priors' draws as they come). The report gives the first draws' pitch accuracy too,
            when every draw is decoded whole.
        pick_on: how candidates are picked (`models.picking`: "full" or "previews"; None: the
            model's `pick_on`). Picked on previews, the first draws get no bottom map unless kept,
            so their pitch accuracy is measured by a `candidates=1` run instead.
        phase_iterations: Griffin-Lim passes of every inversion to audio, the model's and the
            model-free ceiling's (None: `constants.PHASE_ITERATIONS`; 0: the IF phase as is, as in
            the paper).
        step_precision: weights of the sampler's one-token step (`NotonoModel.set_step_precision`).
    """

    models: Path | None
    corpus: Path
    out: Path
    quick: bool = False
    split_seed: int = constants.DEFAULT_SPLIT_SEED
    cache: Path | None = None
    device: str = "auto"
    reconstruction_notes: int = 200
    new_bottom_notes: int = 48
    samples_per_cell: int = 4
    families: tuple[str, ...] | None = None
    pitches: tuple[int, ...] | None = None
    real_per_cell: int = 8
    classifier_notes: int = 4000
    temperature: float = 1.0
    top_p: float = 0.8
    top_k: int = 0
    guidance: float | None = None
    seed: int = 0
    candidates: int | None = None
    phase_iterations: int | None = None
    step_precision: str = "auto"
    pick_on: str | None = None

    def apply_quick(self) -> "EvalSettings":
        """The --quick subsample: a handful of notes and two grid cells per family that has data."""
        if not self.quick:
            return self
        self.reconstruction_notes = min(self.reconstruction_notes, 6)
        self.new_bottom_notes = min(self.new_bottom_notes, 2)
        self.samples_per_cell = min(self.samples_per_cell, 1)
        self.real_per_cell = min(self.real_per_cell, 2)
        self.classifier_notes = min(self.classifier_notes, 200)
        return self


@dataclass
class ReconstructionResult:
    """Reconstruction quality over `notes` held-out notes (lower LSD/SC is better)."""

    notes: int
    lsd_db: float
    spectral_convergence: float
    ceiling_lsd_db: float
    ceiling_spectral_convergence: float
    originals_passing_pitch: int
    reconstructions_keeping_pitch: int
    # the bottom prior alone: notes (whose original passes) given a new bottom under their own top
    new_bottom_notes: int = 0
    new_bottoms_keeping_pitch: int = 0

    @property
    def pitch_kept(self) -> float:
        return ratio(self.reconstructions_keeping_pitch, self.originals_passing_pitch)

    @property
    def new_bottom_pitch_kept(self) -> float:
        return ratio(self.new_bottoms_keeping_pitch, self.new_bottom_notes)


@dataclass
class GridResult:
    """Pitch accuracy per family × pitch cell, generated and real (NaN where a cell has no data)."""

    families: list[str]
    pitches: list[int]
    generated_accuracy: list[list[float]]
    real_accuracy: list[list[float]]
    generated_count: int
    real_count: int
    generated_overall: float           # over all generated sounds
    generated_on_real_cells: float     # over the cells that have real held-out notes
    real_overall: float
    candidates: int = 1                # draws each generated sound was picked from
    # the priors alone: the first draw of each sound's candidates, on the cells with real notes (NaN
    # when picked on previews: a first draw is decoded whole only when it is kept)
    first_draw_on_real_cells: float = float("nan")
    pick_on: str = "full"              # how the candidates were picked (`models.picking`)


@dataclass
class FamilyResult:
    """Family classifier accuracy: real held-out (grid cells / all), generated, and the VQ-VAE's
    reconstructions of the held-out notes reconstructed (what the decoder alone keeps of the family,
    so that a generated figure below it can be put on the priors)."""

    training_notes: int
    real_heldout_all: float
    real_grid: float
    generated: float
    real_grid_count: int
    generated_count: int
    reconstructed: float = float("nan")
    reconstructed_count: int = 0
    new_bottom: float = float("nan")   # the new bottoms drawn under held-out notes' own tops (stage 1)
    new_bottom_count: int = 0
    # `classifier.band_bias` of those new bottoms against the same notes' reconstructions
    new_bottom_bias: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class CodebookUsage:
    """Code usage of each map over the held-out notes encoded."""

    notes: int
    top_perplexity: float
    top_fraction_used: float
    bottom_perplexity: float
    bottom_fraction_used: float


@dataclass
class OperationResult:
    """One of the paper's operations on a held-out note."""

    name: str
    wav: str
    pitch_ok: bool
    description: str


@dataclass
class BarCheck:
    name: str
    value: float
    threshold: float
    passed: bool
    detail: str
    at_most: bool = False    # the value must not exceed the threshold (else: must reach it)


@dataclass
class EvalReport:
    """Everything `notono-live eval` measured (also written to metrics.json)."""

    model: dict[str, Any]
    corpus: str
    heldout_notes: int
    quick: bool
    reconstruction: ReconstructionResult
    grid: GridResult
    family: FamilyResult
    codebook: CodebookUsage
    operations: list[OperationResult]
    bars: list[BarCheck]
    seconds: dict[str, float] = field(default_factory=dict)
    sampling: dict[str, Any] = field(default_factory=dict)   # the settings the generations used

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["reconstruction"]["pitch_kept"] = self.reconstruction.pitch_kept
        return _finite(doc)


# --- Helpers --------------------------------------------------------------------------------

def _finite(value: Any) -> Any:
    """JSON has no NaN: write None instead."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _pitch_checker() -> Callable[[np.ndarray, int], bool]:
    from .pitch import pitch_within_cents

    def check(audio: np.ndarray, midi: int) -> bool:
        return bool(pitch_within_cents(np.asarray(audio, dtype=np.float32), constants.SAMPLE_RATE, int(midi),
                                       cents=constants.PITCH_TOLERANCE_CENTS))
    return check


def _spread(count: int, limit: int) -> list[int]:
    """Up to `limit` indices spread evenly over range(count) (deterministic)."""
    if count <= limit:
        return list(range(count))
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, limit)})


def _load_audio(record) -> np.ndarray:
    from ..audio_io import load_audio

    return load_audio(record.path)


def _images_of(audio: np.ndarray, transform) -> torch.Tensor:
    with torch.no_grad():
        return transform.forward(torch.as_tensor(np.atleast_2d(audio), dtype=torch.float32)).cpu()


def _split_features(split, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The family classifier's features of those notes of a split (images from its cache, 64 at a
    time) and their family labels."""
    from .classifier import family_features

    features = torch.cat([family_features(torch.stack([split.image(i) for i in indices[s:s + 64]]))
                          for s in range(0, len(indices), 64)])
    return features, torch.tensor([split.records[i].family_index for i in indices])


def fit_family_classifier(train, notes: int, seed: int):
    """The eval's family classifier, fitted on up to `notes` notes spread over the training split
    `train`; returns it and how many notes it saw."""
    from .classifier import FamilyClassifier

    chosen = _spread(len(train), notes)
    return FamilyClassifier.fit(*_split_features(train, chosen), seed=seed), len(chosen)


# --- The evaluation -------------------------------------------------------------------------

def run_evaluation(settings: EvalSettings, log: Callable[[str], None] = print) -> EvalReport:
    """Measure a model on the held-out split and write report.md, figures, WAVs and metrics.json."""
    from ..audio_io import write_wav_atomic
    from ..models.bundle import NotonoModel, check_candidates
    from ..models.picking import check_pick_on
    from ..representation import MelIF
    from ..training.common import resolve_device
    from ..training.data import open_split
    from ..training.priors import code_usage
    from . import figures
    from .classifier import band_bias, family_features

    settings = settings.apply_quick()
    started = time.monotonic()
    seconds: dict[str, float] = {}
    out = Path(settings.out)
    device = resolve_device(settings.device)
    # everything that can refuse (model folder, corpus) is opened before anything is written
    model = NotonoModel.load(settings.models, device=str(device))
    model.set_step_precision(settings.step_precision)
    # the scales the grid and the three operations sample at: as given, else the model's defaults;
    # a scale the model cannot take is refused before any work
    operations_guidance = model.check_guidance(
        model.edit_guidance if settings.guidance is None else settings.guidance)
    settings = replace(settings, guidance=model.check_guidance(
        model.default_guidance if settings.guidance is None else settings.guidance),
        candidates=check_candidates(model.candidates if settings.candidates is None else settings.candidates),
        pick_on=check_pick_on(model.pick_on if settings.pick_on is None else settings.pick_on))
    model.candidates = settings.candidates   # what info() and metrics.json's model section report
    model.pick_on = settings.pick_on
    phase_iterations = constants.PHASE_ITERATIONS if settings.phase_iterations is None else settings.phase_iterations
    transform = MelIF(phase_iterations=phase_iterations)
    model.representation.phase_iterations = transform.phase_iterations   # the same inversion for both
    check_pitch = _pitch_checker()
    heldout = open_split(settings.corpus, "heldout", settings.split_seed, settings.cache)
    train = open_split(settings.corpus, "train", settings.split_seed, settings.cache)
    if len(heldout) == 0:
        raise ValueError(f"{settings.corpus}: the held-out split is empty; nothing to evaluate")
    out.mkdir(parents=True, exist_ok=True)
    records = heldout.records
    log(f"eval: {len(records)} held-out notes in {settings.corpus}; model {settings.models or 'default'} "
        f"on {device}{' (quick)' if settings.quick else ''}")

    # --- 1. reconstruction, its ceiling, pitch kept, codebook usage ------------------------
    t0 = time.monotonic()
    chosen = _spread(len(records), settings.reconstruction_notes)
    lsd, sc, ceiling_lsd, ceiling_sc = [], [], [], []
    passing = kept = 0
    # (codes, record, the reconstruction's family features) of the notes whose original passes
    passing_notes: list[tuple[codemaps.Codemaps, Any, torch.Tensor]] = []
    passes_original: dict[int, bool] = {}
    all_maps: list[codemaps.Codemaps] = []
    reconstructed_features: list[torch.Tensor] = []   # for the family classifier (stage 3)
    example = None
    batch = 8
    for start in range(0, len(chosen), batch):
        indices = chosen[start:start + batch]
        audio = np.stack([_load_audio(records[i]) for i in indices])
        maps = model.encode(audio)
        reconstruction = model.decode(maps)
        reconstructed_features.append(family_features(_images_of(reconstruction, transform)))
        round_trip = transform.inverse(_images_of(audio, transform)).numpy()
        a, b = spectral_distances(audio, reconstruction)
        c, d = spectral_distances(audio, round_trip)
        lsd += a.tolist(); sc += b.tolist(); ceiling_lsd += c.tolist(); ceiling_sc += d.tolist()
        all_maps += maps
        for k, i in enumerate(indices):
            ok = check_pitch(audio[k], records[i].pitch)
            passes_original[i] = ok
            if ok:
                passing += 1
                kept += int(check_pitch(reconstruction[k], records[i].pitch))
                passing_notes.append((maps[k], records[i], reconstructed_features[-1][k]))
        if example is None:
            example = (indices[0], audio[0], reconstruction[0], maps[0])
    # the bottom prior alone: a new bottom under each note's own top map, one draw, the grid's guidance
    new_bottom = [passing_notes[i] for i in _spread(len(passing_notes), settings.new_bottom_notes)]
    new_bottom_kept = 0
    new_bottom_features: list[torch.Tensor] = []   # for the family classifier (stage 3)
    for j, (maps_j, record, _) in enumerate(new_bottom):
        drawn = model.regenerate_bottom(maps_j, record.pitch, record.family, n=1, temperature=settings.temperature,
                                        top_p=settings.top_p, top_k=settings.top_k, seed=settings.seed + j,
                                        guidance=settings.guidance)
        decoded = model.decode(drawn)
        new_bottom_kept += int(check_pitch(decoded[0], record.pitch))
        new_bottom_features.append(family_features(_images_of(decoded, transform)))
    reconstruction_result = ReconstructionResult(
        notes=len(chosen), lsd_db=float(np.mean(lsd)), spectral_convergence=float(np.mean(sc)),
        ceiling_lsd_db=float(np.mean(ceiling_lsd)), ceiling_spectral_convergence=float(np.mean(ceiling_sc)),
        originals_passing_pitch=passing, reconstructions_keeping_pitch=kept, new_bottom_notes=len(new_bottom),
        new_bottoms_keeping_pitch=new_bottom_kept)
    tops = np.stack([m.top for m in all_maps])
    bottoms = np.stack([m.bottom for m in all_maps])
    top_perplexity, top_used = code_usage(tops, model.codebook_sizes[0])
    bottom_perplexity, bottom_used = code_usage(bottoms, model.codebook_sizes[1])
    usage = CodebookUsage(len(all_maps), top_perplexity, top_used, bottom_perplexity, bottom_used)
    seconds["reconstruction"] = time.monotonic() - t0
    log(f"reconstruction: LSD {reconstruction_result.lsd_db:.2f} dB (ceiling {reconstruction_result.ceiling_lsd_db:.2f}), "
        f"SC {reconstruction_result.spectral_convergence:.3f} (ceiling {reconstruction_result.ceiling_spectral_convergence:.3f}), "
        f"pitch kept {kept}/{passing}, with a new bottom under the note's own top {new_bottom_kept}/{len(new_bottom)} "
        f"[{seconds['reconstruction']:.0f} s]")

    index, original_audio, reconstructed_audio, example_maps = example
    figures.spectrogram_panel([_images_of(original_audio, transform)[0].numpy(),
                               _images_of(reconstructed_audio, transform)[0].numpy()],
                              [f"original {records[index].note}", "reconstruction"], out / "reconstruction.png")
    figures.codemap_panel([(example_maps.top, example_maps.bottom)], [records[index].note], out / "codemaps.png")

    # --- 2. generation on the family × pitch grid, beside real held-out notes ---------------
    t0 = time.monotonic()
    grid_families = list(settings.families or constants.FAMILIES)
    grid_pitches = list(settings.pitches or constants.EVAL_PITCH_GRID)
    by_cell: dict[tuple[str, int], list[int]] = {}
    for i, record in enumerate(records):
        by_cell.setdefault((record.family, record.pitch), []).append(i)
    if settings.quick:
        # a few families and pitches the (small) corpus has, so a quick run still compares like with like
        present = {record.family for record in records}
        grid_families = [f for f in grid_families if f in present][:3] or grid_families[:1]
        if settings.pitches is None:
            counts: dict[int, int] = {}
            for record in records:
                if record.family in grid_families:
                    counts[record.pitch] = counts.get(record.pitch, 0) + 1
            on_grid = sorted(p for p in counts if p in constants.EVAL_PITCH_GRID)
            ranked = on_grid + sorted((p for p in counts if p not in on_grid), key=lambda p: (-counts[p], p))
            grid_pitches = sorted(ranked[:2]) or grid_pitches[:2]
    generated = np.full((len(grid_families), len(grid_pitches)), np.nan)
    real = np.full_like(generated, np.nan)
    generated_features, generated_labels = [], []
    real_features, real_labels = [], []
    gen_ok_total = gen_total = gen_ok_real_cells = gen_real_cells = real_ok_total = real_total = 0
    first_ok_real_cells = 0
    generated_examples = []
    for f, family in enumerate(grid_families):
        for p, pitch in enumerate(grid_pitches):
            cell_seed = settings.seed * 100_003 + f * 131 + p
            sounds = model.generate_sounds(pitch, family, n=settings.samples_per_cell,
                                           temperature=settings.temperature, top_p=settings.top_p,
                                           top_k=settings.top_k, seed=cell_seed, guidance=settings.guidance,
                                           candidates=settings.candidates)
            maps, audio = sounds.maps, sounds.audio
            oks = [check_pitch(a, pitch) for a in audio]
            generated[f, p] = float(np.mean(oks))
            gen_ok_total += sum(oks)
            gen_total += len(oks)
            generated_features.append(family_features(_images_of(audio, transform)))
            generated_labels += [constants.family_index(family)] * len(audio)
            if p == len(grid_pitches) // 2:
                generated_examples.append(((maps[0].top, maps[0].bottom), f"{family} {pitch}"))
            real_indices = by_cell.get((family, pitch), [])[:settings.real_per_cell]
            if real_indices:
                real_audio = np.stack([_load_audio(records[i]) for i in real_indices])
                real_oks = [check_pitch(a, pitch) for a in real_audio]
                real[f, p] = float(np.mean(real_oks))
                real_ok_total += sum(real_oks)
                real_total += len(real_oks)
                gen_ok_real_cells += sum(oks)
                # the priors alone: each sound's first draw (the kept one when it was the first)
                firsts = sounds.first_draws
                if firsts is not None:
                    first_ok_real_cells += sum(ok if k == i * sounds.candidates else check_pitch(first, pitch)
                                               for i, (ok, k, first) in enumerate(zip(oks, sounds.kept, firsts)))
                gen_real_cells += len(oks)
                real_features.append(family_features(torch.stack([heldout.image(i) for i in real_indices])))
                real_labels += [constants.family_index(family)] * len(real_indices)
    grid = GridResult(
        families=grid_families, pitches=grid_pitches, generated_accuracy=generated.tolist(),
        real_accuracy=real.tolist(), generated_count=gen_total, real_count=real_total,
        generated_overall=ratio(gen_ok_total, gen_total), generated_on_real_cells=ratio(gen_ok_real_cells, gen_real_cells),
        real_overall=ratio(real_ok_total, real_total), candidates=settings.candidates,
        first_draw_on_real_cells=(ratio(first_ok_real_cells, gen_real_cells) if settings.pick_on == "full"
                                  or settings.candidates == 1 else float("nan")),
        pick_on=settings.pick_on)
    seconds["generation"] = time.monotonic() - t0
    picked = (f"each sound the best on pitch of {settings.candidates} draws picked on previews of their top maps"
              if settings.candidates > 1 and settings.pick_on == "previews" else
              f"each sound the best on pitch of {settings.candidates} draws (the first draws alone "
              f"{grid.first_draw_on_real_cells:.1%})" if settings.candidates > 1 else "one draw each")
    log(f"generation: pitch accuracy {grid.generated_on_real_cells:.1%} on cells with real notes, {picked} "
        f"(real notes {grid.real_overall:.1%}); {gen_total} sounds "
        f"[{seconds['generation']:.0f} s]")
    figures.heatmap(generated, grid_families, grid_pitches, out / "grid_generated.png",
                    title="pitch accuracy of generated sounds (pyin, 50 cents)")
    figures.heatmap(real, grid_families, grid_pitches, out / "grid_real.png",
                    title="pitch accuracy of real held-out notes (pyin, 50 cents)")
    if generated_examples:
        figures.codemap_panel([m for m, _ in generated_examples[:6]], [t for _, t in generated_examples[:6]],
                              out / "codemaps_generated.png")

    # --- 3. family recognisability -----------------------------------------------------------
    t0 = time.monotonic()
    classifier, training_notes = fit_family_classifier(train, settings.classifier_notes, settings.seed)
    heldout_features, heldout_labels = _split_features(
        heldout, _spread(len(records), max(settings.classifier_notes // 4, 32)))
    family = FamilyResult(
        training_notes=training_notes,
        real_heldout_all=classifier.accuracy(heldout_features, heldout_labels),
        real_grid=(classifier.accuracy(torch.cat(real_features), torch.tensor(real_labels))
                   if real_features else float("nan")),
        generated=classifier.accuracy(torch.cat(generated_features), torch.tensor(generated_labels)),
        real_grid_count=len(real_labels), generated_count=len(generated_labels),
        reconstructed=classifier.accuracy(torch.cat(reconstructed_features),
                                          torch.tensor([records[i].family_index for i in chosen])),
        reconstructed_count=len(chosen),
        new_bottom=(classifier.accuracy(torch.cat(new_bottom_features),
                                        torch.tensor([record.family_index for _, record, _ in new_bottom]))
                    if new_bottom_features else float("nan")),
        new_bottom_count=len(new_bottom_features),
        new_bottom_bias=(band_bias(torch.cat(new_bottom_features), torch.stack([f for _, _, f in new_bottom]))
                         if new_bottom_features else {}))
    seconds["family"] = time.monotonic() - t0
    log(f"family classifier: {family.generated:.1%} on generated, {family.real_grid:.1%} on real grid notes, "
        f"{family.real_heldout_all:.1%} on all held-out, {family.reconstructed:.1%} on the reconstructions, "
        f"{family.new_bottom:.1%} on the new bottoms under real tops [{seconds['family']:.0f} s]")

    # --- 4. the paper's three operations on one held-out note --------------------------------
    t0 = time.monotonic()
    operations = _operations(model, records, passes_original, check_pitch, out, settings.seed, write_wav_atomic,
                             figures, operations_guidance, settings.candidates)
    seconds["operations"] = time.monotonic() - t0

    bars = _bars(reconstruction_result, grid, family)
    seconds["total"] = time.monotonic() - started
    report = EvalReport(model=_model_info(model), corpus=str(settings.corpus), heldout_notes=len(records),
                        quick=settings.quick, reconstruction=reconstruction_result, grid=grid, family=family,
                        codebook=usage, operations=operations, bars=bars,
                        seconds={k: round(v, 1) for k, v in seconds.items()},
                        sampling={"temperature": settings.temperature, "top_p": settings.top_p,
                                  "top_k": settings.top_k, "guidance": settings.guidance,
                                  "operations_guidance": operations_guidance, "candidates": settings.candidates,
                                  "pick_on": settings.pick_on,
                                  "step_precision": str(model.top_prior.step_precision).removeprefix("torch."),
                                  "seed": settings.seed, "phase_iterations": phase_iterations,
                                  "samples_per_cell": settings.samples_per_cell})
    (out / "metrics.json").write_text(json.dumps(report.to_dict(), indent=1) + "\n", encoding="utf-8")
    (out / "report.md").write_text(render_markdown(report, settings), encoding="utf-8")
    for line in headline(report):
        log(line)
    return report


def _model_info(model) -> dict[str, Any]:
    try:
        return _finite(json.loads(json.dumps(model.info(), default=str)))
    except Exception:  # noqa: BLE001 - info is descriptive only
        return {}


def _operations(model, records, passes_original: dict[int, bool], check_pitch, out: Path, seed: int,
                write_wav, figures, guidance: float, draws: int = 1) -> list[OperationResult]:
    """Regenerate the first 2 s; regenerate the lowest quarter of rows; keep top, new bottom."""
    # prefer a low bass/organ note whose original passes (frequency inpainting adds low end there)
    candidates = [i for i, ok in passes_original.items() if ok] or list(passes_original)
    low = [i for i in candidates if records[i].family in ("bass", "organ") and records[i].pitch <= 48]
    index = (low or candidates)[0]
    record = records[index]
    audio = _load_audio(record)
    maps = model.encode(audio)[0]
    folder = out / "operations"
    folder.mkdir(exist_ok=True)
    top_rows, top_cols = constants.TOP_SHAPE
    temporal = np.zeros(constants.TOP_SHAPE, dtype=bool)
    temporal[:, :2] = True                       # top columns 0-1 = the first 2 s (+ bottom under them)
    lowest = np.zeros(constants.TOP_SHAPE, dtype=bool)
    lowest[: top_rows // 4, :] = True            # lowest quarter of top rows -> lowest quarter of bottom rows
    edits = [
        ("regenerate_first_2s", "top columns 0-1 and the bottom cells under them resampled",
         lambda: model.inpaint(maps, "top", temporal, record.pitch, record.family, n=1, seed=seed,
                               guidance=guidance)[0]),
        ("regenerate_lowest_quarter", "lowest quarter of rows of both maps resampled",
         lambda: model.inpaint(maps, "top", lowest, record.pitch, record.family, n=1, seed=seed + 1,
                               guidance=guidance)[0]),
        ("keep_top_new_bottom", "top map kept, whole bottom map resampled"
         + (f" (the best on pitch of {draws} draws, as the daemon does it)" if draws > 1 else ""),
         lambda: model.regenerate_bottom_sounds(maps, record.pitch, record.family, n=1, seed=seed + 2,
                                                guidance=guidance, candidates=draws).maps[0]),
    ]
    results = [OperationResult("original", str(write_wav(folder / "original.wav", audio).relative_to(out)),
                               check_pitch(audio, record.pitch), f"held-out note {record.note}")]
    reconstruction = model.decode([maps])[0]
    results.append(OperationResult("reconstruction",
                                   str(write_wav(folder / "reconstruction.wav", reconstruction).relative_to(out)),
                                   check_pitch(reconstruction, record.pitch), "VQ-VAE reconstruction"))
    panel = [(maps.top, maps.bottom)]
    for name, description, edit in edits:
        edited = edit()
        sound = model.decode([edited])[0]
        path = write_wav(folder / f"{name}.wav", sound)
        results.append(OperationResult(name, str(path.relative_to(out)), check_pitch(sound, record.pitch), description))
        panel.append((edited.top, edited.bottom))
    figures.codemap_panel(panel, ["encoded", "first 2 s", "lowest quarter", "new bottom"], out / "operations.png")
    return results


def _bars(reconstruction: ReconstructionResult, grid: GridResult, family: FamilyResult) -> list[BarCheck]:
    first_ratio = ratio(grid.first_draw_on_real_cells, grid.real_overall)
    picked_ratio = ratio(grid.generated_on_real_cells, grid.real_overall)
    family_ratio = ratio(family.generated, family.real_grid)
    sounds = (f"each the best on pitch of {grid.candidates} draws"
              + (" (picked on previews of their top maps)" if grid.pick_on == "previews" else "")
              if grid.candidates > 1 else "one draw each")

    def check(name, value, threshold, detail, at_most=False) -> BarCheck:
        passed = math.isfinite(value) and (value <= threshold if at_most else value >= threshold)
        return BarCheck(name, value, threshold, bool(passed), detail, at_most)

    bars = [
        check("reconstruction keeps pitch", reconstruction.pitch_kept, BAR_RECONSTRUCTION_PITCH,
              f"{reconstruction.reconstructions_keeping_pitch}/{reconstruction.originals_passing_pitch} "
              f"held-out notes whose original passes"),
        check("reconstruction spectral convergence", reconstruction.spectral_convergence, BAR_RECONSTRUCTION_SC,
              f"{reconstruction.notes} held-out notes; the Mel-IF round trip "
              f"{reconstruction.ceiling_spectral_convergence:.3f}", at_most=True),
    ]
    bars.append(check("first-draw pitch accuracy / real", first_ratio, BAR_FIRST_DRAW_PITCH_RATIO,
                      f"the priors alone: {grid.first_draw_on_real_cells:.1%} of first draws vs "
                      f"{grid.real_overall:.1%} real" if math.isfinite(grid.first_draw_on_real_cells) else
                      "not measured: picked on previews, a first draw is decoded whole only when kept; "
                      "run --candidates 1"))
    if grid.candidates > 1:   # with one draw per sound the picked sounds are the first draws
        bars.append(check("picked pitch accuracy / real", picked_ratio, BAR_PICKED_PITCH_RATIO,
                          f"{grid.generated_on_real_cells:.1%} generated ({sounds}) vs {grid.real_overall:.1%} real"))
    bars.append(check("family accuracy generated / real", family_ratio, BAR_FAMILY_RATIO,
                      f"{family.generated:.1%} generated ({sounds}) vs {family.real_grid:.1%} real"))
    return bars
