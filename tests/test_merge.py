"""Cross-window merging, table-tested.

Each case is a DVR-Scan-style event table: the hits windows reported (window, label, start, end)
and the events a person would write down for the same video. Windows in these tables follow the
default plan shape (120 s windows, 10 s overlap: w0 = [0,120), w1 = [110,230), w2 = [220,340)).
"""

from __future__ import annotations

import random

import pytest

from vidline.merge import MergeParams, label_similarity, labels_match, merge_events, normalize_label
from vidline.types import Event


def hits(table: str) -> list[Event]:
    """``window | label | start | end [| confidence [| description]]`` rows; window '-' = none."""
    out = []
    for line in table.strip().splitlines()[1:]:
        cells = [c.strip() for c in line.split("|")]
        w, label, s, e = cells[:4]
        conf = float(cells[4]) if len(cells) > 4 and cells[4] else None
        desc = cells[5] if len(cells) > 5 and cells[5] else None
        out.append(Event(float(s), float(e), label, desc, conf, [] if w == "-" else [int(w)]))
    return out


def events(table: str) -> list[tuple[str, float, float, list[int]]]:
    """``label | start | end | windows`` rows; windows like ``0;1``."""
    out = []
    for line in table.strip().splitlines()[1:]:
        label, s, e, ws = (c.strip() for c in line.split("|"))
        out.append((label, float(s), float(e), [int(x) for x in ws.split(";") if x]))
    return out


def simple(evs: list[Event]) -> list[tuple[str, float, float, list[int]]]:
    return [(e.label, round(e.start, 3), round(e.end, 3), e.windows) for e in evs]


