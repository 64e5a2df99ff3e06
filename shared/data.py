"""Every external file the course uses, and one way to get each of them.

``REGISTRY`` lists each file once: its name, where it can be downloaded, its sha256 and its size.
``fetch(name)`` returns a local path to a verified copy, looking in this order:

1. the cache directory (``$LLMFS_CACHE_DIR``, default ``~/.cache/llmfs``);
2. the offline mirror, a folder named by ``$LLMFS_DATA_MIRROR`` that holds files under their registry
   names (CI and the tests point it at ``../shared/data``);
3. the network: each URL in turn, streamed to a temporary file beside the cache entry, with a
   progress bar, then checked (size and sha256) and renamed into place. An interrupted or corrupted
   download therefore never leaves anything at the final path.

A file whose sha256 does not match is never returned. ``seed_tiktoken_cache()`` puts GPT-2's
``encoder.json`` and ``vocab.bpe`` where tiktoken looks for them, so that
``tiktoken.get_encoding("gpt2")`` works offline exactly as the book writes it.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from shared.files import atomic_write

MIRROR_ENV = "LLMFS_DATA_MIRROR"
CACHE_ENV = "LLMFS_CACHE_DIR"
_CHUNK = 1 << 20


class DataError(RuntimeError):
    """A data file could not be provided: missing, offline, or not the expected bytes."""


@dataclass(frozen=True)
class DataFile:
    name: str  # the file's name in the cache and in the mirror
    urls: tuple[str, ...]  # tried in order
    sha256: str  # of the file itself (of the archive member when `member` is set)
    size: int  # bytes, likewise
    source: str  # where it comes from and under which license
    member: str | None = None  # set when each URL serves a zip archive that contains the file


_RASBT_RAW = "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main"
_GPT2_ENCODINGS = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main"

REGISTRY: dict[str, DataFile] = {
    f.name: f
    for f in [
        DataFile(
            name="the-verdict.txt",
            urls=(f"{_RASBT_RAW}/ch02/01_main-chapter-code/the-verdict.txt",),
            sha256="b41e41a68f0398a3154ae69e2e4c0e2694e17fe0d66730536837f1b01935b31f",
            size=20479,
            source="'The Verdict' by Edith Wharton (1908), public domain; copy from rasbt/LLMs-from-scratch",
        ),
        DataFile(
            name="SMSSpamCollection",
            urls=(
                "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip",
                "https://f001.backblazeb2.com/file/LLMs-from-scratch/sms%2Bspam%2Bcollection.zip",
            ),
            sha256="7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d",
            size=477907,
            member="SMSSpamCollection",
            source="SMS Spam Collection, Almeida & Gomez Hidalgo (2011), UCI ML Repository #228, CC BY 4.0",
        ),
        DataFile(
            name="instruction-data.json",
            urls=(f"{_RASBT_RAW}/ch07/01_main-chapter-code/instruction-data.json",),
            sha256="7e09a9af353722ca15c18bc580f093f9c39d3178335a75177319cb1e1d163944",
            size=203524,
            source="1,100 instruction/input/output entries from rasbt/LLMs-from-scratch, Apache-2.0",
        ),
        DataFile(
            name="encoder.json",
            urls=(f"{_GPT2_ENCODINGS}/encoder.json",),
            sha256="196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
            size=1042301,
            source="OpenAI GPT-2 vocabulary (50,257 tokens), Modified MIT License",
        ),
        DataFile(
            name="vocab.bpe",
            urls=(f"{_GPT2_ENCODINGS}/vocab.bpe",),
            sha256="1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
            size=456318,
            source="OpenAI GPT-2 BPE merges (50,000), Modified MIT License",
        ),
    ]
}


def cache_dir() -> Path:
    """Where downloaded files are kept: ``$LLMFS_CACHE_DIR``, else ``~/.cache/llmfs``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "llmfs"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _matches(path: Path, entry: DataFile) -> bool:
    return path.stat().st_size == entry.size and sha256_of(path) == entry.sha256


def _lookup(name: str | DataFile) -> DataFile:
    if isinstance(name, DataFile):
        return name
    try:
        return REGISTRY[name]
    except KeyError:
        raise DataError(
            f"No data file is registered as {name!r}; known files: {', '.join(REGISTRY)}"
        ) from None


