"""CSV export: one event per row, with a header; loadable by ``pandas.read_csv``."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from vidline.export.timefmt import hms_ms
from vidline.types import Event

COLUMNS = [
    "start",
    "end",
    "start_time",
    "end_time",
    "duration",
    "label",
    "description",
    "confidence",
    "windows",
]


def events_to_csv(events: Sequence[Event]) -> str:
    """CSV text. ``start``/``end``/``duration`` are seconds (3 decimals); ``start_time``/``end_time``
    are ``hh:mm:ss.mmm``; ``confidence`` and ``description`` are empty when unknown; ``windows`` is
    the provenance as ``0;1``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for e in events:
        writer.writerow(
            [
                f"{e.start:.3f}",
                f"{e.end:.3f}",
                hms_ms(e.start),
                hms_ms(e.end),
                f"{e.end - e.start:.3f}",
                e.label,
                e.description or "",
                "" if e.confidence is None else f"{float(e.confidence):g}",
                ";".join(str(w) for w in e.windows),
            ]
        )
    return buf.getvalue()
