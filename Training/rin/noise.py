"""The portable noise recipe of checkpoints/README.md ("Noise: one recipe for Swift and Python"):
SplitMix64 bits and Box-Muller normals on wrapping unsigned 64-bit integers, vectorised in numpy.

noise(seed, i, step) is image i's array for step `step` (0 = the start x_T, k + 1 = what DDPM step k
adds), `count` float32 values in the array's memory order (channels last)."""

from __future__ import annotations

import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TWO_POW_M53 = 2.0 ** -53


def mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on uint64 arrays (wrapping)."""
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def noise_key(seed: int, i: int, step: int) -> np.uint64:
    """key = mix(mix(mix(seed + GOLDEN) ^ i) ^ step), all mod 2^64."""
    u = lambda v: np.array([v % (1 << 64)], dtype=np.uint64)  # noqa: E731
    with np.errstate(over="ignore"):
        k = mix(u(seed) + GOLDEN)
    k = mix(k ^ u(i))
    k = mix(k ^ u(step))
    return k[0]


def noise(seed: int, i: int, step: int, count: int) -> np.ndarray:
    """`count` standard normals as float32, (count,)."""
    key = noise_key(seed, i, step)
    pairs = (count + 1) // 2
    q = np.arange(pairs, dtype=np.uint64)
    with np.errstate(over="ignore"):
        r1 = mix(key + (np.uint64(2) * q + np.uint64(1)) * GOLDEN)
        r2 = mix(key + (np.uint64(2) * q + np.uint64(2)) * GOLDEN)
    u1 = ((r1 >> np.uint64(11)) + np.uint64(1)).astype(np.float64) * _TWO_POW_M53  # (0, 1]
    u2 = (r2 >> np.uint64(11)).astype(np.float64) * _TWO_POW_M53  # [0, 1)
    rad = np.sqrt(-2.0 * np.log(u1))
    out = np.empty(2 * pairs, dtype=np.float32)
    out[0::2] = (rad * np.cos(2.0 * np.pi * u2)).astype(np.float32)
    out[1::2] = (rad * np.sin(2.0 * np.pi * u2)).astype(np.float32)
    return out[:count]
