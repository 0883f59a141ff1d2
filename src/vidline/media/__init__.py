"""The media layer: probe, Qwen-compatible sampling plans, windows, and streaming frame sampling.

Modules: ``probe`` (VideoInfo), ``plan`` (pure geometry/plans), ``windows`` (pure window planning),
``source`` (FrameSource interface), ``backends.pyav`` / ``backends.decord``, ``sampler``.
"""