def fetch(name: str | DataFile, *, progress: bool = True) -> Path:
    """A local path to the verified file ``name`` (a registry name, or a DataFile for files not in it)."""
    entry = _lookup(name)
    cached = cache_dir() / entry.name
    if cached.is_file():
        if _matches(cached, entry):
            return cached
        cached.unlink()  # a stale or damaged copy: replace it below

    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        candidate = Path(mirror).expanduser() / entry.name
        if candidate.is_file():
            if not _matches(candidate, entry):
                raise DataError(
                    f"{candidate} is not the expected file: its sha256 is {sha256_of(candidate)}, "
                    f"expected {entry.sha256} ({entry.size:,} bytes). Replace it with an intact copy "
                    f"or unset {MIRROR_ENV} to download it."
                )
            return candidate

    cached.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in entry.urls:
        try:
            _download(url, entry, cached, progress)
            return cached
        except (OSError, http.client.HTTPException, zipfile.BadZipFile, DataError) as err:
            failures.append(f"  {url}: {err}")
    where = (
        f"{MIRROR_ENV}={mirror} has no file named {entry.name!r}" if mirror else f"{MIRROR_ENV} is not set"
    )
    raise DataError(
        f"Could not get {entry.name!r}. Tried:\n" + "\n".join(failures) + "\n"
        f"If this machine is offline, copy the file ({entry.size:,} bytes, sha256 {entry.sha256}) "
        f"into a folder and set {MIRROR_ENV} to that folder ({where}), or place it at {cached}."
    )


def _download(url: str, entry: DataFile, dest: Path, progress: bool) -> None:
    """Stream ``url`` to a temporary file beside ``dest``; move it into place only once verified."""
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{entry.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            expected = response.headers.get("Content-Length")
            expected = int(expected) if expected else None
            written = 0
            with tqdm(
                total=expected, unit="B", unit_scale=True, desc=entry.name, disable=not progress
            ) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
        if expected is not None and written != expected:
            raise DataError(f"download cut short: got {written:,} of {expected:,} bytes")
        if entry.member:
            _extract_member(tmp, entry.member)
        if not _matches(tmp, entry):
            raise DataError(
                f"the downloaded file has sha256 {sha256_of(tmp)} and {tmp.stat().st_size:,} bytes, "
                f"expected {entry.sha256} and {entry.size:,} bytes; it was discarded"
            )
        os.replace(tmp, dest)  # atomic on the same file system
    finally:
        tmp.unlink(missing_ok=True)


def _extract_member(archive: Path, member: str) -> None:
    """Replace the zip file ``archive`` by its member ``member``."""
    extracted = archive.with_name(archive.name + ".member")
    try:
        with zipfile.ZipFile(archive) as zf, zf.open(member) as src, open(extracted, "wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
        os.replace(extracted, archive)
    finally:
        extracted.unlink(missing_ok=True)


# tiktoken caches each file under the sha1 of the URL it downloads it from.
TIKTOKEN_GPT2_CACHE_KEYS = {
    "vocab.bpe": "6d1cbeee0f20b3d9449abfede4726ed8212e3aee",
    "encoder.json": "6c7ea1a7e38e3a7f062df639a5b80947f075ffe6",
}


def seed_tiktoken_cache() -> Path | None:
    """Make ``tiktoken.get_encoding("gpt2")`` work offline by filling tiktoken's cache from ``fetch``.

    Uses ``$TIKTOKEN_CACHE_DIR`` when set; otherwise sets it to ``<cache_dir>/tiktoken`` for this process.
    """
    if os.environ.get("TIKTOKEN_CACHE_DIR") == "":
        # An empty value switches tiktoken's cache off: respect that, tiktoken will download instead.
        return None
    cache = Path(os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(cache_dir() / "tiktoken")))
    cache.mkdir(parents=True, exist_ok=True)
    for name, key in TIKTOKEN_GPT2_CACHE_KEYS.items():
        target = cache / key
        if target.is_file() and _matches(target, REGISTRY[name]):
            continue
        with open(fetch(name), "rb") as src, atomic_write(target) as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
    return cache


def gpt2_encoding():
    """tiktoken's GPT-2 encoding, seeded from the course's data first (works offline with the mirror)."""
    import tiktoken

    seed_tiktoken_cache()
    return tiktoken.get_encoding("gpt2")


HUB_ENDPOINT_ENV = "HF_ENDPOINT"
_PROXY_ENVS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether a connection to the Hugging Face hub (``$HF_ENDPOINT``, default huggingface.co) opens within
    ``timeout`` seconds. Behind a proxy (``HTTPS_PROXY``, ``ALL_PROXY``) the answer is yes: only the
    proxy can tell."""
    import socket
    import urllib.parse

    if any(os.environ.get(name) for name in _PROXY_ENVS):
        return True
    url = urllib.parse.urlsplit(os.environ.get(HUB_ENDPOINT_ENV) or "https://huggingface.co")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def hub_offline_unless_reachable(timeout: float = 2.0) -> bool:
    """Put ``huggingface_hub`` in offline mode (``HF_HUB_OFFLINE``) for this process when the hub cannot be
    reached, so that a file missing from its cache fails at once instead of after five retries (about
    25 s); files in its cache and in the offline mirror are found as before. Returns whether it is
    offline now. For the commands, before they load GPT-2's weights."""
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        return True
    if hub_reachable(timeout):
        return False
    os.environ["HF_HUB_OFFLINE"] = "1"  # read when huggingface_hub is imported
    try:
        import huggingface_hub.constants
    except ImportError:
        return True
    huggingface_hub.constants.HF_HUB_OFFLINE = True  # read at every request once it is imported
    return True
