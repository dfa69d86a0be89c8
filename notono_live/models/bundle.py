"""`NotonoModel`: the VQ-VAE-2, both priors and the Mel-IF transform behind one API.

This is what the daemon, the engine, evaluation and MIDI use. It speaks the public conventions of
`docs/architecture.md`: audio as float32 numpy (16 kHz mono, 64000 samples), pitch as a MIDI number
24–84, family as an NSynth family name, codemaps as `Codemaps`. Everything inside (normalisation
with the checkpoint's statistics, label indices, token order, sampling) stays here.

A model folder holds three components written by `models.checkpoint`:
`vqvae.{json,safetensors}`, `top_prior.{json,safetensors}`, `bottom_prior.{json,safetensors}`.
The VQ-VAE's JSON metadata carries the normalisation statistics (`normalization_stats`) and every
component carries the label encoders (`label_encoders`), checked against this package's constants.
"""
from __future__ import annotations

import dataclasses
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from .. import constants
from ..constants import MAX_VARIATIONS
from ..codemaps import LAYERS, Codemaps, layer_shape
from .checkpoint import CheckpointError, component_paths, load_model, save_model
from .picking import (MAX_CANDIDATES, GeneratedSounds, check_candidates, check_pick_on, draw_batches,
                      pick_groups)
from .pitch_selection import best_on_pitch
from .priors import PRIOR_SIZES, BottomPrior, PriorConfig, TopPrior
from .sampling import SamplingOptions, generate_codes, generate_top_codes, inpaint_codes
from .vqvae import VQVAE2, VQVAE2Config, parameter_count

MODELS_ENV = "NOTONO_MODELS"
COMPONENTS = {"vqvae": "vqvae", "top_prior": "top_prior", "bottom_prior": "bottom_prior"}
_ENCODE_BATCH = 8   # notes per VQ-VAE pass; bounds memory on long encode lists
# guidance scale of generation from nothing when a call names none, for a model whose priors were
# trained with condition dropout. The shipped model's first draws on the eval's grid: 96.0 % at pitch
# at 2 and at 3, family 47.7 % at 2 and 55.3 % at 3 (real notes 89.1 % and 59.9 %; models/README.md)
DEFAULT_GUIDANCE = 3.0
# guidance scale of edits (inpaint, new bottom) when a call names none: on 109 held-out notes a new
# bottom under the real top kept the pitch 67 times at 1 and 68 at 2, and 2 costs twice the time
EDIT_GUIDANCE = 1.0
# candidates drawn per sound by `generate_sounds` and `regenerate_bottom_sounds` (pitch-checked
# generation, `pitch_selection.first_on_pitch`): with the shipped model on the eval's grid, the first
# of 4 previews on pitch (else the best) gave sounds on pitch 96.7 % of the time, first draws 96.0 %;
# with the previous model, whose first draws sat on pitch 58 % of the time, the best of 4 gave 87 %
DEFAULT_CANDIDATES = 4
# priors at most this wide sample faster with the compiled step on a CPU (`NotonoModel.compile_pays`)
COMPILE_MAX_D_MODEL = 128


def label_encoders() -> dict:
    """How labels become model indices; stored with every component and checked on load."""
    return {"pitch": {"min": constants.PITCH_MIN, "max": constants.PITCH_MAX, "index": "pitch - min"},
            "family": list(constants.FAMILIES)}


def default_models_directory() -> Path:
    """$NOTONO_MODELS, else the shipped model: the installed package's copy, or the checkout's
    `models/` folder in an editable install (notono_live/shipped.py gives the rule)."""
    from ..shipped import models_folder

    return models_folder()


def check_labels(json_path: Path, metadata: dict) -> None:
    labels = metadata.get("label_encoders")
    if labels is None:
        # every writer stores them; without them nothing says how the labels were indexed
        raise CheckpointError(f"{json_path}: no label_encoders in the metadata; not a NOTONO Live checkpoint")
    pitch = labels.get("pitch", {})
    if (pitch.get("min"), pitch.get("max")) != (constants.PITCH_MIN, constants.PITCH_MAX):
        raise CheckpointError(f"{json_path}: trained on pitches {pitch.get('min')}-{pitch.get('max')}, "
                              f"this package uses {constants.PITCH_MIN}-{constants.PITCH_MAX}")
    if list(labels.get("family", [])) != list(constants.FAMILIES):
        raise CheckpointError(f"{json_path}: family list {labels.get('family')} differs from "
                              f"this package's {list(constants.FAMILIES)}")


def _default_stats():
    """Statistics for an untrained model: the thresholded log-power floor to a loud ceiling."""
    from ..representation import NormalizationStats
    return NormalizationStats(log_power_min=constants.PHASE_THRESHOLD_LOG_POWER, log_power_max=6.0,
                              if_min=-1.0, if_max=1.0)


