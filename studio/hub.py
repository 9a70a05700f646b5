"""Concept banks on the Hugging Face Hub: ``hf://owner/repo`` or ``hf://owner/repo/sub/folder`` -> a local bank folder.

A Hub id names a bank folder in a model repo (its root, or a subfolder), or a folder holding one bank folder per
concept, as a local ``bank`` does (studio/banks.py). Only the bank's own files are fetched (``BANK_FILES``), with
huggingface_hub into its cache (``HF_HUB_CACHE``, read when a bank is fetched), and the folder in the cache is returned:
loading and checking it is studio/banks.py's job, exactly as for a local bank, so nothing here reads a bank.

A repo is refused before anything is fetched when its bank folder holds anything but the bank's files (README.md and
.gitattributes are fine at the root) or when it holds a pickle anywhere: a bank is safetensors and JSON, and a repo
that ships more is not one the studio vouches for. Offline (``HF_HUB_OFFLINE=1``, or the Hub unreachable) the cached
copy is used, after the same check. Every failure is one BankError line: unknown or private repo, no network and
nothing cached, a cache folder that cannot be written or a full disk.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from pathlib import Path

from probes.bank import META_FILE, TENSORS_FILE
from studio.errors import BankError

SCHEME = "hf://"
PLOTS = ("auc_by_layer.png", "auc_by_layer.html")
BANK_FILES = (META_FILE, TENSORS_FILE, *PLOTS)  # all a bank folder on the Hub may hold
ROOT_EXTRAS = ("README.md", ".gitattributes")  # the model card and git's LFS settings, at the repo's root only
# Files that may unpickle code when loaded (torch.load, joblib, pickle): never in a repo the studio loads.
PICKLE_SUFFIXES = (".pkl", ".pickle", ".bin", ".pt", ".pth", ".ckpt", ".joblib")
# An owner or repo name as the Hub allows it: letters, digits, '-', '_', '.', not at the ends, no '--' or '..'.
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO_ID = re.compile(rf"(?P<owner>{_NAME})/(?P<name>{_NAME})")
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
_CACHE_FOLDER = re.compile(r"models--(?P<owner>[^/]+?)--(?P<name>[^/]+)")
SHAPE = "hf://owner/repo or hf://owner/repo/sub/folder"


def is_hub_id(text: str | None) -> bool:
    """Whether a recipe's ``bank`` names a Hub repo (``hf://...``) rather than a folder."""
    return isinstance(text, str) and text.startswith(SCHEME)


def check_repo_id(repo_id: str, what: str = "the repo id") -> str:
    """`repo_id` if it is ``owner/name`` as the Hub allows it; a BankError naming `what` otherwise."""
    if not _REPO_ID.fullmatch(repo_id) or "--" in repo_id or ".." in repo_id:
        raise BankError(
            f"{what} '{repo_id}' is not a Hub repo id: write owner/name (letters, digits, '-', '_' and '.', "
            f"not at either end, no '--' or '..')"
        )
    return repo_id


def parse(spec: str) -> tuple[str, str]:
    """``hf://owner/repo/sub/folder`` -> ("owner/repo", "sub/folder"); the subfolder is "" for the repo's root."""
    if not is_hub_id(spec):
        raise BankError(f"'{spec}' is not a Hub bank id: write {SHAPE}")
    parts = spec[len(SCHEME) :].strip("/").split("/")
    if len(parts) < 2:
        raise BankError(f"'{spec}' names no repo: write {SHAPE}")
    repo_id = check_repo_id("/".join(parts[:2]), what=f"'{spec}': the repo id")
    for segment in parts[2:]:
        if not _SEGMENT.fullmatch(segment) or segment.strip(".") == "":
            raise BankError(f"'{spec}': the subfolder part '{segment}' is not a folder name; write {SHAPE}")
    return repo_id, "/".join(parts[2:])


def hub_cache() -> Path:
    """The Hugging Face cache folder, read now (``HF_HUB_CACHE``, else the library's default, which follows
    ``HF_HOME``), so that a setting made after huggingface_hub was imported still counts."""
    from huggingface_hub import constants

    return Path(os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE).expanduser()


