"""Where the shipped model and the Max for Live device are, in a checkout and in an installed package.

The wheel carries both: the repository's `models/` folder is installed as the data-only package
`notono_live.shipped_models` and `max_for_live/` as `notono_live.shipped_device` (pyproject.toml maps
them), so `notono-live serve` run from any folder finds the model with no checkout. The rule, first
match wins:

1. `$NOTONO_MODELS` (a model folder) or `$NOTONO_DEVICE` (an `.amxd` file), when set;
2. the installed package's copy (in an editable install, the checkout's folders themselves).
"""
from __future__ import annotations

import os
from pathlib import Path

MODELS_ENV = "NOTONO_MODELS"
DEVICE_ENV = "NOTONO_DEVICE"
DEVICE_NAME = "NOTONO Live.amxd"
MODEL_FILES = ("vqvae.json", "vqvae.safetensors", "top_prior.json", "top_prior.safetensors",
               "bottom_prior.json", "bottom_prior.safetensors")
_PACKAGE = Path(__file__).resolve().parent
_CHECKOUT = _PACKAGE.parent


def _package_folder(package: str, checkout_folder: str) -> Path:
    """The installed copy (`notono_live/<package>/` in site-packages), else the checkout's folder."""
    installed = _PACKAGE / package
    return installed if installed.is_dir() else _CHECKOUT / checkout_folder


def models_folder() -> Path:
    """The folder of the model the daemon loads by default."""
    env = os.environ.get(MODELS_ENV)
    if env:
        return Path(env).expanduser()
    return _package_folder("shipped_models", "models")


def device_file() -> Path:
    """The frozen Max for Live device that `install-device` copies."""
    env = os.environ.get(DEVICE_ENV)
    if env:
        return Path(env).expanduser()
    return _package_folder("shipped_device", "max_for_live") / DEVICE_NAME
