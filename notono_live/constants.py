"""Every constant of the NOTONO method, in one place.

Numbers come from Bazin et al. 2020 ("Spectrogram Inpainting for Interactive Generation of
Instrument Sounds") and the NSynth dataset it trains on. Every other module imports them from
here; nothing else in the package spells them out.
"""
from __future__ import annotations

# --- Audio (NSynth): 16 kHz mono, 4 s notes held 3 s then released for 1 s.
SAMPLE_RATE = 16_000
DURATION_S = 4.0
NUM_SAMPLES = 64_000
NOTE_HOLD_S = 3.0

# --- STFT / image (GANSynth layout)
N_FFT = 2048
HOP_LENGTH = 512
WIN_LENGTH = 2048
STFT_FRAMES = 126          # centred STFT of 64000 samples with hop 512
IMAGE_FREQ = 1024          # linear bins after dropping Nyquist == number of mel rows
IMAGE_TIME = 128           # frames after padding by repeating the last frame
IMAGE_CHANNELS = 2         # 0: log (mel) power, 1: (mel) instantaneous frequency / pi

# --- Mel scale: mel(f) = Q * ln(1 + f / fb), Q so that 1000 Hz -> 1000 mel.
MEL_BREAK_FREQUENCY_HZ = 240.0   # NOTONO; 700.0 reproduces GANSynth
GANSYNTH_BREAK_FREQUENCY_HZ = 700.0
MEL_FMIN_HZ = 0.0
MEL_FMAX_HZ = 8_000.0
MEL_MIN_BAND_WIDTH_BINS = 1.5    # low mel bands are widened to this many linear bins
LOG_EPSILON = 1e-6               # ln(power + 1e-6)

# --- Phase thresholding (NOTONO's change to GANSynth)
PHASE_THRESHOLD_LOG_POWER = -13.122363377404328   # ln(2e-6)
# Griffin-Lim style passes that make the phase rebuilt from a decoded IF consistent before the final
# inverse STFT (MelIF.inverse). A decoded IF is not the derivative of one phase: straight overlap-add
# lets neighbouring frames cancel, and a reconstruction came out about 9 dB quieter and darker than
# the image it was made from. One or two passes restore the level (see MelIF's docstring).
PHASE_ITERATIONS = 1

# --- Normalisation targets for the encoder input
LOG_POWER_RANGE = (-0.8, 0.8)
IF_RANGE = (-1.0, 1.0)

# --- VQ-VAE-2 codemaps: (frequency rows, time columns), row 0 = lowest frequency
TOP_SHAPE = (32, 4)        # 1 s per column
BOTTOM_SHAPE = (64, 8)     # 0.5 s per column
TOP_TOKENS = TOP_SHAPE[0] * TOP_SHAPE[1]            # 128
BOTTOM_TOKENS = BOTTOM_SHAPE[0] * BOTTOM_SHAPE[1]   # 512
CODEBOOK_SIZE = 512
CODEBOOK_DIM = 64
COMMITMENT_WEIGHT = 0.25
EMA_DECAY = 0.99

# --- Conditioning
PITCH_MIN = 24
PITCH_MAX = 84             # inclusive
NUM_PITCHES = PITCH_MAX - PITCH_MIN + 1   # 61
FAMILIES = (
    "bass", "brass", "flute", "guitar", "keyboard", "mallet",
    "organ", "reed", "string", "synth_lead", "vocal",
)                          # NSynth's instrument_family order
NUM_FAMILIES = len(FAMILIES)

# --- General MIDI programs (0-based) rendered for each NSynth family
GM_PROGRAMS_BY_FAMILY: dict[str, tuple[int, ...]] = {
    "bass": tuple(range(32, 40)),
    "brass": tuple(range(56, 64)),
    "flute": tuple(range(72, 80)),
    "guitar": tuple(range(24, 32)),
    "keyboard": tuple(range(0, 8)),
    "mallet": tuple(range(8, 16)),
    "organ": tuple(range(16, 24)),
    "reed": tuple(range(64, 72)),
    "string": tuple(range(40, 52)),
    "synth_lead": tuple(range(80, 88)),
    "vocal": tuple(range(52, 55)),
}

# --- Data split (the reference merged NSynth train+valid and split 80/20 at random)
TRAIN_FRACTION = 0.8
DEFAULT_SPLIT_SEED = 0

# --- Evaluation
EVAL_PITCH_GRID = (24, 31, 38, 45, 52, 59, 66, 73, 80)
PITCH_TOLERANCE_CENTS = 50.0

# --- Daemon defaults
DEFAULT_OSC_HOST = "127.0.0.1"
DEFAULT_OSC_PORT = 7400          # daemon listens here
DEFAULT_REPLY_PORT = 7401        # default port the device listens on
DEFAULT_OUTPUT_SAMPLE_RATE = 44_100
# Most variations one request may ask for: they run as one batch, so this caps its memory and latency.
MAX_VARIATIONS = 16
# largest classifier-free guidance scale accepted: beyond it the guided logits are mostly the
# extrapolation, not the model
MAX_GUIDANCE = 10.0


def family_index(name: str) -> int:
    """Index of an NSynth family name; raises ValueError naming the valid ones."""
    try:
        return FAMILIES.index(name)
    except ValueError:
        raise ValueError(f"unknown instrument family {name!r}; expected one of {', '.join(FAMILIES)}") from None


def check_pitch(pitch: int) -> int:
    """Return pitch if it lies in the model's MIDI range, else raise ValueError saying the range."""
    if not (PITCH_MIN <= int(pitch) <= PITCH_MAX):
        raise ValueError(f"pitch {pitch} is outside the model's range {PITCH_MIN}-{PITCH_MAX}")
    return int(pitch)

# names of the sampling step's weight precision (`NotonoModel.set_step_precision`, `serve --step-precision`):
# auto = float16 on CPU and the model's own dtype elsewhere; float32 = the model's own fp32 kernels
STEP_PRECISIONS = ("auto", "float16", "bfloat16", "float32")