def hub_id_of(folder: Path) -> str | None:
    """The ``hf://`` id of a bank folder inside the Hugging Face cache (``models--owner--repo/snapshots/<commit>/...``),
    or None for any other folder: how studio/banks.py tells where a bank came from."""
    parts = Path(folder).parts
    for i in range(len(parts) - 2):
        found = _CACHE_FOLDER.fullmatch(parts[i])
        if found and parts[i + 1] == "snapshots":
            return SCHEME + "/".join([found["owner"], found["name"], *parts[i + 3 :]])
    return None


def fetch(spec: str, concept: str | None = None) -> Path:
    """The local folder of the bank `spec` names (see the module docstring), fetched into the Hugging Face cache unless
    it is there and the Hub is off or out of reach. With `concept`, an id naming a folder of bank folders gives that
    concept's. Raises BankError with one line for anything that stops it."""
    from huggingface_hub import constants

    repo_id, sub = parse(spec)
    cache = hub_cache()
    if constants.is_offline_mode():
        return _from_cache(spec, repo_id, sub, concept, cache, reason="HF_HUB_OFFLINE is set")
    _check_cache_writable(cache)
    listing = _list_online(spec, repo_id, cache)
    if listing is None:  # the Hub is out of reach: the cached copy, as huggingface_hub itself falls back to
        return _from_cache(spec, repo_id, sub, concept, cache, reason="the Hugging Face Hub cannot be reached")
    folder = _check_listing(spec, listing, sub, concept)
    snapshot = _download(spec, repo_id, folder, cache)
    _check_listing(spec, _files_under(snapshot), sub, concept)  # the cache may hold more than this download
    return snapshot / folder


# ---------------------------------------------------------------------------------------------- what a repo holds


def _check_listing(spec: str, files: list[str], sub: str, concept: str | None) -> str:
    """The bank folder inside the repo ("" for its root) given the repo's file paths; refuses pickles anywhere, files
    other than the bank's in its folder, and a folder that is not a complete bank."""
    for path in files:
        if path.lower().endswith(PICKLE_SUFFIXES):
            raise BankError(
                f"{spec} holds {path}, a pickle file that could run code when loaded; a bank is only "
                f"{META_FILE} and {TENSORS_FILE} (safetensors), so the studio does not load this repo"
            )
    prefix = f"{sub}/" if sub else ""
    folder = sub
    if f"{prefix}{META_FILE}" not in files and concept and f"{prefix}{concept}/{META_FILE}" in files:
        folder = f"{prefix}{concept}"  # a folder of bank folders, one per concept
    where = f"{folder}/" if folder else ""
    if f"{where}{META_FILE}" not in files:
        raise BankError(
            f"{spec} holds no bank: there is no {where}{META_FILE} in the repo"
            + (f" (nor {prefix}{concept}/{META_FILE})" if concept and folder == sub else "")
            + "; name the repo folder that holds one, hf://owner/repo/folder"
        )
    for path in files:
        inside = path[len(where) :] if path.startswith(where) else None
        if inside is None or (not where and inside in ROOT_EXTRAS):
            continue
        if inside not in BANK_FILES:
            raise BankError(
                f"{spec} holds {path} besides the bank's files ({', '.join(BANK_FILES)}); the studio loads only "
                f"repos whose bank folder holds nothing else"
            )
    if f"{where}{TENSORS_FILE}" not in files:
        raise BankError(f"{spec} is not a complete bank: {where}{META_FILE} has no {TENSORS_FILE} beside it")
    return folder


def _patterns(sub: str, concept: str | None) -> list[str]:
    """The bank files of `sub`, and of its `concept` folder when it is a folder of bank folders."""
    folders = [sub] + ([f"{sub}/{concept}" if sub else concept] if concept else [])
    return [f"{folder}/{name}" if folder else name for folder in folders for name in BANK_FILES]


