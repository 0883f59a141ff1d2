"""Timeline exports: ``csv`` (CSV), ``subtitles`` (SRT, WebVTT), ``html`` (self-contained report and
``linkify_times``), ``thumbnails`` (JPEG frames with PyAV). Use them through ``vidline.Timeline``
(``to_csv``/``to_srt``/``to_vtt``/``to_html``/``save``) or ``vidline export``."""
