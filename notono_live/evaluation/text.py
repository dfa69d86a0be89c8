"""The text of an evaluation: the lines `notono-live eval` prints at the end and report.md.

`report.run_evaluation` measures; this module only words what it measured.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .. import constants
from .classifier import FEATURE_BANDS

if TYPE_CHECKING:
    from .report import EvalReport, EvalSettings


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when the denominator is 0."""
    return float(numerator) / float(denominator) if denominator else float("nan")


def _band_range(quarter: int, ranges: int) -> str:
    width = FEATURE_BANDS // ranges
    return f"bands {quarter * width + 1}-{(quarter + 1) * width}"


def _bias_line(bias: dict[str, list[float]]) -> str:
    def values(name: str) -> str:
        return " ".join(f"{v:+.2f}" for v in bias[name])
    return (f"new bottoms against the same notes' reconstructions, ln Mel power by quarter of the bands (low to high): "
            f"whole note {values('mean')}; attack (first 0.25 s) {values('attack')}; release {values('release')}")


def headline(report: EvalReport) -> list[str]:
    """The lines `notono-live eval` prints at the end."""
    r, g, f, c = report.reconstruction, report.grid, report.family, report.codebook
    lines = [
        f"reconstruction LSD {r.lsd_db:.2f} dB (Mel-IF round-trip ceiling {r.ceiling_lsd_db:.2f} dB), "
        f"spectral convergence {r.spectral_convergence:.3f} (ceiling {r.ceiling_spectral_convergence:.3f}) "
        f"over {r.notes} held-out notes",
        f"pitch kept by reconstruction: {r.pitch_kept:.1%} ({r.reconstructions_keeping_pitch}/{r.originals_passing_pitch}); "
        f"with a new bottom under the note's own top (the bottom prior alone): {r.new_bottom_pitch_kept:.1%} "
        f"({r.new_bottoms_keeping_pitch}/{r.new_bottom_notes})",
        f"generated pitch accuracy: {g.generated_on_real_cells:.1%} on cells with real notes, "
        f"{g.generated_overall:.1%} over all {g.generated_count} sounds; real held-out notes {g.real_overall:.1%}"
        + (f"; each sound the best on pitch of {g.candidates} draws " + (
            "picked on previews of their top maps (first draws: run --candidates 1)" if g.pick_on == "previews"
            else f"(the first draws alone: {g.first_draw_on_real_cells:.1%})") if g.candidates > 1 else ""),
        f"family classifier: generated {f.generated:.1%}, real held-out (grid) {f.real_grid:.1%}, "
        f"all held-out {f.real_heldout_all:.1%}, reconstructions of {f.reconstructed_count} held-out notes "
        f"{f.reconstructed:.1%}, new bottoms under {f.new_bottom_count} of their real tops {f.new_bottom:.1%}",
        *([_bias_line(f.new_bottom_bias)] if f.new_bottom_bias else []),
        f"codebook usage: top perplexity {c.top_perplexity:.1f} ({c.top_fraction_used:.1%} of codes), "
        f"bottom perplexity {c.bottom_perplexity:.1f} ({c.bottom_fraction_used:.1%} of codes)",
    ]
    for op in report.operations:
        lines.append(f"operation {op.name}: pitch {'ok' if op.pitch_ok else 'off'} -> {op.wav}")
    for bar in report.bars:
        lines.append(f"{'PASS' if bar.passed else 'FAIL'} {bar.name}: {bar.value:.3f} "
                     f"(bar {'≤ ' if bar.at_most else '≥ '}{bar.threshold:.2f}; {bar.detail})")
    return lines


def _cell(value: float) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.2f}"