def _files_under(folder: Path) -> list[str]:
    """The files of a snapshot folder in the cache, as repo paths (POSIX)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir())


# -------------------------------------------------------------------------------------------------- the cache


def _from_cache(spec: str, repo_id: str, sub: str, concept: str | None, cache: Path, reason: str) -> Path:
    """The bank folder in the cached snapshot of the repo's main branch, checked as a listing from the Hub would be."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    if cache.exists() and not os.access(cache, os.R_OK | os.X_OK):
        raise BankError(_cache_trouble(cache, errno.EACCES))
    try:  # the patterns of fetch's download, so that a cached listing of the whole repo asks for no more files
        snapshot = Path(
            snapshot_download(repo_id, cache_dir=cache, local_files_only=True, allow_patterns=_patterns(sub, concept))
        )
    except LocalEntryNotFoundError:
        online = " and unset HF_HUB_OFFLINE" if "OFFLINE" in reason else ""
        raise BankError(
            f"{spec} is not (completely) in the Hugging Face cache ({cache}) and {reason}; connect to the internet"
            f"{online}, or load it once while online so that it is cached"
        ) from None
    except OSError as err:
        raise BankError(_cache_trouble(cache, err.errno, err)) from None
    folder = _check_listing(spec, _files_under(snapshot), sub, concept)
    return snapshot / folder


def _check_cache_writable(cache: Path) -> None:
    """Refuse a cache folder that cannot be made or written before anything is fetched: a real write, since root passes
    access checks on folders it may not write in the end (a read-only file system)."""
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=cache):
            pass
    except OSError as err:
        raise BankError(_cache_trouble(cache, err.errno, err)) from None


def _cache_trouble(cache: Path, code: int | None, err: OSError | None = None) -> str:
    """One line for an OSError met in the cache folder, naming it and HF_HUB_CACHE."""
    fix = "or point HF_HUB_CACHE at a folder you can write"
    if code in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk holding the Hugging Face cache ({cache}) is full; free some space {fix} on another disk"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"no permission to use the Hugging Face cache folder {cache}; make it writable {fix}"
    if code in (errno.ENOTDIR, errno.EEXIST):
        return f"the Hugging Face cache folder {cache} cannot be made: a file is in the way; move it {fix}"
    return f"the Hugging Face cache folder {cache} cannot be used ({err}); {fix}"


# -------------------------------------------------------------------------------------------------- the Hub


def _list_online(spec: str, repo_id: str, cache: Path) -> list[str] | None:
    """Every file path of the repo's main branch (one request, no retries), or None when the Hub cannot be reached."""
    import httpx2
    from huggingface_hub import HfApi
    from huggingface_hub.errors import OfflineModeIsEnabled

    try:
        info = HfApi().model_info(repo_id)
    except (httpx2.TransportError, OfflineModeIsEnabled):
        return None
    except Exception as err:  # noqa: BLE001 - mapped to one line, or re-raised when it is not the Hub's
        raise _hub_error(spec, repo_id, cache, err) from None
    return sorted(s.rfilename for s in info.siblings or [])


def _download(spec: str, repo_id: str, folder: str, cache: Path) -> Path:
    """Fetch the bank's files of `folder` (nothing else) into the cache; the snapshot folder."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, cache_dir=cache, allow_patterns=_patterns(folder, None)))
    except Exception as err:  # noqa: BLE001 - mapped to one line, or re-raised when it is not the Hub's
        raise _hub_error(spec, repo_id, cache, err) from None


def _hub_error(spec: str, repo_id: str, cache: Path, err: Exception) -> Exception:
    """One BankError line for what huggingface_hub raised; anything unexpected is returned as it is (a bug)."""
    import httpx2
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    login = "set HF_TOKEN or run `hf auth login` with a token that can read it"
    if isinstance(err, GatedRepoError):
        return BankError(
            f"{spec}: the repo {repo_id} is gated; accept its terms on huggingface.co/{repo_id} and {login}"
        )
    if isinstance(err, RepositoryNotFoundError):
        return BankError(
            f"{spec}: no repo {repo_id} on the Hugging Face Hub, or it is private; check the id, or {login}"
        )
    if isinstance(err, HfHubHTTPError):
        status = err.response.status_code if err.response is not None else None
        if status in (401, 403):
            return BankError(f"{spec}: the Hub refused access to {repo_id} (HTTP {status}); {login}")
        return BankError(f"{spec}: the Hugging Face Hub answered HTTP {status} for {repo_id}; try again later")
    if isinstance(err, (LocalEntryNotFoundError, httpx2.TransportError, OfflineModeIsEnabled)):
        return BankError(
            f"{spec}: the Hugging Face Hub cannot be reached and the bank is not (completely) in the cache ({cache}); "
            f"connect to the internet, or load it once while online so that it is cached"
        )
    if isinstance(err, OSError):
        return BankError(_cache_trouble(cache, err.errno, err))
    return err
