"""Prompt texts. Changing any text here changes answers: bump PROMPT_VERSION (it is in cache keys)."""

from __future__ import annotations

PROMPT_VERSION = 1

LANGUAGES = {"zh": "Chinese (简体中文)", "en": "English", "ja": "Japanese", "ko": "Korean", "de": "German",
             "fr": "French", "es": "Spanish"}

EVENTS_JSON_SHAPE = '{"events": [{"start": 12.5, "end": 15.0, "label": "short label", "description": "one sentence"}]}'


def language_name(code: str | None) -> str | None:
    if not code:
        return None
    return LANGUAGES.get(code.lower(), code)


def timeline_prompt(query: str | None, *, duration: float | None = None, language: str | None = None,
                    burned_timestamps: bool = False) -> str:
    """The per-window prompt: events (matching ``query``, or all notable ones) with clip-relative times."""
    if query:
        what = f"Find every time the following happens in this video clip: {query.strip()}"
    else:
        what = "List every notable event in this video clip (things appearing, disappearing, actions, changes)."
    lines = [
        what,
        "Give the start and end of each event in seconds from the start of the clip (the first frame is 0.0 s).",
    ]
    if duration is not None:
        lines.append(f"The clip is {duration:.1f} seconds long.")
    if burned_timestamps:
        lines.append("Each frame shows its time in the top-left corner (t=...s); use those times.")
    lines += [
        f"Answer with JSON only, exactly in this shape: {EVENTS_JSON_SHAPE}",
        'If nothing matches, answer {"events": []}.',
    ]
    lang = language_name(language)
    if lang:
        lines.append(f"Write labels and descriptions in {lang}; keep the JSON keys in English.")
    return "\n".join(lines)


def caption_prompt(*, duration: float | None = None, language: str | None = None, detail: str = "normal",
                   question: str | None = None) -> str:
    """Per-window caption prompt (map step of ask/describe): timestamped lines, clip-relative seconds."""
    lines = [
        "Describe what happens in this video clip as a list of timestamped lines, one per distinct moment,"
        " in the form `12.5s - 15.0s: description` with times in seconds from the start of the clip.",
    ]
    if detail == "brief":
        lines.append("Be brief: at most one line per major change.")
    elif detail == "detailed":
        lines.append("Be thorough: people, objects, actions, text on screen, scene changes.")
    if duration is not None:
        lines.append(f"The clip is {duration:.1f} seconds long.")
    if question:
        lines.append(f"Pay special attention to anything relevant to: {question.strip()}")
    lang = language_name(language)
    if lang:
        lines.append(f"Write in {lang}.")
    return "\n".join(lines)


def system_prompt_for(language: str | None, custom: str | None = None) -> str | None:
    if custom:
        return custom
    lang = language_name(language)
    return f"You are a careful video analyst. Answer in {lang}." if lang else None
