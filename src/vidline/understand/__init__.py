"""Understanding: free-form questions, descriptions and chapters over videos and images.

``vidline.ask``, ``vidline.describe`` and ``vidline.chapters`` live here (see docs/understand.md).
"""

from __future__ import annotations

from vidline.understand.api import (
    CHAPTERS_QUESTION,
    DESCRIBE_QUESTION,
    Answer,
    AskStream,
    Caption,
    MapStepError,
    ask,
    chapters,
    chapters_from_text,
    describe,
    dry_run,
    linkify,
    probe_input,
)
from vidline.understand.chapters import Chapter, format_chapters, normalize_chapters, parse_chapters
from vidline.understand.plan import USEFUL_FPS, AskLimits, AskPayload, AskPlan, MediaInput, plan_ask
from vidline.understand.stream import AnswerStream, IncompleteAnswerError
from vidline.understand.times import find_time_references, format_clock, rewrite_caption_times

__all__ = [
    "CHAPTERS_QUESTION",
    "DESCRIBE_QUESTION",
    "USEFUL_FPS",
    "Answer",
    "AnswerStream",
    "AskLimits",
    "AskPayload",
    "AskPlan",
    "AskStream",
    "Caption",
    "Chapter",
    "IncompleteAnswerError",
    "MapStepError",
    "MediaInput",
    "ask",
    "chapters",
    "chapters_from_text",
    "describe",
    "dry_run",
    "find_time_references",
    "format_chapters",
    "format_clock",
    "linkify",
    "normalize_chapters",
    "parse_chapters",
    "plan_ask",
    "probe_input",
    "rewrite_caption_times",
]
