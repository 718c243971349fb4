"""API keys: each belongs to a tenant, and only its SHA-256 is ever stored.

A key is 32 random bytes (``agon_`` + URL-safe base64), so a plain SHA-256 is
enough to store it: a slow password hash defends guessable secrets, and these
are not guessable. Keys come from ``AGON_GATEWAY_API_KEYS`` (``{"<sha256>":
"<tenant>"}``) and from the keys file that ``agon keys add`` writes
(``<home>/gateway/keys.json``), which the gateway re-reads when it changes.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from agon.errors import ConfigError
from agon.files import write_atomically

__all__ = ["Key", "Keyring", "add_key", "hash_key", "new_key"]

TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HEX = re.compile(r"^[0-9a-f]{64}$")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "agon_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Key:
    tenant: str
    key_id: str  # the hash's first 12 hex digits: names a key in logs and metrics, proves nothing


def check_tenant(tenant: str) -> str:
    if not TENANT.match(tenant):
        raise ConfigError(
            f"tenant {tenant!r}: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return tenant


def _read_file(path: Path) -> dict[str, str]:
    try:
        entries = json.loads(path.read_text()).get("keys", [])
        return {e["sha256"]: e["tenant"] for e in entries}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path}: not a keys file ({exc})") from exc


class Keyring:
    """Who a presented key belongs to; the keys file is re-read when its mtime changes."""

    def __init__(self, configured: dict[str, str], path: Path) -> None:
        for digest, tenant in configured.items():
            if not _HEX.match(digest):
                raise ConfigError(
                    f"AGON_GATEWAY_API_KEYS: {digest[:16]!r}… is not a SHA-256 in hex; "
                    "store hashes, never keys (agon keys add prints both)"
                )
            check_tenant(tenant)
        self._configured = dict(configured)
        self._path = path
        self._mtime: float | None = None
        self._keys = dict(configured)
        self._reload()

    def _reload(self) -> None:
        try:
            mtime = self._path.stat().st_mtime
        except OSError:
            mtime = None
        if mtime == self._mtime:
            return
        self._mtime = mtime
        self._keys = {**_read_file(self._path), **self._configured}

    def __len__(self) -> int:
        return len(self._keys)

    def entries(self) -> dict[str, str]:
        """sha256 hex -> tenant, of every key known now."""
        self._reload()
        return dict(self._keys)

    def lookup(self, presented: str) -> Key | None:
        self._reload()
        digest = hash_key(presented)
        tenant = self._keys.get(digest)
        return None if tenant is None else Key(tenant, digest[:12])


def add_key(path: Path, tenant: str) -> tuple[str, str]:
    """A new key for ``tenant``, its hash appended to the keys file: (key, sha256)."""
    check_tenant(tenant)
    key = new_key()
    digest = hash_key(key)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        data = {"keys": []}
    except ValueError as exc:
        raise ConfigError(f"{path}: not a keys file ({exc})") from exc
    data["keys"].append({"sha256": digest, "tenant": tenant, "created": int(time.time())})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(data, indent=2) + "\n")
    path.chmod(0o600)
    return key, digest
