"""The latency sample codec: how `benchmarks.samples_ms` and run files hold raw samples (docs/schema.md).

Two encodings: `float32` (m001, and run files: 4 bytes a sample, kept exact) and `ticks1` (m002: integer ticks,
byte planes, deflated). Old runs keep a quantile sketch instead of every sample (retention). No SQL here.
"""

from __future__ import annotations

import math
import struct
import zlib

import numpy as np

from trtci.errors import StoreError

SAMPLES_FLOAT32 = "float32"
SAMPLES_TICKS = "ticks1"
_TICKS_HEADER = struct.Struct("<2sbBIq")  # magic, tick exponent (tick = 10**exp ms), width, count, base tick
_TICKS_MAGIC = b"tq"
_FINEST_TICK_EXP = -4  # 0.1 microsecond: finer than any timer trtci reads
_MAX_TICK = 2.0**62  # well inside int64, and exact in float64
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def encode_samples(samples_ms: list[float]) -> bytes:
    """Samples as float32 little-endian, 4 bytes each: about a fifth of their JSON size, ~7 significant digits."""
    return struct.pack(f"<{len(samples_ms)}f", *samples_ms)


def decode_samples(blob: bytes) -> list[float]:
    """The inverse of `encode_samples`."""
    return list(struct.unpack(f"<{len(blob) // 4}f", blob))


def encode_samples_ticks(samples_ms: list[float]) -> bytes:
    """Samples in measured order as integer ticks, at most 1/10,000 of the median and never finer than 0.1 us.

    Ticks are stored as offsets from the smallest one, split into byte planes and deflated: noise in the low
    byte, near-constant high bytes. 10,000 samples with 2% noise take about 14 KB instead of 40 KB as float32.
    """
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        return _TICKS_HEADER.pack(_TICKS_MAGIC, _FINEST_TICK_EXP, 1, 0, 0)
    median = float(np.median(values))
    exponent = max(_FINEST_TICK_EXP, math.floor(math.log10(median * 1e-4))) if median > 0 else _FINEST_TICK_EXP
    scaled = np.round(values / 10.0**exponent)
    if exponent > 127 or not (0 <= scaled.min() and scaled.max() < _MAX_TICK):
        # int64 ticks would wrap around (one sample 10**15 times the median read back as -9.2e14 ms)
        raise OverflowError(f"samples of {values.min():g}..{values.max():g} ms do not fit integer ticks")
    ticks = scaled.astype(np.int64)
    base = int(ticks.min())
    offsets = ticks - base
    width = next(w for w in (1, 2, 4, 8) if int(offsets.max()) < 256**w)
    planes = offsets.astype(f"<u{width}").view(np.uint8).reshape(-1, width).T.tobytes()
    return _TICKS_HEADER.pack(_TICKS_MAGIC, exponent, width, values.size, base) + zlib.compress(planes, 6)


def decode_samples_ticks(blob: bytes) -> list[float]:
    """The inverse of `encode_samples_ticks`, to the tick (half a tick at most from what was measured)."""
    magic, exponent, width, count, base = _TICKS_HEADER.unpack_from(blob)
    if magic != _TICKS_MAGIC:
        raise StoreError("latency samples in an unknown encoding; upgrade trtci")
    if count == 0:
        return []
    planes = np.frombuffer(zlib.decompress(blob[_TICKS_HEADER.size :]), dtype=np.uint8).reshape(width, count)
    offsets = planes.T.copy().view(f"<u{width}").reshape(count).astype(np.int64)
    return ((offsets + base) * 10.0**exponent).tolist()


def encode_for_store(samples_ms: list[float]) -> tuple[bytes, str]:
    """(blob, samples_encoding) of a `benchmarks` row: the compact encoding when every sample is a finite
    non-negative time that integer ticks hold, else float32 (kept to float32's ~7 digits). Raises StoreError
    for a finite sample too large for float32, which no encoding could give back."""
    too_large = next((x for x in samples_ms if math.isfinite(x) and abs(x) > _FLOAT32_MAX), None)
    if too_large is not None:
        raise StoreError(f"a latency sample of {too_large:g} ms cannot be stored (float32 holds up to 3.4e38)")
    if all(math.isfinite(x) and x >= 0 for x in samples_ms):
        try:
            return encode_samples_ticks(samples_ms), SAMPLES_TICKS
        except OverflowError:
            pass  # samples spanning more than 2**62 ticks (an outlier 10**15 times the median): float32 holds them
    return encode_samples(samples_ms), SAMPLES_FLOAT32


def decode_stored_samples(blob: bytes, encoding: str) -> list[float]:
    """Samples of a `benchmarks` row, given its `samples_encoding` column. Raises StoreError when the blob is
    damaged or in an encoding this trtci does not know."""
    try:
        if encoding == SAMPLES_FLOAT32:
            return decode_samples(blob)
        if encoding == SAMPLES_TICKS:
            return decode_samples_ticks(blob)
    except (TypeError, ValueError, struct.error, zlib.error) as e:
        raise StoreError(f"damaged latency samples ({encoding}: {e}); the database is damaged") from e
    raise StoreError(f"latency samples in unknown encoding {encoding!r}: written by a newer trtci; upgrade trtci")


def quantile_sketch(samples_ms: list[float], points: int) -> list[float]:
    """`points` evenly spaced quantiles (min and max included) of the samples: what thinning keeps of old runs."""
    if len(samples_ms) <= points:
        return sorted(samples_ms)
    return np.quantile(np.asarray(samples_ms, dtype=np.float64), np.linspace(0.0, 1.0, points)).tolist()
