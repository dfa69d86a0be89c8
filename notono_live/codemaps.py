"""Codemaps: the pair of VQ-VAE-2 code grids that stands for one 4-second sound.

Grids are numpy int arrays indexed ``[frequency_row, time_column]`` with row 0 the lowest
frequency: the top map is 32×4 (1 s per column), the bottom map 64×8 (0.5 s per column).
Top cell (r, c) sits above the 2×2 bottom patch rows 2r..2r+1, columns 2c..2c+1.

The priors read the maps as token sequences (NOTONO, Bazin et al., 2020):
- top: time-major, frequency innermost: token k = c * 32 + r;
- bottom: for each top cell in that order, its 2×2 patch, again time-major inside the patch:
  (2r, 2c), (2r+1, 2c), (2r, 2c+1), (2r+1, 2c+1). Top token k sits above bottom tokens 4k..4k+3.

On disk a pair is a small versioned JSON document (`to_json` / `from_json`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from .constants import BOTTOM_SHAPE, CODEBOOK_SIZE, TOP_SHAPE

CODEMAPS_FORMAT = "notono-codemaps"
CODEMAPS_VERSION = 1
LAYERS = ("top", "bottom")


@dataclass(frozen=True)
class Codemaps:
    """One sound's codes.

    Args:
        top: int array of shape (32, 4), codes in [0, 512).
        bottom: int array of shape (64, 8), codes in [0, 512).
    """

    top: np.ndarray
    bottom: np.ndarray

    def __post_init__(self) -> None:
        top = np.asarray(self.top, dtype=np.int64)
        bottom = np.asarray(self.bottom, dtype=np.int64)
        check_layer_array("top", top)
        check_layer_array("bottom", bottom)
        object.__setattr__(self, "top", top)
        object.__setattr__(self, "bottom", bottom)

    def layer(self, name: str) -> np.ndarray:
        if name not in LAYERS:
            raise ValueError(f"unknown layer {name!r}; expected 'top' or 'bottom'")
        return self.top if name == "top" else self.bottom

    def replace(self, layer: str, grid: np.ndarray) -> "Codemaps":
        return Codemaps(grid, self.bottom) if layer == "top" else Codemaps(self.top, grid)

    def to_json(self) -> str:
        return json.dumps({
            "format": CODEMAPS_FORMAT,
            "version": CODEMAPS_VERSION,
            "top": self.top.tolist(),
            "bottom": self.bottom.tolist(),
        })

    @classmethod
    def from_json(cls, text: str) -> "Codemaps":
        doc = json.loads(text)
        if doc.get("format") != CODEMAPS_FORMAT:
            raise ValueError(f"not a codemaps document (format {doc.get('format')!r})")
        if doc.get("version") != CODEMAPS_VERSION:
            raise ValueError(f"codemaps version {doc.get('version')!r} is not supported (expected {CODEMAPS_VERSION})")
        return cls(np.array(doc["top"]), np.array(doc["bottom"]))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Codemaps) and np.array_equal(self.top, other.top)
                and np.array_equal(self.bottom, other.bottom))

    __hash__ = None  # type: ignore[assignment]


def layer_shape(layer: str) -> tuple[int, int]:
    if layer == "top":
        return TOP_SHAPE
    if layer == "bottom":
        return BOTTOM_SHAPE
    raise ValueError(f"unknown layer {layer!r}; expected 'top' or 'bottom'")


def check_layer_array(layer: str, grid: np.ndarray) -> None:
    shape = layer_shape(layer)
    if grid.shape != shape:
        raise ValueError(f"{layer} map must have shape {shape}, got {grid.shape}")
    if grid.size and (grid.min() < 0 or grid.max() >= CODEBOOK_SIZE):
        raise ValueError(f"{layer} map codes must lie in [0, {CODEBOOK_SIZE}), got {grid.min()}..{grid.max()}")


# --- Linearisation -------------------------------------------------------------------------

def _top_order() -> np.ndarray:
    rows, cols = TOP_SHAPE
    # (row, col) of token k, time-major with frequency innermost
    return np.array([(k % rows, k // rows) for k in range(rows * cols)])


def _bottom_order() -> np.ndarray:
    out = []
    for r, c in _top_order():
        out += [(2 * r, 2 * c), (2 * r + 1, 2 * c), (2 * r, 2 * c + 1), (2 * r + 1, 2 * c + 1)]
    return np.array(out)


TOP_ORDER = _top_order()          # (128, 2): token index -> (row, col)
BOTTOM_ORDER = _bottom_order()    # (512, 2)


def flatten(layer: str, grid: np.ndarray) -> np.ndarray:
    """Grid(s) (..., H, W) -> token sequence(s) (..., H*W) in the prior's order."""
    order = TOP_ORDER if layer == "top" else BOTTOM_ORDER
    grid = np.asarray(grid)
    return grid[..., order[:, 0], order[:, 1]]


def unflatten(layer: str, tokens: np.ndarray) -> np.ndarray:
    """Token sequence(s) (..., H*W) -> grid(s) (..., H, W); inverse of `flatten`."""
    order = TOP_ORDER if layer == "top" else BOTTOM_ORDER
    tokens = np.asarray(tokens)
    grid = np.empty(tokens.shape[:-1] + layer_shape(layer), dtype=tokens.dtype)
    grid[..., order[:, 0], order[:, 1]] = tokens
    return grid


def upsample_top_mask(top_mask: np.ndarray) -> np.ndarray:
    """A (32, 4) boolean top mask -> the (64, 8) bottom mask of the cells under it."""
    return np.repeat(np.repeat(np.asarray(top_mask, dtype=bool), 2, axis=0), 2, axis=1)


def rectangle_mask(layer: str, row: int, col: int, height: int, width: int) -> np.ndarray:
    """Boolean mask of a rectangle in cell coordinates; raises ValueError if it leaves the map."""
    rows, cols = layer_shape(layer)
    if height < 1 or width < 1:
        raise ValueError(f"region height and width must be at least 1, got {height}x{width}")
    if not (0 <= row and row + height <= rows and 0 <= col and col + width <= cols):
        raise ValueError(
            f"region rows {row}..{row + height - 1}, columns {col}..{col + width - 1} "
            f"is outside the {layer} map ({rows} rows x {cols} columns)")
    mask = np.zeros((rows, cols), dtype=bool)
    mask[row:row + height, col:col + width] = True
    return mask
