"""Node-wide token cache shared by the task processes on one worker.

One file per grant fingerprint contains the latest token, encrypted with Fernet when a key is
given. A lock file per fingerprint (``fcntl.flock``) lets one process obtain a token while the
others wait for it, so a node makes one grant per credential per token lifetime.

NOTE: ``fcntl`` makes this module POSIX-only, as Airflow workers are. ``flock`` on NFS may not
exclude processes on other hosts, so point the cache at a local directory.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from airflow_provider_m2m.auth.token import AccessToken

log = logging.getLogger(__name__)

_FINGERPRINT = re.compile(r"^[0-9a-f]{16,128}$")
_informed_unencrypted: set[str] = set()
_informed_lock = threading.Lock()

# Maximum wait for another process's grant before this process obtains a token on its own. A grant
# ends well within it: the default TokenEndpoint gives up after about 4 minutes in the worst
# case (4 attempts of 35 s timeouts plus 90 s of backoff).
LOCK_TIMEOUT_SECONDS = 300.0
_LOCK_POLL_SECONDS = 0.02

# Token files untouched this long are deleted when a token is stored. A new secret or scope gets
# a new fingerprint, so without pruning the files of old credentials would stay forever. A week
# is longer than any token lifetime this package expects, and deleting a live token only costs
# one grant.
STALE_FILE_SECONDS = 7 * 24 * 3600.0


class TokenCache(Protocol):
    """Storage for tokens keyed by grant fingerprint, with a lock that spans processes."""

    def load(self, fingerprint: str) -> AccessToken | None: ...

    def store(self, fingerprint: str, token: AccessToken) -> None: ...

    def delete(self, fingerprint: str, access_token: str | None = None) -> None: ...

    def lock(self, fingerprint: str) -> contextlib.AbstractContextManager[object]: ...


class NullTokenCache:
    """A token cache that stores nothing: each process keeps only its in-process cache."""

    def load(self, fingerprint: str) -> AccessToken | None:
        return None

    def store(self, fingerprint: str, token: AccessToken) -> None:
        return None

    def delete(self, fingerprint: str, access_token: str | None = None) -> None:
        return None

    def lock(self, fingerprint: str) -> contextlib.AbstractContextManager[object]:
        return contextlib.nullcontext()


def _fernet_from_key(fernet_key: str | bytes) -> MultiFernet:
    """Build a Fernet cipher from a key or Airflow's comma-separated key list (first key encrypts)."""
    text = fernet_key.decode("ascii") if isinstance(fernet_key, bytes) else fernet_key
    keys = [part.strip() for part in text.split(",") if part.strip()]
    if not keys:
        raise ValueError("fernet_key is empty")
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError:
        raise ValueError("fernet_key is not a valid Fernet key (32 url-safe base64-encoded bytes)") from None


def default_cache_directory() -> Path:
    """Return ``$M2M_TOKEN_CACHE_DIR``, else a per-user directory under the system temp directory."""
    configured = os.environ.get("M2M_TOKEN_CACHE_DIR")
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / f"airflow-m2m-tokens-{os.getuid()}"


