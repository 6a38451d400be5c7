"""Visitor and item ids the lake stores for the shop's own: pseudonymized visitor ids (the key
from the environment, the keyed hash) and text ids (a 62-bit hash), in Spark (ingest) and in
Python (erase) alike."""

from __future__ import annotations

import hashlib
import hmac
import os

import xxhash
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


ID_MASK = (1 << 62) - 1


def text_id_of(text: str) -> int:
    """sources.text_id in Python, bit for bit (Spark's xxhash64 has seed 42): for erase, which
    has the shop's text of an id and no Spark."""
    return xxhash.xxh64_intdigest(text.encode(), seed=42) & ID_MASK


def bronze_visitor_ids(raw_id: str, key: bytes | None, text_ids: bool) -> set[int]:
    """The ids bronze may store for the shop's `raw_id`: its keyed hash when pseudonymization is
    on; else its integer value and, when a source writes visitor ids as text, its text id."""
    if key is not None:
        return {int(hmac.new(key, raw_id.encode(), hashlib.sha256).hexdigest()[:15], 16)}
    ids = {text_id_of(raw_id)} if text_ids else set()
    try:
        ids.add(int(raw_id))
    except ValueError:
        if not text_ids:
            raise ValueError(
                f"visitor id {raw_id!r} is not an integer, and no source lists visitor_id in "
                "text_ids; without pseudonymization bronze holds integer ids only"
            ) from None
    return ids
