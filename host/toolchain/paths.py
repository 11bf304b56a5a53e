"""Where the toolchains find the guest SDKs and keep their caches.

The SDKs and the WIT world are package data of `routeiq.abi` (abi/ in a source checkout,
site-packages/routeiq/abi in an installed wheel), so nothing needs a source tree. Plugin
builds cache in the user cache dir, never beside the installed package or in a checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

import routeiq.abi


def abi_dir() -> Path:
    """The directory holding sdk/ (rust, c, python) and wit/."""
    return Path(routeiq.abi.__file__).resolve().parent


def user_cache_dir() -> Path:
    """$ROUTEIQ_CACHE_DIR, else $XDG_CACHE_HOME/routeiq, else ~/.cache/routeiq."""
    explicit = os.environ.get("ROUTEIQ_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "routeiq"


def guest_cache() -> Path:
    """Built guests (and SDK rlibs), keyed by content hash: safe to share between projects."""
    return user_cache_dir() / "guests"


def module_cache() -> Path:
    """Compiled modules and components (`plugin test`), keyed by their bytes and the engine
    settings, so a test run after a build deserializes instead of compiling again."""
    return user_cache_dir() / "modules"
