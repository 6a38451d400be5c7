"""Pseudonymized visitor ids: the key from the environment and the keyed hash, in Spark (ingest)
and in Python (erase) alike."""

from __future__ import annotations

import hashlib
import hmac
import os

from pyspark.sql import Column
from pyspark.sql import functions as F

from jobs.infra.config import Config


def pseudonymize(col: Column, key: bytes) -> Column:
    """HMAC-SHA256(key, id) cut to 60 bits: a stable opaque long no one can reverse without key.

    Spelled with Spark's sha2 so it runs in the JVM (RFC 2104: H(k^opad || H(k^ipad || m))).
    """
    block = 64
    if len(key) > block:
        import hashlib

        key = hashlib.sha256(key).digest()
    key = key.ljust(block, b"\0")
    inner_pad = bytes(b ^ 0x36 for b in key)
    outer_pad = bytes(b ^ 0x5C for b in key)
    inner = F.unhex(F.sha2(F.concat(F.lit(inner_pad), F.encode(col, "UTF-8")), 256))
    outer = F.sha2(F.concat(F.lit(outer_pad), inner), 256)
    return F.conv(F.substring(outer, 1, 15), 16, 10).cast("long")


def visitor_key(cfg: Config) -> bytes | None:
    """The pseudonymization key from the environment, or None when pseudonymization is off."""
    setting = cfg.ingest.pseudonymize_visitor_ids
    if not setting.enabled:
        return None
    key = os.environ.get(setting.key_env, "")
    if not key:
        raise RuntimeError(
            f"ingest.pseudonymize_visitor_ids is on but the key variable {setting.key_env} is "
            "unset or empty; set it from your secret store (never from a file in the repo)"
        )
    return key.encode()


def bronze_visitor_id(raw_id: str, key: bytes | None) -> int:
    """The id as bronze stores it: the shop's integer id, or its keyed hash (see pseudonymize)."""
    if key is None:
        try:
            return int(raw_id)
        except ValueError:
            raise ValueError(
                f"visitor id {raw_id!r} is not an integer; without pseudonymization bronze only "
                "holds integer ids"
            ) from None
    return int(hmac.new(key, raw_id.encode(), hashlib.sha256).hexdigest()[:15], 16)