class FileTokenCache:
    """Token cache in files under ``directory``, readable only by the current user.

    Files are written with mode 0600 in a directory with mode 0700. A directory owned by another
    user is rejected, because that user could read or plant tokens. With ``fernet_key``, which is
    Airflow's ``[core] fernet_key`` and may list several comma-separated keys, tokens are encrypted
    at rest. Without one they are stored in plain JSON, and an INFO line reports it once per directory.
    """

    def __init__(self, directory: str | os.PathLike[str], fernet_key: str | bytes | None = None) -> None:
        self.directory = Path(directory)
        self._fernet = _fernet_from_key(fernet_key) if fernet_key else None
        self._prepare_directory()
        if self._fernet is None:
            with _informed_lock:
                if str(self.directory) not in _informed_unencrypted:
                    _informed_unencrypted.add(str(self.directory))
                    log.info(
                        "Token cache %s stores tokens unencrypted (mode 0600) because no Fernet key is "
                        "configured; set Airflow's [core] fernet_key to encrypt them",
                        self.directory,
                    )

    @property
    def encrypted(self) -> bool:
        return self._fernet is not None

    def _prepare_directory(self) -> None:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as err:
            raise ValueError(f"cannot create token cache directory {self.directory}: {err.strerror}") from err
        info = self.directory.lstat()
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
            raise ValueError(f"token cache path {self.directory} is not a directory")
        if info.st_uid != os.getuid():
            raise ValueError(
                f"token cache directory {self.directory} belongs to another user (uid {info.st_uid}); "
                "set M2M_TOKEN_CACHE_DIR to a directory of your own"
            )
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(self.directory, 0o700)

    def _path(self, fingerprint: str, suffix: str) -> Path:
        if not _FINGERPRINT.match(fingerprint):
            raise ValueError("fingerprint must be a lowercase hex digest")
        return self.directory / f"{fingerprint}{suffix}"

    def _encode(self, token: AccessToken) -> bytes:
        data = json.dumps(token.to_json()).encode("utf-8")
        return self._fernet.encrypt(data) if self._fernet else data

    def _decode(self, data: bytes) -> AccessToken:
        if self._fernet is not None:
            data = self._fernet.decrypt(data)
        return AccessToken.from_json(json.loads(data))

    def load(self, fingerprint: str) -> AccessToken | None:
        path = self._path(fingerprint, ".token")
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            return None
        except OSError as err:
            log.warning("Cannot read token cache file %s: %s", path, err.strerror)
            return None
        try:
            return self._decode(data)
        except InvalidToken:
            # Written with another Fernet key, or unencrypted before a key was configured.
            log.info("Ignoring token cache file %s: it does not decrypt with the configured Fernet key", path)
        except (ValueError, KeyError, TypeError):
            log.warning("Ignoring malformed token cache file %s", path)
        return None

    def store(self, fingerprint: str, token: AccessToken) -> None:
        path = self._path(fingerprint, ".token")
        data = self._encode(token)
        # Write a private temporary file and rename it, so readers never see a partial token.
        descriptor, temporary = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".token")
        try:
            os.fchmod(descriptor, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except OSError as err:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            log.warning("Cannot write token cache file %s: %s", path, err.strerror)
            return
        self._prune_stale_files()

    def _prune_stale_files(self) -> None:
        # NOTE: lock files are kept, because deleting one that another process holds would let a
        # third process lock a new file of the same name and grant at the same time. They are empty.
        cutoff = time.time() - STALE_FILE_SECONDS
        try:
            candidates = list(self.directory.glob("*.token"))
        except OSError:
            return
        for candidate in candidates:
            with contextlib.suppress(OSError):
                if candidate.stat().st_mtime < cutoff:
                    candidate.unlink()
                    log.debug("Deleted stale token cache file %s", candidate)

    def delete(self, fingerprint: str, access_token: str | None = None) -> None:
        """Remove the cached token; with ``access_token``, only if it is still that token."""
        path = self._path(fingerprint, ".token")
        if access_token is not None:
            current = self.load(fingerprint)
            if current is None or current.access_token != access_token:
                return
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    @contextlib.contextmanager
    def lock(self, fingerprint: str) -> Iterator[object]:
        """Hold an exclusive lock for ``fingerprint`` across the processes of this node.

        After ``LOCK_TIMEOUT_SECONDS`` the caller proceeds without the lock and a WARNING is
        logged, so a stuck process cannot block the others forever.
        """
        path = self._path(fingerprint, ".lock")
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        locked = False
        try:
            deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
            while True:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    locked = True
                    break
                except OSError as err:
                    if err.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                if time.monotonic() >= deadline:
                    log.warning(
                        "Token cache lock %s still held after %.0f s; obtaining a token without it",
                        path,
                        LOCK_TIMEOUT_SECONDS,
                    )
                    break
                time.sleep(_LOCK_POLL_SECONDS)
            yield descriptor
        finally:
            if locked:
                fcntl.flock(descriptor, fcntl.LOCK_UN)
            os.close(descriptor)


def default_node_cache(fernet_key: str | bytes | None = None) -> FileTokenCache | NullTokenCache:
    """Return the node-wide cache in ``default_cache_directory()``.

    The key defaults to ``$AIRFLOW__CORE__FERNET_KEY``; hooks pass Airflow's configured key.
    When the directory cannot be used, a WARNING is logged and caching stays in-process.
    """
    if fernet_key is None:
        fernet_key = os.environ.get("AIRFLOW__CORE__FERNET_KEY") or None
    try:
        return FileTokenCache(default_cache_directory(), fernet_key=fernet_key)
    except ValueError as err:
        log.warning("Node-wide token cache is off: %s", err)
        return NullTokenCache()
