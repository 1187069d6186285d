"""Binary codes: real-valued model outputs to packed uint8 codes, and a numpy Hamming reference.

Bit convention: bit i of a code is 1 where output i is > 0 (sign binarisation; 0 maps to bit 0).
Bits are packed big-endian within each byte (``np.packbits`` default), so a K-bit code is K/8
bytes, the layout Faiss binary indexes expect. Hamming distance does not depend on bit order as
long as every code uses the same one.
"""

from __future__ import annotations

import numpy as np

from engine.errors import ConfigError

SUPPORTED_BITS = (16, 32, 64, 128, 256)

# popcount of every byte value, for the numpy reference
_POPCOUNT = np.array([bin(v).count("1") for v in range(256)], dtype=np.int32)


def check_bits(bits: int) -> int:
    """Return ``bits`` if it is a supported code length, else raise ConfigError."""
    if bits not in SUPPORTED_BITS:
        raise ConfigError(
            f"Code length {bits} bits is not supported; choose one of {SUPPORTED_BITS}."
        )
    return bits


def pack_codes(values: np.ndarray) -> np.ndarray:
    """Binarise real values (n, K) by sign and pack them into uint8 codes (n, K/8)."""
    values = np.asarray(values)
    if values.ndim != 2:
        raise ConfigError(f"Expected a 2-D array of model outputs, got shape {values.shape}.")
    check_bits(values.shape[1])
    return np.packbits(values > 0, axis=1)


def unpack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of pack_codes: uint8 (n, K/8) to a {0, 1} uint8 array (n, K)."""
    codes = np.asarray(codes, dtype=np.uint8)
    return np.unpackbits(codes, axis=1, count=bits)


def hamming_reference(queries: np.ndarray, database: np.ndarray) -> np.ndarray:
    """All pairwise Hamming distances (nq, nb) between packed codes, computed with a byte table."""
    queries = np.asarray(queries, dtype=np.uint8)
    database = np.asarray(database, dtype=np.uint8)
    xor = np.bitwise_xor(queries[:, None, :], database[None, :, :])
    return _POPCOUNT[xor].sum(axis=2)
