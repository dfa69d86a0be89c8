"""PNG figures for the eval report, drawn with Pillow (no matplotlib dependency).

Three kinds: a spectrogram panel (log power of Mel-IF images, low frequencies at the bottom), a
codemap panel (one colour per code, so repeated codes and flat silent zones show as blocks), and a
labelled heatmap (family × pitch accuracy grid, with the value written in each cell; empty cells grey).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# A perceptually ordered dark-blue -> teal -> yellow ramp (control points, linearly interpolated).
_RAMP = np.array([
    [13, 8, 135], [84, 2, 163], [139, 10, 165], [185, 50, 137], [219, 92, 104],
    [244, 136, 73], [254, 188, 43], [240, 249, 33]], dtype=np.float64)
_BACKGROUND = (255, 255, 255)
_TEXT = (20, 20, 20)
_EMPTY = (200, 200, 200)


def colorize(values: np.ndarray, low: float | None = None, high: float | None = None) -> np.ndarray:
    """Map a 2-D float array to RGB uint8 with the ramp; NaN -> grey."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    low = float(np.nanmin(values)) if low is None and finite.any() else (0.0 if low is None else low)
    high = float(np.nanmax(values)) if high is None and finite.any() else (1.0 if high is None else high)
    scaled = np.clip((np.nan_to_num(values, nan=low) - low) / max(high - low, 1e-12), 0.0, 1.0)
    position = scaled * (len(_RAMP) - 1)
    index = np.minimum(position.astype(int), len(_RAMP) - 2)
    fraction = (position - index)[..., None]
    rgb = _RAMP[index] * (1 - fraction) + _RAMP[index + 1] * fraction
    rgb[~finite] = _EMPTY
    return rgb.astype(np.uint8)


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def _label(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str) -> None:
    draw.text(xy, text, fill=_TEXT, font=_font())


def spectrogram_panel(images: Sequence[np.ndarray], titles: Sequence[str], path: Path,
                      height: int = 256, width: int = 256) -> Path:
    """Side-by-side log-power panels of Mel-IF images [2, 1024, 128] (shared colour scale)."""
    powers = [np.asarray(image)[0] for image in images]
    low = min(float(p.min()) for p in powers)
    high = max(float(p.max()) for p in powers)
    margin, title_h = 8, 16
    canvas = Image.new("RGB", (len(powers) * (width + margin) + margin, height + title_h + 2 * margin), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for k, (power, title) in enumerate(zip(powers, titles)):
        tile = Image.fromarray(colorize(power[::-1], low, high)).resize((width, height), Image.BILINEAR)
        x = margin + k * (width + margin)
        canvas.paste(tile, (x, margin + title_h))
        _label(draw, (x, margin), title)
    path = Path(path)
    canvas.save(path)
    return path


def _code_colours(codebook_size: int = 512) -> np.ndarray:
    generator = np.random.default_rng(7)
    return generator.integers(30, 255, size=(codebook_size, 3)).astype(np.uint8)


def codemap_panel(maps: Sequence[tuple[np.ndarray, np.ndarray]], titles: Sequence[str], path: Path,
                  cell: int = 8) -> Path:
    """For each (top [32, 4], bottom [64, 8]) pair, the two maps drawn with one colour per code.

    The top map's cells are drawn twice as large so both maps cover the same time-frequency area.
    """
    colours = _code_colours()
    margin, title_h = 8, 16
    map_h = 64 * cell
    pair_w = 2 * 8 * cell + margin
    canvas = Image.new("RGB", (len(maps) * (pair_w + margin) + margin, map_h + title_h + 2 * margin + 14),
                       _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for k, ((top, bottom), title) in enumerate(zip(maps, titles)):
        x = margin + k * (pair_w + margin)
        _label(draw, (x, margin), title)
        for grid, offset, scale in ((top, 0, 2 * cell), (bottom, 8 * cell + margin, cell)):
            rgb = colours[np.asarray(grid)[::-1] % len(colours)]
            tile = Image.fromarray(rgb).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)
            canvas.paste(tile, (x + offset, margin + title_h))
        _label(draw, (x, margin + title_h + map_h + 2), "top      bottom")
    path = Path(path)
    canvas.save(path)
    return path


def heatmap(values: np.ndarray, row_labels: Sequence[str], column_labels: Sequence[str], path: Path,
            title: str = "", cell: int = 44, low: float = 0.0, high: float = 1.0) -> Path:
    """A labelled grid of values in [low, high], each cell showing its value (NaN cells grey, '-')."""
    values = np.asarray(values, dtype=np.float64)
    left, top, margin = 86, 34, 8
    canvas = Image.new("RGB", (left + cell * values.shape[1] + margin, top + cell * values.shape[0] + margin),
                       _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    _label(draw, (margin, 4), title)
    rgb = colorize(values, low, high)
    for r in range(values.shape[0]):
        _label(draw, (margin, top + r * cell + cell // 2 - 5), str(row_labels[r]))
        for c in range(values.shape[1]):
            x0, y0 = left + c * cell, top + r * cell
            draw.rectangle([x0, y0, x0 + cell - 2, y0 + cell - 2], fill=tuple(int(v) for v in rgb[r, c]))
            value = values[r, c]
            text = "-" if not np.isfinite(value) else f"{value:.2f}"
            bright = np.isfinite(value) and (value - low) / max(high - low, 1e-12) > 0.6
            draw.text((x0 + 6, y0 + cell // 2 - 6), text, fill=(0, 0, 0) if bright else (255, 255, 255)
                      if np.isfinite(value) else _TEXT, font=_font())
    for c, label in enumerate(column_labels):
        _label(draw, (left + c * cell + 8, top - 14), str(label))
    path = Path(path)
    canvas.save(path)
    return path
