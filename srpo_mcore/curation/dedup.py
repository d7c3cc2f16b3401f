"""Exact and near-duplicate detection over problem texts.

Exact: equal after ``normalize_for_dedup`` (case, whitespace, ``$`` delimiters). Near: Jaccard similarity of
character n-gram sets at or above a threshold. MinHash signatures with LSH banding only propose candidate
pairs; every reported pair is confirmed with the exact Jaccard of the n-gram sets, so the threshold is
exact and the banding only trades speed for recall (set ``(bands, rows)`` so that the LSH threshold
``(1/bands)**(1/rows)`` sits well below the Jaccard threshold).

A ``key`` (the gold answer, or the tests) can restrict near matches to records that agree on it: MATH-style
variants that change a number, and Codeforces easy/hard versions, have near-identical text but are
different problems. Exact text matches never need the key.

``NearDupIndex`` serves both deduplication (query, then add if new) and decontamination against eval sets
(add the eval problems, query the training problems).
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from srpo_mcore.data.text import normalize_for_dedup

_MASK32 = np.uint64(0xFFFFFFFF)


def shingles(text: str, n: int) -> frozenset[str]:
    """Character n-grams of the normalised text (the whole text when shorter than ``n``)."""
    text = normalize_for_dedup(text)
    if len(text) <= n:
        return frozenset([text])
    return frozenset(text[i : i + n] for i in range(len(text) - n + 1))


def jaccard(a: frozenset, b: frozenset) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def lsh_shape(num_perm: int, threshold: float) -> tuple[int, int]:
    """``(bands, rows)`` with ``bands * rows == num_perm`` whose LSH threshold is at most ``threshold - 0.15``
    (high recall), preferring more rows per band (fewer spurious candidates)."""
    best = (num_perm, 1)
    for rows in range(1, num_perm + 1):
        if num_perm % rows == 0 and (rows / num_perm) ** (1 / rows) <= max(threshold - 0.15, 0.05):
            best = (num_perm // rows, rows)
    return best


class MinHasher:
    """MinHash signatures with ``num_perm`` multiply-shift hash functions over CRC32 shingle hashes."""

    def __init__(self, num_perm: int = 128, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, 2**32, size=num_perm, dtype=np.uint64) | np.uint64(1)
        self.b = rng.integers(0, 2**32, size=num_perm, dtype=np.uint64)

    def signature(self, grams: frozenset[str]) -> np.ndarray:
        x = np.fromiter((zlib.crc32(g.encode()) for g in grams), dtype=np.uint64, count=len(grams))
        hashed = (x[:, None] * self.a[None, :] + self.b[None, :]) >> np.uint64(32)  # wraps mod 2**64
        return (hashed & _MASK32).min(axis=0)


@dataclass(frozen=True)
class Match:
    id: str  # the earlier (kept) record, or the eval record for decontamination
    similarity: float  # character n-gram Jaccard; 1.0 for exact duplicates
    exact: bool = False  # equal after normalisation


class NearDupIndex:
    """Problems indexed for exact and near-duplicate lookup."""

    def __init__(self, threshold: float = 0.8, ngram: int = 5, num_perm: int = 128, seed: int = 0):
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"near-duplicate threshold must lie in (0, 1], got {threshold}")
        self.threshold, self.ngram = threshold, ngram
        self.bands, self.rows = lsh_shape(num_perm, threshold)
        self.hasher = MinHasher(num_perm, seed)
        self.exact: dict[str, str] = {}
        self.grams: dict[str, frozenset[str]] = {}
        self.keys: dict[str, str | None] = {}
        self.buckets: dict[tuple[int, bytes], list[str]] = defaultdict(list)

    def _band_keys(self, grams: frozenset[str]) -> list[tuple[int, bytes]]:
        signature = self.hasher.signature(grams)
        return [
            (band, signature[band * self.rows : (band + 1) * self.rows].tobytes())
            for band in range(self.bands)
        ]

    def query(self, text: str, key: str | None = None) -> Match | None:
        """The most similar indexed problem at or above the threshold (exact text matches first), else
        ``None``; with ``key``, near matches must have been added with the same key."""
        normalized = normalize_for_dedup(text)
        if normalized in self.exact:
            return Match(self.exact[normalized], 1.0, exact=True)
        grams = shingles(text, self.ngram)
        candidates = {i for k in self._band_keys(grams) for i in self.buckets.get(k, ())}
        best: Match | None = None
        for other in candidates:
            if key is not None and self.keys[other] != key:
                continue
            similarity = jaccard(grams, self.grams[other])
            if similarity >= self.threshold and (best is None or similarity > best.similarity):
                best = Match(other, round(similarity, 4))
        return best

    def add(self, record_id: str, text: str, key: str | None = None) -> None:
        self.exact.setdefault(normalize_for_dedup(text), record_id)
        grams = shingles(text, self.ngram)
        self.grams[record_id], self.keys[record_id] = grams, key
        for band in self._band_keys(grams):
            self.buckets[band].append(record_id)