CASES = {
    "event cut by a window edge is joined back": (
        """
        window | label      | start | end
        0      | red square | 100.0 | 120.0
        1      | red square | 110.0 | 140.0
        """,
        """
        label      | start | end   | windows
        red square | 100.0 | 140.0 | 0;1
        """,
    ),
    "same event seen twice in the overlap, jittered boundaries": (
        """
        window | label      | start | end
        0      | red square | 112.0 | 118.0
        1      | red square | 112.4 | 117.5
        """,
        """
        label      | start | end   | windows
        red square | 112.0 | 118.0 | 0;1
        """,
    ),
    "two occurrences with a real gap stay two": (
        """
        window | label      | start | end
        0      | red square | 10.0  | 20.0
        0      | red square | 25.0  | 30.0
        """,
        """
        label      | start | end  | windows
        red square | 10.0  | 20.0 | 0
        red square | 25.0  | 30.0 | 0
        """,
    ),
    "touching within the gap tolerance is one occurrence": (
        """
        window | label      | start | end
        0      | red square | 10.0  | 20.0
        0      | red square | 20.8  | 30.0
        """,
        """
        label      | start | end  | windows
        red square | 10.0  | 30.0 | 0
        """,
    ),
    "a sloppy window cannot bridge a gap another window saw": (
        """
        window | label  | start | end
        1      | person | 112.0 | 116.0
        1      | person | 119.0 | 125.0
        0      | person | 113.0 | 120.0
        """,
        """
        label  | start | end   | windows
        person | 112.0 | 116.0 | 0;1
        person | 119.0 | 125.0 | 0;1
        """,
    ),
    "a chain of partial hits cannot swallow two occurrences": (
        """
        window | label  | start | end
        0      | person | 10.0  | 20.0
        0      | person | 30.0  | 40.0
        1      | person | 15.0  | 27.0
        2      | person | 26.0  | 35.0
        """,
        """
        label  | start | end  | windows
        person | 10.0  | 20.0 | 0;1
        person | 30.0  | 40.0 | 0;2
        """,
    ),
    "long event across three windows": (
        """
        window | label      | start | end
        0      | blue truck | 90.0  | 120.0
        1      | blue truck | 110.0 | 230.0
        2      | blue truck | 220.0 | 250.0
        """,
        """
        label      | start | end   | windows
        blue truck | 90.0  | 250.0 | 0;1;2
        """,
    ),
    "different things at the same time stay apart": (
        """
        window | label        | start | end
        0      | red square   | 10.0  | 20.0
        0      | green circle | 12.0  | 18.0
        1      | red car      | 12.0  | 18.0
        1      | blue car     | 12.0  | 18.0
        """,
        """
        label        | start | end  | windows
        red square   | 10.0  | 20.0 | 0
        blue car     | 12.0  | 18.0 | 1
        green circle | 12.0  | 18.0 | 0
        red car      | 12.0  | 18.0 | 1
        """,
    ),
    "similar wording is the same thing; most frequent label wins": (
        """
        window | label            | start | end
        0      | person walking   | 112.0 | 119.0
        1      | A person walks.  | 111.5 | 121.0
        2      | person walking   | 118.0 | 124.0
        """,
        """
        label          | start | end   | windows
        person walking | 111.5 | 124.0 | 0;1;2
        """,
    ),
    "interleaved labels do not glue one label's occurrences": (
        """
        window | label        | start | end
        0      | red square   | 0.0   | 10.0
        0      | green circle | 5.0   | 15.0
        0      | red square   | 12.0  | 20.0
        """,
        """
        label        | start | end  | windows
        red square   | 0.0   | 10.0 | 0
        green circle | 5.0   | 15.0 | 0
        red square   | 12.0  | 20.0 | 0
        """,
    ),
    "hits without provenance only link": (
        """
        window | label  | start | end
        -      | motion | 0.0   | 3.0
        -      | motion | 3.5   | 6.0
        -      | motion | 9.0   | 12.0
        """,
        """
        label  | start | end  | windows
        motion | 0.0   | 6.0  |
        motion | 9.0   | 12.0 |
        """,
    ),
    # both windows saw the gap; each window's view of it is trusted, so the gap is the union
    "two events 1.5 s apart across a window boundary stay two (DVR-Scan table)": (
        """
        window | label         | start | end
        0      | blue triangle | 95.0  | 112.0
        1      | blue triangle | 110.0 | 112.2
        1      | blue triangle | 113.7 | 130.0
        0      | blue triangle | 113.5 | 120.0
        """,
        """
        label         | start | end   | windows
        blue triangle | 95.0  | 112.0 | 0;1
        blue triangle | 113.7 | 130.0 | 0;1
        """,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_merge_table(name: str) -> None:
    given, expected = CASES[name]
    got = merge_events(hits(given))
    assert simple(got) == events(expected), name
    # and the table's events are a fixed point
    assert simple(merge_events(got)) == events(expected)


def test_input_order_does_not_matter() -> None:
    given = hits(CASES["a chain of partial hits cannot swallow two occurrences"][0])
    expected = simple(merge_events(given))
    for seed in range(5):
        shuffled = given[:]
        random.Random(seed).shuffle(shuffled)
        assert simple(merge_events(shuffled)) == expected


def test_attributes_of_the_merged_event() -> None:
    given = hits(
        """
        window | label      | start | end   | confidence | description
        0      | red square | 100.0 | 120.0 | 0.6        | a square
        1      | Red Square | 110.0 | 130.0 | 0.9        | a red square in the middle
        2      | red square | 125.0 | 131.0 |            |
        """
    )
    (ev,) = merge_events(given)
    assert (ev.start, ev.end, ev.windows) == (100.0, 131.0, [0, 1, 2])
    assert ev.label == "red square"  # 2 of 3 reports
    assert ev.description == "a red square in the middle"  # the longest
    assert ev.confidence == 0.9  # max by default
    (mean,) = merge_events(given, MergeParams(confidence="mean"))
    assert mean.confidence == pytest.approx(0.75)


def test_all_confidences_missing_stays_none() -> None:
    (ev,) = merge_events([Event(0, 1, "x", windows=[0]), Event(0.5, 2, "x", windows=[1])])
    assert ev.confidence is None and ev.description is None


def test_inputs_are_not_modified_and_empty_input() -> None:
    given = [Event(0, 10, "a", windows=[1]), Event(5, 12, "a", windows=[0])]
    before = [Event(**vars(e)) for e in given]
    merge_events(given)
    assert given == before
    assert merge_events([]) == []


def test_gap_parameter() -> None:
    given = hits(
        """
        window | label | start | end
        0      | dog   | 0.0   | 5.0
        0      | dog   | 7.0   | 9.0
        """
    )
    assert len(merge_events(given)) == 2
    assert simple(merge_events(given, MergeParams(gap=2.5))) == [("dog", 0.0, 9.0, [0])]


def test_min_overlap_fraction_and_min_duration() -> None:
    given = [Event(0, 10, "dog", windows=[0]), Event(9, 20, "dog", windows=[1])]
    assert len(merge_events(given)) == 1
    assert len(merge_events(given, MergeParams(min_overlap_fraction=0.5))) == 2
    short = [Event(0, 0.2, "blink", windows=[0]), Event(5, 9, "blink", windows=[0])]
    assert simple(merge_events(short, MergeParams(min_duration=0.5))) == [("blink", 5.0, 9.0, [0])]


def test_invalid_params() -> None:
    with pytest.raises(ValueError):
        MergeParams(gap=-1)
    with pytest.raises(ValueError):
        MergeParams(label_similarity=1.5)


@pytest.mark.parametrize(
    "a,b,same",
    [
        ("red square", "Red square.", True),
        ("The red squares", "red square", True),
        ("person walking", "a person walks", True),
        ("person enters the room", "Person enters room!", True),
        ("person", "a person walking", True),
        ("red square", "yellow square", False),
        ("red car", "blue car", False),
        ("man enters", "woman enters", False),
        ("green circle", "magenta circle", False),
        ("红色方块", "红色方块出现", True),
        ("红色方块", "绿色圆圈", False),
        ("", "", True),
        ("car", "", False),
    ],
)
def test_labels_match_table(a: str, b: str, same: bool) -> None:
    assert labels_match(a, b, MergeParams().label_similarity) is same
    assert label_similarity(a, b) == pytest.approx(label_similarity(b, a))


def test_normalize_label() -> None:
    assert normalize_label("The Red Squares!") == "red square"
    assert normalize_label("A person, walking.") == "person walk"


# ------------------------------------------------------------------------ property-style test

LABEL_VARIANTS = {
    "red square": ["red square", "Red square", "the red squares"],
    "green circle": ["green circle", "A green circle."],
    "blue triangle": ["blue triangle"],
}


def _random_hits(rng: random.Random) -> list[Event]:
    out = []
    for _ in range(rng.randint(0, 14)):
        canon = rng.choice(list(LABEL_VARIANTS))
        s = round(rng.uniform(0, 60), 1)
        e = round(s + rng.choice([0.0, rng.uniform(0.1, 3), rng.uniform(1, 20)]), 1)
        ws = rng.choice([[], [rng.randint(0, 3)], [rng.randint(0, 3)], sorted({rng.randint(0, 3), 1})])
        conf = rng.choice([None, round(rng.random(), 2)])
        out.append(Event(s, e, rng.choice(LABEL_VARIANTS[canon]), None, conf, ws))
    return out


def _reported_gaps(given: list[Event], cls: str, tol: float) -> list[tuple[float, float, int]]:
    """Independent re-statement of the rule: gaps longer than tol between one window's reports."""
    gaps = []
    for w in {w for e in given for w in e.windows}:
        spans = sorted((e.start, e.end) for e in given if w in e.windows and normalize_label(e.label) == cls)
        if not spans:
            continue
        cur_end = spans[0][1]
        for s, e in spans[1:]:
            if s - cur_end > tol:
                gaps.append((cur_end, s, w))
            cur_end = max(cur_end, e)
    return gaps


@pytest.mark.parametrize("seed", range(300))
def test_property_idempotent_and_keeps_coverage(seed: int) -> None:
    rng = random.Random(seed)
    given = _random_hits(rng)
    params = MergeParams(gap=rng.choice([0.0, 0.5, 1.0, 3.0]))
    tol = params.gap
    once = merge_events(given, params)
    assert merge_events(once, params) == once  # idempotent

    assert [(e.start, e.end) for e in once] == sorted((e.start, e.end) for e in once)
    by_cls: dict[str, list[Event]] = {}
    for e in once:
        by_cls.setdefault(normalize_label(e.label), []).append(e)
    # no duplicates: same-thing events are separated by more than the gap tolerance
    for evs in by_cls.values():
        evs = sorted(evs, key=lambda e: e.start)
        for a, b in zip(evs, evs[1:], strict=False):
            assert b.start - a.end > tol - 1e-9
    # provenance only from the input
    assert {w for e in once for w in e.windows} <= {w for e in given for w in e.windows}

    for hit in given:
        cls = normalize_label(hit.label)
        gaps = [g for g in _reported_gaps(given, cls, tol) if g[2] not in hit.windows]
        outs = by_cls.get(cls, [])
        # never loses coverage: every instant of every hit is in a merged event of the same thing,
        # unless another window reported a gap there (step 2 of the rule)
        n = 7
        for k in range(n + 1):
            t = hit.start + (hit.end - hit.start) * k / n
            covered = any(o.start - 1e-9 <= t <= o.end + 1e-9 for o in outs)
            in_gap = any(g0 <= t <= g1 for g0, g1, _ in gaps)
            assert covered or in_gap, (hit, t)
            # ... and that event lists the hit's windows (provenance)
            if not in_gap:
                assert any(
                    o.start - 1e-9 <= t <= o.end + 1e-9 and set(hit.windows) <= set(o.windows) for o in outs
                )
    # separation: no merged event reaches into a gap reported by a window
    for cls, evs in by_cls.items():
        for g0, g1, _ in _reported_gaps(given, cls, tol):
            for o in evs:
                assert o.end <= g0 + 1e-9 or o.start >= g1 - 1e-9, (o, g0, g1)