def render_markdown(report: EvalReport, settings: EvalSettings) -> str:
    """The report.md text."""
    r, g, f, c = report.reconstruction, report.grid, report.family, report.codebook
    lines = [
        "# NOTONO Live evaluation report", "",
        f"- model: `{report.model.get('name', settings.models)}`; corpus: `{report.corpus}` "
        f"({report.heldout_notes} held-out notes, split seed {settings.split_seed})"
        + (" — **quick mode (subsampled)**" if report.quick else ""),
        f"- time: {report.seconds.get('total', 0):.0f} s", "",
        "## Bars (issue 15)", "",
        "| bar | value | threshold | result | detail |", "| --- | --- | --- | --- | --- |",
    ]
    lines += [f"| {b.name} | {_cell(b.value)} | {'≤' if b.at_most else '≥'} {b.threshold:.2f} | "
              f"{'PASS' if b.passed else 'FAIL'} | {b.detail} |"
              for b in report.bars]
    lines += [
        "", "## Reconstruction", "",
        f"Over {r.notes} held-out notes (linear STFT, n_fft 2048, hop 512); every image is turned into audio "
        f"with {report.sampling.get('phase_iterations', constants.PHASE_ITERATIONS)} Griffin-Lim pass(es) "
        f"after the IF's own phase:", "",
        "| | log-spectral distance (dB) | spectral convergence |", "| --- | --- | --- |",
        f"| VQ-VAE reconstruction | {r.lsd_db:.2f} | {r.spectral_convergence:.3f} |",
        f"| Mel-IF round trip (ceiling) | {r.ceiling_lsd_db:.2f} | {r.ceiling_spectral_convergence:.3f} |", "",
        f"Pitch kept (pyin f0 within {constants.PITCH_TOLERANCE_CENTS:.0f} cents of the label): "
        f"{r.reconstructions_keeping_pitch}/{r.originals_passing_pitch} = {_cell(r.pitch_kept)} of the notes whose "
        f"original passes.", "",
        f"A new bottom map drawn under the note's own top map (one draw per note, the grid's sampling "
        f"settings), which isolates the bottom prior: pitch kept on {r.new_bottoms_keeping_pitch}/"
        f"{r.new_bottom_notes} = {_cell(r.new_bottom_pitch_kept)} of the notes whose original passes.", "",
        "![original vs reconstruction](reconstruction.png)", "", "![codemaps](codemaps.png)", "",
        "## Codebook usage", "",
        f"Over {c.notes} held-out notes: top map perplexity {c.top_perplexity:.1f} "
        f"({c.top_fraction_used:.1%} of the 512 codes used), bottom map perplexity {c.bottom_perplexity:.1f} "
        f"({c.bottom_fraction_used:.1%} used).", "",
        "## Generation: pitch accuracy on the family × pitch grid", "",
        f"{settings.samples_per_cell} samples per cell (temperature {settings.temperature}, top-p {settings.top_p}, "
        f"guidance {settings.guidance:g}), "
        f"beside up to {settings.real_per_cell} real held-out notes per cell. Generated: "
        f"{_cell(g.generated_on_real_cells)} on the cells that have real notes, {_cell(g.generated_overall)} over all "
        f"{g.generated_count} sounds. Real: {_cell(g.real_overall)} over {g.real_count} notes.", "",
        (f"Each generated sound is the best on pitch of {g.candidates} draws by harmonic score "
         f"(`generate_sounds`; not the pyin check above), scored on previews of their top maps decoded alone; "
         f"only the kept top got a bottom map, so the priors' first draws are judged by a --candidates 1 run."
         if g.candidates > 1 and g.pick_on == "previews" else
         f"Each generated sound is the best on pitch of {g.candidates} draws by harmonic score "
         f"(`generate_sounds`; not the pyin check above). The priors alone, judged on each sound's first draw: "
         f"{_cell(g.first_draw_on_real_cells)} on the cells that have real notes, "
         f"{_cell(ratio(g.first_draw_on_real_cells, g.real_overall))} of the real notes' accuracy."
         if g.candidates > 1 else "Each generated sound is the priors' single draw (no pitch selection)."), "",
        "| family | " + " | ".join(str(p) for p in g.pitches) + " |",
        "| --- | " + " | ".join("---" for _ in g.pitches) + " |",
    ]
    for k, family in enumerate(g.families):
        cells = [f"{_cell(a)} / {_cell(b)}" for a, b in zip(g.generated_accuracy[k], g.real_accuracy[k])]
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
    lines += ["", "Cells read generated / real.", "", "![generated](grid_generated.png) ![real](grid_real.png)", "",
              "![generated codemaps](codemaps_generated.png)", "",
              "## Family recognisability", "",
              f"Logistic regression on log-mel statistics, trained on {f.training_notes} real training notes. "
              f"Accuracy on generated sounds: {_cell(f.generated)} ({f.generated_count} sounds); on real held-out "
              f"notes of the same grid cells: {_cell(f.real_grid)} ({f.real_grid_count} notes); on held-out notes of "
              f"all pitches: {_cell(f.real_heldout_all)}; on the VQ-VAE's reconstructions of the "
              f"{f.reconstructed_count} held-out notes reconstructed above: {_cell(f.reconstructed)} (what the decoder "
              f"keeps of the family: generated sounds below it lose the rest in the priors); on the "
              f"{f.new_bottom_count} new bottoms drawn under held-out notes' own top maps (above): "
              f"{_cell(f.new_bottom)} (what the bottom prior alone keeps).", "",
              *(["Where those new bottoms differ from the same notes' reconstructions, in the classifier's "
                 "features (ln Mel power, mean over the notes, by quarter of the 64 bands from low to high):", "",
                 "| statistic | " + " | ".join(_band_range(q, len(f.new_bottom_bias["mean"]))
                                                for q in range(len(f.new_bottom_bias["mean"]))) + " |",
                 "| --- |" + " --- |" * len(f.new_bottom_bias["mean"]),
                 *(f"| {name} | " + " | ".join(f"{v:+.2f}" for v in values) + " |"
                   for name, values in f.new_bottom_bias.items()), ""] if f.new_bottom_bias else []),
              "## The paper's operations on a held-out note", "",
              f"Guidance {report.sampling.get('operations_guidance', settings.guidance):g}, one sample each.", "",
              "| operation | what | pitch within 50 cents | audio |", "| --- | --- | --- | --- |"]
    lines += [f"| {op.name} | {op.description} | {'yes' if op.pitch_ok else 'no'} | [{op.wav}]({op.wav}) |"
              for op in report.operations]
    lines += ["", "![operations](operations.png)", "", "## Timing", "",
              ", ".join(f"{k} {v:.0f} s" for k, v in report.seconds.items()), ""]
    return "\n".join(lines)