class NotonoModel:
    """A complete NOTONO model: audio ⇄ codemaps, generation and inpainting.

    Args:
        vqvae: the VQ-VAE-2.
        top_prior: the inpainting-aware top prior.
        bottom_prior: the bottom prior.
        stats: `NormalizationStats` the VQ-VAE was trained with.
        device: where the models run.
        name: a label for `info()` (e.g. the folder it was loaded from).
        size: a name of `priors.PRIOR_SIZES` or "custom", for `info()`.
        training: training summaries by component, for `info()`.
        representation: MelIF settings (`MelIF.settings()`); None uses the defaults.
        use_cache: False switches sampling to the reference sampler (no KV cache, quadratic cost).
        sampling_threads: torch CPU threads while sampling. One token at a time is a chain of
            small matrix-vector products: extra threads barely help, and on a shared CPU they wait
            on each other at every op (measured here under load: 1.2 s with 1 thread against
            18–50 s with 2 for the same 640 tokens). Encoding and decoding keep torch's setting.
        step_precision: weights of the one-token sampling step, a name of
            `constants.STEP_PRECISIONS`, a dtype or None ("auto": float16 on
            CPU, where that step is bound by reading the weights and fp16 copies make it about
            1.7× faster per generation; the model's own dtype elsewhere). None keeps the model's
            dtype, which makes the KV-cached sampler draw exactly what the reference sampler
            draws. See `TopPrior.set_step_precision`.
        bottom_dropout: the share of notes the VQ-VAE's decoder was trained to rebuild from their
            top codes alone (`train vqvae --bottom-dropout`; 0: never). Above 0, generation picks
            its candidates on previews of their top maps (`pick_on`, `models.picking`).
    """

    def __init__(self, vqvae: VQVAE2, top_prior: TopPrior, bottom_prior: BottomPrior, stats,
                 device: str | torch.device = "cpu", name: str = "notono", size: str = "custom",
                 training: dict | None = None, representation: dict | None = None,
                 use_cache: bool = True, sampling_threads: int | None = 1,
                 step_precision: torch.dtype | str | None = "auto", bottom_dropout: float = 0.0) -> None:
        from ..representation import MelIF
        self.device = torch.device(device)
        self.vqvae = vqvae.to(self.device).eval()
        if self.device.type == "cpu":
            # its convolutions run faster on this layout on a CPU (AVX2, 2 threads: 4 sounds decoded in
            # 77 ms against 93, one encoded in 17 against 19); the decoded audio moves by under 1e-5
            self.vqvae.to(memory_format=torch.channels_last)
        self.top_prior = top_prior.to(self.device).eval()
        self.bottom_prior = bottom_prior.to(self.device).eval()
        self.stats = stats
        self.name = name
        self.size = size
        self.training = training or {}
        settings = dict(representation or {})
        settings.pop("kind", None)
        self.representation = MelIF(device=self.device, **settings)
        self.use_cache = use_cache
        self.sampling_threads = sampling_threads
        # draws per sound of `generate_sounds` and `regenerate_bottom_sounds` when a call names none
        self.candidates = DEFAULT_CANDIDATES
        if isinstance(bottom_dropout, bool) or not 0.0 <= float(bottom_dropout) < 1.0:
            raise ValueError(f"bottom_dropout must be from 0 up to (not including) 1, got {bottom_dropout!r}")
        self.bottom_dropout = float(bottom_dropout)
        # how `generate_sounds` picks among candidates (`models.picking`): on previews of their top
        # maps when the decoder learned to rebuild notes from them, else on full decodes
        self.pick_on = "previews" if self.bottom_dropout > 0 else "full"
        self.set_step_precision(step_precision)

    @property
    def codebook_sizes(self) -> tuple[int, int]:
        """Codes of the VQ-VAE's (top, bottom) codebooks: a code map's cells lie below them."""
        return self.vqvae.config.codebook_sizes

    def check_codes(self, maps: list[Codemaps]) -> None:
        """Raise ValueError, naming the map and layer, if a code lies outside this model's
        codebooks (a map written by a model with a larger codebook, say)."""
        for i, maps_i in enumerate(maps):
            for layer, size in zip(LAYERS, self.codebook_sizes):
                grid = maps_i.layer(layer)
                if grid.size and int(grid.max()) >= size:
                    raise ValueError(f"code map {i}: {layer} code {int(grid.max())} is outside this model's "
                                     f"{layer} codebook (0..{size - 1})")

    def set_step_precision(self, dtype: torch.dtype | str | None) -> None:
        """Weights dtype of the KV-cached one-token step of both priors: a name of
        `constants.STEP_PRECISIONS`, a torch dtype, or None (the model's own dtype)."""
        if isinstance(dtype, str):
            if dtype not in constants.STEP_PRECISIONS:
                raise ValueError(f"step precision must be one of {', '.join(constants.STEP_PRECISIONS)}, "
                                 f"a torch dtype or None, got {dtype!r}")
            auto = torch.float16 if self.device.type == "cpu" else None
            dtype = {"auto": auto, "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": None}[dtype]
        self.top_prior.set_step_precision(dtype)
        self.bottom_prior.set_step_precision(dtype)

    def compile_sampling_step(self) -> float:
        """Compile both priors' one-token sampling step (`models.compiled_step`) and sample with it
        from then on; returns the seconds it took (tens of seconds the first time on a machine,
        a few once Inductor's cache holds the graphs). See `compile_steps`."""
        started = time.perf_counter()
        for _ in self.compile_steps():
            pass
        return time.perf_counter() - started

    def compile_steps(self) -> Iterator[str]:
        """Compile both priors' one-token sampling step one graph at a time: each step of the
        iteration builds one (prior, batch kind) graph (`compiled_step.VARIANTS`) and yields what it built; when the iteration
        ends, both priors sample with their compiled step (a sampler already running goes on with
        the eager one). The daemon runs each step as a job of its inference worker, so requests
        interleave with the compilation instead of waiting for all of it.

        Run it on the thread that samples, or at least with nothing sampling meanwhile: Dynamo's
        graphs hold to torch's thread count at compile time (each graph is built under
        `sampling_threads`, as sampling runs), and another thread changing it would make the
        graphs recompile. The compiled step multiplies with bfloat16 weights when the step
        precision is bfloat16 and with the model's own weights otherwise (float16 copies have no
        fast kernel to compile to on a CPU). `set_step_precision` drops it. Raises RuntimeError
        naming the problem when this machine cannot compile (no C++ compiler) or compilation
        fails; the eager step then stays in use.
        """
        from .compiled_step import VARIANTS, CompiledStep, compiler_problem, warm

        problem = compiler_problem()
        if problem is not None:
            raise RuntimeError(problem)
        priors = {"top": self.top_prior, "bottom": self.bottom_prior}
        steps = {}
        for name, prior in priors.items():
            dtype = torch.bfloat16 if prior.step_precision == torch.bfloat16 else prior.head.weight.dtype
            steps[name] = CompiledStep(prior, dtype)
            for guided, rows in VARIANTS:
                try:
                    with _thread_limit(self.sampling_threads if self.device.type == "cpu" else None):
                        warm(steps[name], prior, ((guided, rows),))
                except Exception as error:   # Dynamo/Inductor raise many kinds; the eager step stays
                    raise RuntimeError(f"torch.compile could not build the sampling step: "
                                       f"{type(error).__name__}: {error}") from error
                yield (f"{name} prior, {'guided' if guided else 'unguided'}, "
                       f"{'one row' if rows == 1 else 'two rows or more'}")
        for name, prior in priors.items():
            prior.compiled_step = steps[name]

    @property
    def compile_pays(self) -> bool:
        """Whether compiling the sampling step is worth it for these priors on a CPU: for priors as
        narrow as the `small` size (d_model up to COMPILE_MAX_D_MODEL) it measured 1.15-1.35x faster
        for a new sound and a new bottom; for the wider `lite` priors the edits came out slower and
        Dynamo and Inductor took the daemon past its memory budget (docs/performance.md). What
        `serve` does when neither --compile-step nor --no-compile-step is given."""
        widest = max(self.top_prior.config.d_model, self.bottom_prior.config.d_model)
        return self.device.type == "cpu" and widest <= COMPILE_MAX_D_MODEL

    @property
    def compiled_step(self) -> bool:
        """Whether the priors sample with a compiled step (`compile_sampling_step`)."""
        return self.top_prior.compiled_step is not None and self.bottom_prior.compiled_step is not None

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def load(cls, directory: str | Path | None = None, device: str = "cpu", *,
             use_cache: bool = True, threads: int | None = None) -> "NotonoModel":
        """Load a model folder; None -> $NOTONO_MODELS or the repository's `models/` folder.

        `threads` sets torch's CPU threads (None keeps torch's default, one per core: the
        convolutions use them all; KV-cached sampling at batch 1 gains little beyond 2).
        Raises FileNotFoundError (missing folder or file) or CheckpointError (a ValueError: corrupt
        or mismatched file), each naming the file at fault.
        """
        _set_threads(threads)
        folder = Path(directory).expanduser() if directory is not None else default_models_directory()
        if not folder.is_dir():
            hint = "" if directory is not None else f" (set ${MODELS_ENV} to a model folder)"
            raise FileNotFoundError(f"model folder {folder} does not exist{hint}")
        components = {}
        training = {}
        for name, kind in COMPONENTS.items():
            model, loaded = load_model(folder, name, kind, device=device)
            check_labels(loaded.json_path, loaded.metadata)
            components[name] = (model, loaded)
            if "training" in loaded.metadata:
                training[name] = loaded.metadata["training"]
        vqvae_meta = components["vqvae"][1].metadata
        stats_doc = vqvae_meta.get("normalization_stats")
        vqvae_json = component_paths(folder, "vqvae")[0]
        if stats_doc is None:
            raise CheckpointError(f"{vqvae_json}: has no normalisation statistics in its metadata")
        from ..representation import NormalizationStats
        try:
            stats = NormalizationStats.from_dict(stats_doc)
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"{vqvae_json}: bad normalisation statistics ({error})") from None
        mismatch = vocabulary_mismatch(components["vqvae"][0], components["top_prior"][0],
                                       components["bottom_prior"][0])
        if mismatch:
            raise CheckpointError(f"{folder}: {mismatch}; export the priors trained on this VQ-VAE's codes")
        bottom_dropout = vqvae_meta.get("bottom_dropout", 0.0)
        if isinstance(bottom_dropout, bool) or not isinstance(bottom_dropout, (int, float)) \
                or not 0.0 <= bottom_dropout < 1.0:
            raise CheckpointError(f"{vqvae_json}: bottom_dropout {bottom_dropout!r} is not a share from 0 "
                                  f"up to (not including) 1")
        return cls(components["vqvae"][0], components["top_prior"][0], components["bottom_prior"][0],
                   stats, device=device, name=folder.name,
                   size=_size_name(components["vqvae"][0], components["top_prior"][0],
                                   components["bottom_prior"][0]),
                   training=training, representation=vqvae_meta.get("representation"),
                   use_cache=use_cache, bottom_dropout=bottom_dropout)

    @classmethod
    def untrained(cls, size: str = "lite", device: str = "cpu", seed: int = 0, *,
                  use_cache: bool = True, threads: int | None = None) -> "NotonoModel":
        """Randomly initialised model of a named size (for tests and wiring; it outputs noise)."""
        _set_threads(threads)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            vqvae = VQVAE2(VQVAE2Config.from_size(size))
            prior_config = PriorConfig.from_size(size)
            if size == "small":   # as `train priors --size small` is meant to be used: with guidance
                prior_config = dataclasses.replace(prior_config, unconditional=True, label_layers=True)
            top, bottom = TopPrior(prior_config), BottomPrior(prior_config)
        return cls(vqvae, top, bottom, _default_stats(), device=device, name=f"untrained-{size}",
                   size=size, use_cache=use_cache)

    def save(self, directory: str | Path, dtype: torch.dtype = torch.float16,
             keep_from: str | Path | None = None) -> None:
        """Write the three components (fp16 by default) with stats, labels and training summaries;
        a weights file in `keep_from` (default: `directory`) that holds the same tensors is kept byte
        for byte (see `save_component`)."""
        directory = Path(directory)
        common = {"label_encoders": label_encoders(), "size": self.size}
        for name, model in (("vqvae", self.vqvae), ("top_prior", self.top_prior),
                            ("bottom_prior", self.bottom_prior)):
            metadata = dict(common)
            if name in self.training:
                metadata["training"] = self.training[name]
            if name == "vqvae":
                metadata["normalization_stats"] = self.stats.to_dict()
                metadata["representation"] = self.representation.settings()
                if self.bottom_dropout:
                    metadata["bottom_dropout"] = self.bottom_dropout
            save_model(directory, name, model, metadata, dtype, keep_from)

    # --- audio <-> codemaps -------------------------------------------------------------------
    @torch.inference_mode()
    def encode(self, audio: np.ndarray) -> list[Codemaps]:
        """Audio [N, 64000] or [64000] (16 kHz mono, 4 s) -> one Codemaps per note."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim == 1:
            audio = audio[None]
        if audio.ndim != 2 or audio.shape[1] != constants.NUM_SAMPLES:
            raise ValueError(f"audio must have shape [N, {constants.NUM_SAMPLES}] or "
                             f"[{constants.NUM_SAMPLES}] (4 s at {constants.SAMPLE_RATE} Hz), "
                             f"got {audio.shape}")
        if not np.isfinite(audio).all():
            raise ValueError("audio contains NaN or infinite samples")
        maps = []
        for start in range(0, audio.shape[0], _ENCODE_BATCH):
            batch = torch.from_numpy(audio[start:start + _ENCODE_BATCH]).to(self.device)
            maps += self.encode_images(self.representation.forward(batch))
        return maps

    @torch.inference_mode()
    def encode_images(self, images: torch.Tensor) -> list[Codemaps]:
        """Unnormalised Mel-IF images [N, 2, 1024, 128] (as `MelIF.forward` gives) -> Codemaps."""
        images = torch.as_tensor(images)
        if images.dim() == 3:
            images = images.unsqueeze(0)
        maps = []
        for start in range(0, images.shape[0], _ENCODE_BATCH):
            batch = images[start:start + _ENCODE_BATCH].to(self.device, torch.float32)
            top, bottom = self.vqvae.encode_codes(self.stats.normalize(batch))
            maps += [Codemaps(t, b) for t, b in zip(top.cpu().numpy(), bottom.cpu().numpy())]
        return maps

    @torch.inference_mode()
    def decode_images(self, maps: list[Codemaps]) -> torch.Tensor:
        """Codemaps -> unnormalised Mel-IF images [N, 2, 1024, 128] (before inversion)."""
        maps = _as_map_list(maps)
        self.check_codes(maps)
        top = torch.as_tensor(np.stack([m.top for m in maps]), device=self.device)
        bottom = torch.as_tensor(np.stack([m.bottom for m in maps]), device=self.device)
        return self.stats.denormalize(self.vqvae.decode_codes(top, bottom))

    @torch.inference_mode()
    def decode(self, maps: list[Codemaps]) -> np.ndarray:
        """Codemaps -> audio [N, 64000] float32 (MelIF.inverse applies the phase threshold)."""
        maps = _as_map_list(maps)
        return self._to_audio(len(maps), lambda batch: self.decode_images(maps[batch]))

    def _to_audio(self, count: int, images: Callable[[slice], torch.Tensor]) -> np.ndarray:
        """Audio [count, 64000] float32 from the unnormalised images `images(batch)` gives, batch by batch."""
        out = []
        for start in range(0, count, _ENCODE_BATCH):
            image = images(slice(start, start + _ENCODE_BATCH))
            out.append(self.representation.inverse(image).float().cpu().numpy())
        return np.concatenate(out).astype(np.float32, copy=False)

    @torch.inference_mode()
    def decode_top(self, tops) -> np.ndarray:
        """Top maps alone -> audio [N, 64000] float32: each decoded with zeros in place of its bottom
        vectors (`VQVAE2.decode_top`), the preview candidates are picked on. tops: `Codemaps` (their
        bottoms are ignored) or top grids [N, 32, 4]. Only a decoder trained with bottom dropout
        (`bottom_dropout` above 0) rebuilds a note from them."""
        if isinstance(tops, Codemaps) or (isinstance(tops, (list, tuple)) and tops
                                          and all(isinstance(m, Codemaps) for m in tops)):
            tops = np.stack([m.top for m in _as_map_list(tops)])   # checked below, bottoms unread
        tops = torch.as_tensor(np.asarray(tops) if not isinstance(tops, torch.Tensor) else tops)
        if tops.dim() != 3 or tuple(tops.shape[1:]) != constants.TOP_SHAPE or tops.shape[0] < 1:
            raise ValueError(f"top maps must be [N >= 1, {constants.TOP_SHAPE[0]}, {constants.TOP_SHAPE[1]}], "
                             f"got {tuple(tops.shape)}")
        if tops.is_floating_point() or not 0 <= int(tops.min()) <= int(tops.max()) < self.codebook_sizes[0]:
            raise ValueError(f"top codes must be whole numbers in 0..{self.codebook_sizes[0] - 1}")
        return self._to_audio(tops.shape[0], lambda batch: self.stats.denormalize(
            self.vqvae.decode_top(tops[batch].to(self.device))))

    # --- sampling -----------------------------------------------------------------------------
    @property
    def bottom_candidates(self) -> int:
        """Draws per new bottom of `regenerate_bottom_sounds` when a call names none: one when the
        model picks on previews (its top map carries the pitch, and every new bottom shares the kept
        top, so there is no preview to pick on), else `candidates`."""
        return 1 if self.pick_on == "previews" else self.candidates

    @property
    def supports_guidance(self) -> bool:
        """Whether both priors were trained with condition dropout (classifier-free guidance)."""
        return self.top_prior.null_condition is not None and self.bottom_prior.null_condition is not None

    @property
    def default_guidance(self) -> float:
        """The guidance scale `generate` uses when none is given: `DEFAULT_GUIDANCE` when both priors
        were trained with condition dropout, else 1.0 (the conditioned prior alone). `inpaint` and
        `regenerate_bottom` use `EDIT_GUIDANCE` (1.0) when none is given."""
        return DEFAULT_GUIDANCE if self.supports_guidance else 1.0

    @property
    def edit_guidance(self) -> float:
        """The guidance scale `inpaint` and `regenerate_bottom` use when none is given."""
        return EDIT_GUIDANCE

    def check_guidance(self, guidance: float) -> float:
        """`guidance` if this model can sample with it (0-10; anything but 1 needs both priors trained
        with condition dropout), else ValueError naming the value."""
        if not (0.0 <= guidance <= constants.MAX_GUIDANCE):
            raise ValueError(f"guidance {guidance} must be in [0, {constants.MAX_GUIDANCE:g}]")
        if guidance != 1.0 and not self.supports_guidance:
            raise ValueError(f"guidance {guidance}: this model's priors were trained without condition "
                             f"dropout, so only 1 is possible")
        return float(guidance)

    def _options(self, temperature: float, top_k: int, top_p: float, guidance: float | None,
                 default: float | None = None) -> SamplingOptions:
        if guidance is None:
            guidance = self.edit_guidance if default is None else default
        return SamplingOptions(temperature, top_k, top_p, float(guidance))

    def generate(self, pitch: int, family: str, n: int = 1, temperature: float = 1.0,
                 top_p: float = 0.8, top_k: int = 0, seed: int | None = None,
                 use_cache: bool | None = None, guidance: float | None = None) -> list[Codemaps]:
        """n new sounds for a pitch (MIDI 24–84) and family: top from a fully masked map, then bottom.

        guidance: classifier-free guidance scale (`SamplingOptions.guidance`); None uses
        `default_guidance`.
        """
        pitch_index, family_index = self._labels(pitch, family, n)
        return self._draw(pitch_index, family_index, temperature, top_p, top_k, seed, use_cache, guidance)

    def _draw(self, pitch_index, family_index, temperature, top_p, top_k, seed, use_cache,
              guidance, generator: torch.Generator | None = None) -> list[Codemaps]:
        options = self._options(temperature, top_k, top_p, guidance, self.default_guidance)
        generator = generator or self._generator(seed)
        with _thread_limit(self.sampling_threads if self.device.type == "cpu" else None):
            top, bottom = generate_codes(self.top_prior, self.bottom_prior, pitch_index=pitch_index,
                                         family_index=family_index, options=options,
                                         generator=generator, use_cache=self._cache(use_cache))
        return _to_maps(top, bottom)

    def generate_sounds(self, pitch: int, family: str, n: int = 1, temperature: float = 1.0,
                        top_p: float = 0.8, top_k: int = 0, seed: int | None = None,
                        use_cache: bool | None = None, guidance: float | None = None,
                        candidates: int | None = None,
                        on_decoding: Callable[[], None] | None = None,
                        pick_on: str | None = None) -> GeneratedSounds:
        """n new sounds, decoded; each picked on pitch from `candidates` draws (ours, not the paper's).

        All n × candidates draws are sampled from one stream seeded with `seed` (in batches of at
        most MAX_VARIATIONS draws) and scored with `pitch_selection.harmonic_pitch_score` against
        `pitch`; each sound keeps the first of its group on pitch, else the best scored
        (`pitch_selection.first_on_pitch`). pick_on (`models.picking`; None: the
        model's `pick_on`): "full" draws and decodes every candidate whole; "previews" draws only
        the candidates' top maps, scores them decoded alone, and draws a bottom map for the kept
        top only. candidates: None uses `self.candidates` (`DEFAULT_CANDIDATES`); 1 returns the
        priors' draws as `generate` gives them. on_decoding: called once sampling is done, before
        the kept sounds are decoded (progress reports).
        """
        candidates = check_candidates(self.candidates if candidates is None else candidates)
        pick_on = check_pick_on(self.pick_on if pick_on is None else pick_on)
        if pick_on == "previews" and candidates > 1:
            return self._draw_tops_and_pick(pitch, family, n, candidates, seed, on_decoding,
                                            self._options(temperature, top_k, top_p, guidance,
                                                          self.default_guidance), use_cache)
        return self._draw_and_pick(
            pitch, family, n, candidates, seed, on_decoding,
            lambda pitch_rows, family_rows, generator: self._draw(
                pitch_rows, family_rows, temperature, top_p, top_k, seed, use_cache, guidance, generator))

    def regenerate_bottom_sounds(self, maps: Codemaps, pitch: int, family: str, n: int = 1,
                                 temperature: float = 1.0, top_p: float = 0.8, top_k: int = 0,
                                 seed: int | None = None, use_cache: bool | None = None,
                                 guidance: float | None = None, candidates: int | None = None,
                                 on_decoding: Callable[[], None] | None = None) -> GeneratedSounds:
        """`regenerate_bottom`, decoded, each new bottom picked on pitch from `candidates` draws
        (as `generate_sounds`; the top map is kept bit-for-bit in every draw). candidates: None uses
        `bottom_candidates`."""
        candidates = check_candidates(self.bottom_candidates if candidates is None else candidates)
        if not isinstance(maps, Codemaps):
            raise ValueError(f"maps must be a Codemaps, got {type(maps).__name__}")
        options = self._options(temperature, top_k, top_p, guidance)
        whole_bottom = np.ones(constants.BOTTOM_SHAPE, dtype=bool)
        return self._draw_and_pick(
            pitch, family, n, candidates, seed, on_decoding,
            lambda pitch_rows, family_rows, generator: self._inpaint(
                maps, None, whole_bottom, pitch_rows, family_rows, options, seed, use_cache, generator))

    def _draw_and_pick(self, pitch, family, n, candidates, seed, on_decoding,
                       draw: Callable[[torch.Tensor, torch.Tensor, torch.Generator], list[Codemaps]]
                       ) -> GeneratedSounds:
        """n × candidates draws of `draw(pitch_rows, family_rows, generator)`, from one stream seeded
        with `seed` in batches of at most MAX_VARIATIONS draws, then `pick_on_pitch`."""
        pitch_index, family_index = self._labels(pitch, family, n)
        pitch_rows, family_rows = pitch_index.repeat_interleave(candidates), family_index.repeat_interleave(candidates)
        generator = self._generator(seed)
        drawn = []
        for batch in draw_batches(n, candidates):
            drawn += draw(pitch_rows[batch], family_rows[batch], generator)
        if on_decoding is not None:
            on_decoding()
        return self.pick_on_pitch(drawn, pitch, candidates)

    def pick_on_pitch(self, drawn: list[Codemaps], pitch: int, candidates: int) -> GeneratedSounds:
        """Decode `drawn` (consecutive groups of `candidates` draws, one group per sound) and keep
        from each group the draw whose spectrum sits best on `pitch` (`pitch_selection`)."""
        candidates = check_candidates(candidates)
        if not drawn or len(drawn) % candidates:
            raise ValueError(f"{len(drawn)} draws do not split into groups of {candidates}")
        n = len(drawn) // candidates
        audio = self.decode(drawn)
        if candidates == 1:
            return GeneratedSounds(list(drawn), [float("nan")] * n, 1, audio, list(range(n)), drawn_audio=audio)
        kept, scores = pick_groups(audio, pitch, candidates)
        return GeneratedSounds([drawn[k] for k in kept], scores, candidates, audio[kept], kept, drawn_audio=audio)

    def _draw_tops_and_pick(self, pitch, family, n, candidates, seed, on_decoding, options: SamplingOptions,
                            use_cache) -> GeneratedSounds:
        """n × candidates top maps from one stream seeded with `seed`, each scored on pitch decoded
        alone (`decode_top`); then, from the same stream, one bottom map under each kept top."""
        pitch_index, family_index = self._labels(pitch, family, n)
        pitch_rows, family_rows = pitch_index.repeat_interleave(candidates), family_index.repeat_interleave(candidates)
        generator = self._generator(seed)
        tops = []
        with _thread_limit(self.sampling_threads if self.device.type == "cpu" else None):
            for batch in draw_batches(n, candidates):
                tops.append(generate_top_codes(self.top_prior, pitch_index=pitch_rows[batch],
                                               family_index=family_rows[batch], options=options,
                                               generator=generator, use_cache=self._cache(use_cache)))
        tops = torch.cat(tops)
        previews = self.decode_top(tops)
        kept, scores = pick_groups(previews, pitch, candidates)
        top = tops[kept]
        bottom = torch.zeros((n,) + constants.BOTTOM_SHAPE, dtype=torch.long, device=self.device)
        with _thread_limit(self.sampling_threads if self.device.type == "cpu" else None):
            top, bottom = inpaint_codes(self.top_prior, self.bottom_prior, top, bottom, None,
                                        np.ones(constants.BOTTOM_SHAPE, dtype=bool), pitch_index=pitch_index,
                                        family_index=family_index, options=options, generator=generator,
                                        use_cache=self._cache(use_cache))
        if on_decoding is not None:
            on_decoding()
        maps = _to_maps(top, bottom)
        return GeneratedSounds(maps, scores, candidates, self.decode(maps), kept, previews=previews)

    def inpaint(self, maps: Codemaps, layer: str, mask: np.ndarray, pitch: int, family: str,
                n: int = 1, temperature: float = 1.0, top_p: float = 0.8, top_k: int = 0,
                seed: int | None = None, use_cache: bool | None = None,
                guidance: float | None = None) -> list[Codemaps]:
        """n variations of maps with the masked cells of `layer` resampled.

        A top mask also resamples the bottom cells under it (mask upsampled ×2); a bottom mask
        resamples only the bottom. Every cell outside the mask is kept bit-for-bit. guidance: None
        uses `edit_guidance` (1.0).
        """
        if not isinstance(maps, Codemaps):
            raise ValueError(f"maps must be a Codemaps, got {type(maps).__name__}")
        if layer not in LAYERS:
            raise ValueError(f"unknown layer {layer!r}; expected 'top' or 'bottom'")
        mask = _check_mask(layer, mask)
        pitch_index, family_index = self._labels(pitch, family, n)
        options = self._options(temperature, top_k, top_p, guidance)
        return self._inpaint(maps, mask if layer == "top" else None, mask if layer == "bottom" else None,
                             pitch_index, family_index, options, seed, use_cache)

    def regenerate_bottom(self, maps: Codemaps, pitch: int, family: str, n: int = 1,
                          temperature: float = 1.0, top_p: float = 0.8, top_k: int = 0,
                          seed: int | None = None, use_cache: bool | None = None,
                          guidance: float | None = None) -> list[Codemaps]:
        """Keep the top map, sample a whole new bottom map: same structure, new timbre."""
        if not isinstance(maps, Codemaps):
            raise ValueError(f"maps must be a Codemaps, got {type(maps).__name__}")
        pitch_index, family_index = self._labels(pitch, family, n)
        options = self._options(temperature, top_k, top_p, guidance)
        return self._inpaint(maps, None, np.ones(constants.BOTTOM_SHAPE, dtype=bool), pitch_index,
                             family_index, options, seed, use_cache)

    def _inpaint(self, maps, top_mask, bottom_mask, pitch_index, family_index, options, seed,
                 use_cache, generator: torch.Generator | None = None) -> list[Codemaps]:
        self.check_codes([maps])   # the kept cells reach the priors' embeddings
        n = pitch_index.shape[0]
        top = torch.as_tensor(maps.top, device=self.device).expand(n, -1, -1).clone()
        bottom = torch.as_tensor(maps.bottom, device=self.device).expand(n, -1, -1).clone()
        generator = generator or self._generator(seed)
        with _thread_limit(self.sampling_threads if self.device.type == "cpu" else None):
            top, bottom = inpaint_codes(self.top_prior, self.bottom_prior, top, bottom, top_mask,
                                        bottom_mask, pitch_index=pitch_index, family_index=family_index,
                                        options=options, generator=generator,
                                        use_cache=self._cache(use_cache))
        return _to_maps(top, bottom)

    def _labels(self, pitch, family, n) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(pitch, bool) or not float(pitch).is_integer():
            raise ValueError(f"pitch must be a whole MIDI number, got {pitch!r}")
        pitch = constants.check_pitch(int(pitch))
        if not isinstance(family, str):
            raise ValueError(f"family must be a family name, got {family!r}")
        family = constants.family_index(family)
        if isinstance(n, bool) or int(n) != n or not (1 <= int(n) <= MAX_VARIATIONS):
            raise ValueError(f"number of variations must be 1-{MAX_VARIATIONS}, got {n!r}")
        n = int(n)
        return (torch.full((n,), pitch - constants.PITCH_MIN, dtype=torch.long, device=self.device),
                torch.full((n,), family, dtype=torch.long, device=self.device))

    def _generator(self, seed: int | None) -> torch.Generator:
        generator = torch.Generator(device=self.device)
        if seed is None:
            generator.seed()
        else:
            if isinstance(seed, bool) or int(seed) != seed or seed < 0:
                raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
            generator.manual_seed(int(seed))
        return generator

    def _cache(self, use_cache: bool | None) -> bool:
        return self.use_cache if use_cache is None else bool(use_cache)

    # --- housekeeping -------------------------------------------------------------------------
    def warm_up(self, guidance_scales: tuple[float, ...] | None = None, pitch_scores: bool = True) -> float:
        """Run every path once (transform, VQ-VAE, both samplers) so the first request is not slower.

        guidance_scales: the scales to warm the samplers at (guided sampling runs twice the rows);
        None warms `edit_guidance` and `default_guidance`. pitch_scores: also score a tone on pitch
        (imports librosa, about a second; the daemon does that on a thread of its own instead).
        Returns the seconds it took.
        """
        start = time.perf_counter()
        silence = np.zeros(constants.NUM_SAMPLES, dtype=np.float32)
        maps = self.encode(silence)
        self.decode(maps)
        if self.pick_on == "previews":
            self.decode_top(maps)
        if pitch_scores:   # the pitch score of picked draws (librosa's STFT and harmonic interpolation)
            tone = np.sin(2 * np.pi * 440.0 * np.arange(constants.NUM_SAMPLES) / constants.SAMPLE_RATE)
            best_on_pitch(tone[None].astype(np.float32), 69)
        mask = np.zeros(constants.TOP_SHAPE, dtype=bool)
        mask[-1, -1] = True   # one top cell and its 4 bottom cells: every sampling op, a few tokens
        scales = guidance_scales or (self.edit_guidance, self.default_guidance)
        for guidance in dict.fromkeys(scales):
            self.inpaint(maps[0], "top", mask, constants.PITCH_MIN, constants.FAMILIES[0], seed=0,
                         guidance=guidance)
        return time.perf_counter() - start

    def info(self) -> dict:
        """Name, size, parameter counts, device, sampler and training summaries."""
        counts = {"vqvae": parameter_count(self.vqvae), "top_prior": parameter_count(self.top_prior),
                  "bottom_prior": parameter_count(self.bottom_prior)}
        return {"name": self.name, "size": self.size, "parameters": counts,
                "total_parameters": sum(counts.values()), "device": str(self.device),
                "threads": torch.get_num_threads(), "sampling_threads": self.sampling_threads,
                "kv_cache": self.use_cache, "default_guidance": self.default_guidance,
                "edit_guidance": self.edit_guidance, "candidates": self.candidates, "pick_on": self.pick_on,
                "bottom_dropout": self.bottom_dropout,
                "step_precision": str(self.top_prior.step_precision).removeprefix("torch."),
                "compiled_step": self.compiled_step,
                "vqvae_config": self.vqvae.config.to_dict(),
                "prior_config": {"top": self.top_prior.config.to_dict(),
                                 "bottom": self.bottom_prior.config.to_dict()},
                "normalization_stats": self.stats.to_dict(), "training": self.training}


def _size_name(vqvae: VQVAE2, top: TopPrior, bottom: BottomPrior) -> str:
    """The named size whose configs all three components have, else "custom"."""
    for size in PRIOR_SIZES:
        prior = PriorConfig.from_size(size)
        # the unconditioned input (condition dropout), the labels in every layer, the pitch comb and the
        # previous column add inputs, and groups of bottom cells a small head: none of them is a size
        extras = {"unconditional": False, "label_layers": False, "pitch_comb": False, "bottom_group": 1,
                  "previous_column": False}
        if (vqvae.config == VQVAE2Config.from_size(size)
                and dataclasses.replace(top.config, **extras) == prior
                and dataclasses.replace(bottom.config, **extras) == prior):
            return size
    return "custom"


@contextmanager
def _thread_limit(threads: int | None):
    """Run the block with at most `threads` torch CPU threads (None: unchanged)."""
    previous = torch.get_num_threads()
    if threads is None or threads >= previous:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _set_threads(threads: int | None) -> None:
    if threads is None:
        return
    if isinstance(threads, bool) or int(threads) != threads or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    torch.set_num_threads(int(threads))


def _as_map_list(maps) -> list[Codemaps]:
    if isinstance(maps, Codemaps):
        maps = [maps]
    maps = list(maps)
    if not maps:
        raise ValueError("no codemaps to decode")
    for i, m in enumerate(maps):
        if not isinstance(m, Codemaps):
            raise ValueError(f"item {i} is a {type(m).__name__}, not Codemaps")
    return maps


def _to_maps(top: torch.Tensor, bottom: torch.Tensor) -> list[Codemaps]:
    top, bottom = top.cpu().numpy(), bottom.cpu().numpy()
    return [Codemaps(t, b) for t, b in zip(top, bottom)]


def _check_mask(layer: str, mask) -> np.ndarray:
    shape = layer_shape(layer)
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise ValueError(f"{layer} mask must have shape {shape}, got {mask.shape}")
    if mask.dtype != bool:
        if not np.isin(mask, (0, 1)).all():
            raise ValueError(f"{layer} mask must be boolean (or 0/1), got values {np.unique(mask)[:5]}")
        mask = mask.astype(bool)
    return mask


def vocabulary_mismatch(vqvae: VQVAE2, top_prior: TopPrior, bottom_prior: BottomPrior) -> str:
    """What in the priors' vocabularies disagrees with the VQ-VAE's codebooks ('' when nothing)."""
    top, bottom = vqvae.config.codebook_sizes
    problems = []
    if top_prior.config.codebook_size != top:
        problems.append(f"the top prior draws {top_prior.config.codebook_size} codes")
    if bottom_prior.config.codebook_size != bottom:
        problems.append(f"the bottom prior draws {bottom_prior.config.codebook_size} codes")
    if bottom_prior.config.context_codebook_size != top:
        problems.append(f"the bottom prior reads {bottom_prior.config.context_codebook_size} top codes")
    if not problems:
        return ""
    return f"{' and '.join(problems)}, but the VQ-VAE's codebooks hold {top} (top) and {bottom} (bottom)"
