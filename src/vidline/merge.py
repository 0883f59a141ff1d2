"""Cross-window event merging (pure; no I/O).

Long videos are analysed in overlapping windows, so one real event is often reported several
times: once by each window that saw it, and cut in two by a window edge. ``merge_events`` turns
those per-window hits into one de-duplicated timeline.

The rule (documented for users in docs/timeline.md):

1. **Label classes.** Labels are normalised (Unicode NFKC, lower case, punctuation removed,
   articles "a/an/the" dropped, light stemming: walks/walking/walked -> walk). Two labels are
   *the same thing* when their token Dice similarity is >= ``MergeParams.label_similarity``
   (tokens also match when nearly equal, e.g. typos). CJK text is compared character by
   character. Distinct labels are grouped greedily, most frequent label first, each joining the
   most similar existing class.
2. **Gap evidence.** Within a class, the hits of one window are joined when they touch within
   ``gap`` seconds. When one window reports the same thing twice with a gap longer than ``gap``
   between the two reports, that window *saw the gap*: no merged event may span it. Other
   windows' hits that reach into such a gap are cut at its edges (the part inside the gap is
   dropped), so one sloppy window that says "10-40" cannot glue "10-20" and "30-40" together.
3. **Linking.** Two remaining hits of a class are linked when they overlap or the gap between
   them is <= ``gap`` (and, if ``min_overlap_fraction`` > 0, they overlap by at least that fraction
   of the shorter one). Links compare the hits' *own* intervals, never a growing merged interval.
   Each connected group becomes one event.
4. **The merged event**: start/end = the group's hull; ``windows`` = sorted union of the
   hits' windows, plus any window whose uncut report of the same thing overlaps the event
   (provenance); ``label`` = the most frequent original label (ties: the one
   covering the most time, then the earliest); ``description`` = the longest non-empty one;
   ``confidence`` = the maximum reported (``confidence="mean"`` for the mean), ``None`` when no hit
   had one. Events are sorted by (start, end, label).

Steps 1-4 are repeated until nothing changes (usually once), so merging is idempotent:
``merge_events(merge_events(x)) == merge_events(x)``. Hits with no ``windows`` never produce
gap evidence; they only link.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from vidline.log import logger
from vidline.types import Event

__all__ = [
    "MergeParams",
    "label_similarity",
    "labels_match",
    "merge_events",
    "normalize_label",
]

_ARTICLES = frozenset({"a", "an", "the"})
_EPS = 1e-9


@dataclass(frozen=True)
class MergeParams:
    """Parameters of :func:`merge_events`.

    gap: seconds. Hits closer than this (or overlapping) are the same occurrence; a gap longer
        than this reported by one window separates two occurrences. Default 1.0 s.
    label_similarity: 0..1 token similarity at or above which two labels name the same thing.
        Default 0.6 ("person walking" ~ "a person walks" = 1.0; "red car" vs "blue car" = 0.5).
    min_overlap_fraction: 0..1. 0 (default) links hits that overlap or touch within ``gap``;
        > 0 requires an actual overlap of at least this fraction of the shorter hit.
    confidence: "max" (default) or "mean" of the hits' confidences.
    min_duration: drop merged events shorter than this (seconds). Default 0 (keep all).
    """

    gap: float = 1.0
    label_similarity: float = 0.6
    min_overlap_fraction: float = 0.0
    confidence: Literal["max", "mean"] = "max"
    min_duration: float = 0.0

    def __post_init__(self) -> None:
        if self.gap < 0:
            raise ValueError("gap must be >= 0")
        if not 0.0 <= self.label_similarity <= 1.0:
            raise ValueError("label_similarity must be within [0, 1]")
        if not 0.0 <= self.min_overlap_fraction <= 1.0:
            raise ValueError("min_overlap_fraction must be within [0, 1]")
        if self.confidence not in ("max", "mean"):
            raise ValueError("confidence must be 'max' or 'mean'")


# ---------------------------------------------------------------------------------------- labels


def _is_cjk(ch: str) -> bool:
    o = ord(ch)
    return (
        0x3040 <= o <= 0x30FF  # kana
        or 0x3400 <= o <= 0x4DBF
        or 0x4E00 <= o <= 0x9FFF
        or 0xAC00 <= o <= 0xD7AF  # hangul
        or 0xF900 <= o <= 0xFAFF
    )


def _stem(token: str) -> str:
    """Very light English stemming: walks/walking/walked -> walk, boxes -> box, squares -> square."""
    if token.endswith("'s"):
        token = token[:-2]
    if len(token) >= 6 and token.endswith("ing"):
        token = token[:-3]
    elif len(token) >= 5 and token.endswith("ed") and not token.endswith("eed"):
        token = token[:-2]
    elif len(token) >= 5 and token.endswith("es") and token[:-2].endswith(("s", "x", "z", "ch", "sh")):
        return token[:-2]
    elif len(token) >= 4 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    else:
        return token
    if len(token) >= 4 and token[-1] == token[-2] and token[-1] not in "aeiouls":
        token = token[:-1]  # running -> run, stopped -> stop
    return token


def _tokens(label: str) -> list[str]:
    text = unicodedata.normalize("NFKC", label).casefold()
    text = "".join(ch if (ch.isalnum() or ch == "'") else " " for ch in text)
    out: list[str] = []
    for word in text.split():
        word = word.strip("'")
        if not word or word in _ARTICLES:
            continue
        if any(_is_cjk(ch) for ch in word):
            # CJK has no spaces: compare character by character (runs of other script stay whole)
            for part in re.findall(r"[^\W\d_]+|\d+", word):
                if any(_is_cjk(ch) for ch in part):
                    out.extend(part)
                else:
                    out.append(_stem(part))
        else:
            out.append(_stem(word))
    return out


def normalize_label(label: str) -> str:
    """The canonical form used for comparison: ``"The Red Squares!" -> "red square"``."""
    return " ".join(_tokens(label))


def _token_match(a: str, b: str) -> bool:
    if a == b:
        return True
    if len(a) >= 4 and len(b) >= 4:
        return difflib.SequenceMatcher(None, a, b).ratio() >= 0.85
    return False


def label_similarity(a: str, b: str) -> float:
    """Token Dice similarity of two labels after normalisation, in [0, 1]."""
    ta, tb = _tokens(a), _tokens(b)
    if not ta and not tb:
        return 1.0
    if not ta or not tb:
        return 0.0
    if ta == tb:
        return 1.0
    remaining = list(tb)
    matched = 0
    for tok in ta:
        for i, other in enumerate(remaining):
            if _token_match(tok, other):
                matched += 1
                del remaining[i]
                break
    return 2.0 * matched / (len(ta) + len(tb))


def labels_match(a: str, b: str, threshold: float) -> bool:
    """True when labels ``a`` and ``b`` name the same thing (similarity >= ``threshold``)."""
    return label_similarity(a, b) >= threshold - _EPS


def _label_classes(events: Sequence[Event], threshold: float) -> list[int]:
    """Class id for every event; greedy over distinct normalised labels, most frequent first."""
    norms = [normalize_label(e.label) for e in events]
    counts = Counter(norms)
    order = sorted(counts, key=lambda n: (-counts[n], n))
    reps: list[str] = []
    class_of: dict[str, int] = {}
    for norm in order:
        best, best_sim = -1, -1.0
        for idx, rep in enumerate(reps):
            sim = 1.0 if rep == norm else label_similarity(rep, norm)
            if sim >= threshold - _EPS and sim > best_sim:
                best, best_sim = idx, sim
        if best < 0:
            reps.append(norm)
            best = len(reps) - 1
        class_of[norm] = best
    return [class_of[n] for n in norms]


# ---------------------------------------------------------------------------------------- intervals


def _gap(a: Event, b: Event) -> float:
    """Seconds between two intervals; negative when they overlap."""
    return max(a.start, b.start) - min(a.end, b.end)


def _overlaps(a: Event, b: Event) -> bool:
    if a.start == a.end or b.start == b.end:
        return a.start <= b.end and b.start <= a.end
    return a.start < b.end and b.start < a.end


def _window_gaps(hits: Sequence[Event], tol: float) -> list[tuple[float, float, int]]:
    """Gaps longer than ``tol`` between consecutive reports of the same window: (g0, g1, window)."""
    by_window: dict[int, list[tuple[float, float]]] = {}
    for h in hits:
        for w in set(h.windows):
            by_window.setdefault(w, []).append((h.start, h.end))
    gaps: list[tuple[float, float, int]] = []
    for w, spans in by_window.items():
        spans.sort()
        cur_e = spans[0][1]
        for s, e in spans[1:]:
            if s - cur_e > tol + _EPS:
                gaps.append((cur_e, s, w))
                cur_e = e
            else:
                cur_e = max(cur_e, e)
    gaps.sort()
    return gaps


def _cut(hit: Event, gaps: Sequence[tuple[float, float, int]]) -> list[Event]:
    """``hit`` minus the interiors of gaps reported by windows it does not belong to."""
    pieces = [(hit.start, hit.end)]
    own = set(hit.windows)
    for g0, g1, w in gaps:
        if w in own:
            continue
        nxt: list[tuple[float, float]] = []
        for s, e in pieces:
            if e <= g0 + _EPS or s >= g1 - _EPS:
                nxt.append((s, e))
                continue
            if s < g0:
                nxt.append((s, g0))
            if e > g1:
                nxt.append((g1, e))
        pieces = nxt
    if len(pieces) == 1 and pieces[0] == (hit.start, hit.end):
        return [hit]
    return [replace(hit, start=s, end=e, windows=list(hit.windows)) for s, e in pieces if e > s + _EPS]


def _linked(a: Event, b: Event, params: MergeParams) -> bool:
    g = _gap(a, b)
    if params.min_overlap_fraction > 0:
        shorter = min(a.duration, b.duration)
        return g < 0 and -g >= params.min_overlap_fraction * shorter - _EPS
    return g <= params.gap + _EPS


def _components(hits: Sequence[Event], params: MergeParams) -> list[list[Event]]:
    """Single-linkage groups of hits by their own intervals (sweep over starts, O(n log n) typical)."""
    order = sorted(range(len(hits)), key=lambda i: (hits[i].start, hits[i].end))
    parent = list(range(len(hits)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    active: list[int] = []  # hits whose end may still link with later starts
    for i in order:
        h = hits[i]
        still: list[int] = []
        for j in active:
            if hits[j].end + params.gap + _EPS >= h.start:
                still.append(j)
                if _linked(hits[j], h, params):
                    ri, rj = find(i), find(j)
                    if ri != rj:
                        parent[ri] = rj
        still.append(i)
        active = still
    groups: dict[int, list[Event]] = {}
    for i in order:
        groups.setdefault(find(i), []).append(hits[i])
    return list(groups.values())


def _combine(group: Sequence[Event], params: MergeParams) -> Event:
    start = min(h.start for h in group)
    end = max(h.end for h in group)
    windows = sorted({w for h in group for w in h.windows})
    # label: most frequent original, then most covered time, then earliest
    stats: dict[str, tuple[int, float, float]] = {}
    for h in sorted(group, key=lambda x: (x.start, x.end)):
        n, dur, first = stats.get(h.label, (0, 0.0, h.start))
        stats[h.label] = (n + 1, dur + h.duration, first)
    label = min(stats, key=lambda lab: (-stats[lab][0], -stats[lab][1], stats[lab][2], lab))
    descriptions = [h.description for h in group if h.description]
    description = max(descriptions, key=lambda d: (len(d), d)) if descriptions else None
    confs = [float(h.confidence) for h in group if h.confidence is not None]
    confidence: float | None = None
    if confs:
        confidence = max(confs) if params.confidence == "max" else round(sum(confs) / len(confs), 6)
    return Event(start, end, label, description, confidence, windows)


def _step(events: Sequence[Event], params: MergeParams) -> list[Event]:
    classes = _label_classes(events, params.label_similarity)
    by_class: dict[int, list[Event]] = {}
    for cls, ev in zip(classes, events, strict=True):
        by_class.setdefault(cls, []).append(ev)
    out: list[Event] = []
    for hits in by_class.values():
        gaps = _window_gaps(hits, params.gap)
        pieces = [p for h in hits for p in _cut(h, gaps)] if gaps else list(hits)
        if not pieces:
            continue
        for group in _components(pieces, params):
            ev = _combine(group, params)
            if gaps:
                # provenance also names windows whose (uncut) report overlaps the event, so that a
                # window's cut-back report still counts as "seen here" when merging again
                extra = {w for h in hits if _overlaps(h, ev) for w in h.windows}
                ev.windows = sorted(set(ev.windows) | extra)
            out.append(ev)
    out.sort(key=_sort_key)
    return out


def _sort_key(e: Event) -> tuple[float, float, str, tuple[int, ...]]:
    return (e.start, e.end, e.label, tuple(e.windows))


def _same(a: Sequence[Event], b: Sequence[Event]) -> bool:
    return len(a) == len(b) and all(x == y for x, y in zip(a, b, strict=True))


def merge_events(events: Sequence[Event], params: MergeParams | None = None) -> list[Event]:
    """Merge per-window hits into one de-duplicated, start-sorted list of events.

    See the module docstring (or docs/timeline.md) for the rule. Input events are not modified.
    Events with ``end < start`` are swapped; zero-length events are kept as instants.
    """
    params = params or MergeParams()
    current = [
        Event(
            min(e.start, e.end),
            max(e.start, e.end),
            e.label,
            e.description,
            e.confidence,
            sorted(set(e.windows)),
        )
        for e in events
    ]
    current.sort(key=_sort_key)
    for _ in range(10):
        nxt = _step(current, params)
        if _same(nxt, current):
            break
        current = nxt
    else:  # pragma: no cover - not seen in property tests
        logger.debug("merge_events: no fixed point after 10 passes (%d events)", len(current))
    if params.min_duration > 0:
        current = [e for e in current if e.duration >= params.min_duration - _EPS]
    return current
