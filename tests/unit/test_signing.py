"""Signed links: the key a process signs with, and what a signature covers."""

from __future__ import annotations

import stat
from pathlib import Path

from bulkops.config import Settings
from bulkops.services.signing import signature, signing_key, valid_signature


def test_without_a_configured_key_one_is_generated_once_and_kept(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", dev=True)
    key = signing_key(settings)
    kept = tmp_path / "data" / "signing-key"
    assert kept.read_text().strip().encode() == key
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert len(key) >= 32
    # Another process (another Settings) with the same data folder signs alike.
    assert signing_key(Settings(data_dir=tmp_path / "data", dev=True)) == key
    assert signing_key(Settings(data_dir=tmp_path / "other", dev=True)) != key


def test_a_configured_key_is_used_as_given(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, signing_key="s3cret")
    assert signing_key(settings) == b"s3cret"
    assert not (tmp_path / "signing-key").exists()


def test_a_signature_covers_the_path_the_tenant_and_the_expiry() -> None:
    key = b"k"
    sig = signature(key, path="/exports/t/f.csv", tenant_id="t", expires=100)
    assert valid_signature(key, sig, path="/exports/t/f.csv", tenant_id="t", expires=100)
    for changed in (
        {"path": "/exports/t/g.csv", "tenant_id": "t", "expires": 100},
        {"path": "/exports/t/f.csv", "tenant_id": "u", "expires": 100},
        {"path": "/exports/t/f.csv", "tenant_id": "t", "expires": 101},
    ):
        assert not valid_signature(key, sig, **changed)
    assert not valid_signature(b"other", sig, path="/exports/t/f.csv", tenant_id="t", expires=100)
    assert not valid_signature(
        key, "é" + sig[1:], path="/exports/t/f.csv", tenant_id="t", expires=100
    )
