"""API keys (hashed, tenants, the keys file re-read) and the per-key token bucket."""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest

from agon.connectors.gateway.keys import Keyring, add_key, hash_key
from agon.connectors.gateway.limits import Bucket, Refusal, seconds_to_midnight
from agon.errors import ConfigError
from agon.settings import GatewaySettings


def test_a_key_is_stored_as_its_hash_only_and_found_again(tmp_path):
    path = tmp_path / "keys.json"
    key, digest = add_key(path, "alpha")
    text = path.read_text()
    assert key not in text and digest in text and digest == hash_key(key)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    ring = Keyring({}, path)
    assert ring.lookup(key).tenant == "alpha"
    assert ring.lookup(key + "x") is None


def test_the_keys_file_is_read_again_when_it_changes(tmp_path):
    path = tmp_path / "keys.json"
    ring = Keyring({}, path)
    key, _ = add_key(path, "beta")
    os.utime(path, (1, 1))  # a new mtime, whatever the clock's resolution
    assert ring.lookup(key).tenant == "beta"


def test_configured_keys_must_be_hashes_and_tenants_plain(tmp_path):
    with pytest.raises(ConfigError, match="store hashes, never keys"):
        Keyring({"agon_not-a-hash": "alpha"}, tmp_path / "none.json")
    with pytest.raises(ConfigError, match="tenant"):
        Keyring({hash_key("k"): "no spaces please"}, tmp_path / "none.json")
    ring = Keyring({hash_key("k"): "alpha"}, tmp_path / "none.json")
    assert ring.lookup("k").tenant == "alpha" and len(ring) == 1


def test_a_broken_keys_file_is_a_clear_error(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [{"tenant": "alpha"}]}))
    with pytest.raises(ConfigError, match="not a keys file"):
        Keyring({}, path)


def test_the_bucket_allows_a_burst_then_the_rate():
    now = [0.0]
    bucket = Bucket(GatewaySettings(rate_per_s=2, burst=3), clock=lambda: now[0])
    for _ in range(3):
        bucket.take("k")
    with pytest.raises(Refusal) as refused:
        bucket.take("k")
    assert refused.value.code == "rate_limited" and refused.value.retry_after_s == 1
    bucket.take("other key")  # buckets are per key
    now[0] += 0.5  # one token back at 2/s
    bucket.take("k")
    with pytest.raises(Refusal):
        bucket.take("k")


def test_a_daily_budget_starts_again_at_utc_midnight():
    at = dt.datetime(2026, 12, 2, 23, 59, 30, tzinfo=dt.timezone.utc)
    assert seconds_to_midnight(at) == 30
