#!/bin/bash
# One GPU run of the model campaign, sized for a lent machine's 10-minute command: render a corpus
# from the carried SoundFonts, train on CUDA in bf16, and leave what to bring back in $OUT.
# Prepare .carry/ here first (bash scripts/gpu_carry.sh), then run from the repository root there,
# carrying ".carry":
#
#   bash scripts/gpu_campaign.sh                  # MODE=all (default)
#   MODE=decoder bash scripts/gpu_campaign.sh
#
# MODE=all trains a new VQ-VAE (--size reference) and then both priors on its codes, exports a model
# folder into $OUT/model, and brings the logs: what its reconstructions score is the question a CPU
# cannot answer (docs/training.md).
# MODE=decoder trains the shipped VQ-VAE's decoder on alone (`train vqvae --decoder-from models`,
# R refinement stages, default 0): the shipped priors stay valid. $OUT gets its checkpoint
# (vqvae.json, vqvae.safetensors, training_state.safetensors) and log; export it here with the priors
# runs.
# Budgets in minutes: VQVAE_MINUTES (decoder or VQ-VAE, 5), PRIOR_MINUTES (MODE=all, 1.5), so that with
# the render (about 1.5 min) the whole run ends inside 10 minutes. DEVICE=cpu with
# small budgets runs the same steps on a machine without a GPU (a smoke test; RENDER_ARGS="--pitches
# 60-62 --programs-per-family 1" renders a few notes only).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${MODE:-all}; DEVICE=${DEVICE:-cuda}; PRECISION=${PRECISION:-bf16}; R=${R:-0}
VQVAE_MINUTES=${VQVAE_MINUTES:-5}; PRIOR_MINUTES=${PRIOR_MINUTES:-1.5}
BATCH=${BATCH:-64}; WORKERS=${WORKERS:-8}; WORK=${WORK:-/tmp/notono-gpu}; RENDER_ARGS=${RENDER_ARGS:-}
OUT=${OUT:-$WORK/out}
mkdir -p "$WORK" "$OUT"
started=$(date +%s)
stamp() { echo "[$(( $(date +%s) - started )) s] $*"; }

# the packages the image lacks, installed beside it (nothing can be fetched there)
if [ -d .carry/wheels ] && ! python3 -c 'import librosa, tinysoundfont' 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$WORK/site" .carry/wheels/*.whl
    export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
notono() { python3 -m notono_live "$@"; }
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'

stamp "render"
fonts=(.carry/sf2/*.sf2)
notono data render --soundfont "${fonts[@]}" --out "$WORK/corpus" --no-progress $RENDER_ARGS | tail -n 3
common=(--corpus "$WORK/corpus" --cache "$WORK/cache" --device "$DEVICE" --precision "$PRECISION"
        --workers "$WORKERS" --checkpoint-minutes 2)

if [ "$MODE" = decoder ]; then
    stamp "decoder on the shipped VQ-VAE's codes, $R refinement stages, $VQVAE_MINUTES min"
    notono train vqvae "${common[@]}" --out "$WORK/decoder" --decoder-from models --decoder-refine "$R" \
        --batch-size "$BATCH" --bottom-dropout 0.1 --minutes "$VQVAE_MINUTES" 2>&1 | grep -v 'it/s\]' || true
    cp "$WORK"/decoder/checkpoint/*.json "$WORK"/decoder/checkpoint/*.safetensors "$WORK/decoder/log.jsonl" "$OUT/"
elif [ "$MODE" = all ]; then
    stamp "VQ-VAE (reference), $VQVAE_MINUTES min"
    notono train vqvae "${common[@]}" --out "$WORK/vqvae" --size reference --batch-size "$BATCH" \
        --bottom-dropout 0.5 --minutes "$VQVAE_MINUTES" 2>&1 | grep -v 'it/s\]' || true
    stamp "priors (small, both), $PRIOR_MINUTES min"
    notono train priors "${common[@]}" --vqvae "$WORK/vqvae" --out "$WORK/priors" --which both --size small \
        --batch-size 128 --condition-dropout 0.15 --label-layers --pitch-comb --bottom-group 4 \
        --minutes "$PRIOR_MINUTES" 2>&1 | grep -v 'it/s\]' || true
    notono train export --vqvae "$WORK/vqvae" --priors "$WORK/priors" --out "$OUT/model"
    cp "$WORK/vqvae/log.jsonl" "$OUT/vqvae_log.jsonl"; cp "$WORK/priors/log.jsonl" "$OUT/priors_log.jsonl"
else
    echo "MODE must be decoder or all, not $MODE" >&2; exit 2
fi
stamp "done"; ls -la "$OUT"
