#!/bin/bash
# Prepare what scripts/gpu_campaign.sh needs on a lent GPU machine that reaches no package registry:
# the SoundFonts small enough to travel, and wheels (Python 3.12, manylinux x86-64) of the packages
# that machine's image lacks. Run once, here, from the repository root; it fills .carry/, which git
# ignores, and the machine gets it when the run names ".carry" among the paths it carries.
#
#   bash scripts/gpu_carry.sh [SOUNDFONT.sf2 ...]    # default: TimGM6mb (pretty_midi's) and sf_GMbank
#
# Everything carried must stay under the device's 64 MiB (working tree included).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .carry/sf2 .carry/wheels
if [ $# -eq 0 ]; then
    set -- "$(python -c 'import pathlib, pretty_midi; print(pathlib.Path(pretty_midi.__file__).parent / "TimGM6mb.sf2")')" \
        /usr/share/sounds/sf2/sf_GMbank.sf2
fi
for font in "$@"; do cp -u "$font" .carry/sf2/; done
# what rendering and training import and the machine's image lacks (its package list comes with the
# device tool): tinysoundfont, soxr, soundfile (and cffi), librosa (audioread, pooch, decorator),
# platformdirs, pretty_midi (mido, importlib_resources), pyloudnorm
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d .carry/wheels \
    tinysoundfont==0.3.7 soxr soundfile librosa audioread pooch platformdirs decorator pretty_midi \
    mido pyloudnorm cffi pycparser importlib_resources
du -sh .carry
