"""Training data: the NSynth-layout reader and Dataset, the SoundFont corpus builder, the round-trip check."""
from .nsynth import (
    NoteRecord,
    NSynthDataset,
    family_to_index,
    index_to_family,
    index_to_pitch,
    pitch_to_index,
    read_examples,
    split_notes,
)

__all__ = [
    "NoteRecord",
    "NSynthDataset",
    "family_to_index",
    "index_to_family",
    "index_to_pitch",
    "pitch_to_index",
    "read_examples",
    "split_notes",
]
