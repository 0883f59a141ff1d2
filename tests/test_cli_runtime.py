"""The CLI's tuning of its own process: glibc's mmap and trim thresholds, and the SDK imported without
collections and then frozen out of them."""

from __future__ import annotations

import gc
import os
import subprocess
import sys

import pytest

from vidline.cli.runtime import settle_imports, tune_allocator
from vidline.models.config import ModelConfig

glibc_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")


@glibc_only
@pytest.mark.parametrize(("user_set", "tuned"), [
    ((), ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"]),
    (("MALLOC_MMAP_THRESHOLD_",), ["MALLOC_TRIM_THRESHOLD_"]),
    (("MALLOC_TRIM_THRESHOLD_",), ["MALLOC_MMAP_THRESHOLD_"]),
    (("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"), []),
])
def test_allocator_thresholds_are_fixed_unless_the_user_set_them(
        monkeypatch: pytest.MonkeyPatch, user_set: tuple[str, ...], tuned: list[str]) -> None:
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)
    for name in user_set:
        monkeypatch.setenv(name, "131072")
    assert tune_allocator() == tuned  # the user's own settings win


# A frame-sized block (1008x560 RGB, Qwen's video size) allocated, written and freed again and again,
# as the decoders and encoders do thousands of times per run: (page faults, pages per block).
_FAULTS = """
import ctypes, resource, sys
from vidline.cli.runtime import tune_allocator
if sys.argv[1] == "tuned":
    tune_allocator()
else:  # the previous setting: a 1 MB mmap threshold and glibc's default trim threshold
    ctypes.CDLL(None).mallopt(-3, 1 << 20)
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 1008 * 560 * 3
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, size // 4096)
"""


@glibc_only
def test_a_freed_frame_sized_block_is_reused_without_page_faults() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}

    def faults(setting: str) -> tuple[int, int]:
        out = subprocess.run([sys.executable, "-c", _FAULTS, setting], env=env, check=True, capture_output=True,
                             text=True).stdout
        n, pages = out.split()
        return int(n), int(pages)

    tuned, pages = faults("tuned")
    assert tuned < 3 * pages  # faulted in once, then reused
    old, _ = faults("old")
    assert old > 100 * pages  # mapped, faulted in and handed back every time (what the tuning avoids)


def test_settle_imports_loads_the_sdk_and_freezes_the_startup_objects() -> None:
    # a fresh interpreter: the SDK is not imported before, and is after, with the collector running again
    code = (
        "import gc, sys\n"
        "from vidline.cli.runtime import settle_imports\n"
        "from vidline.models.config import ModelConfig\n"
        "assert 'openai' not in sys.modules\n"
        "settle_imports(ModelConfig('openai'))\n"
        "assert 'openai' in sys.modules and gc.isenabled() and gc.get_freeze_count() > 10000\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_settle_imports_without_a_model_only_freezes() -> None:
    before = set(sys.modules)
    settle_imports(None)
    assert gc.isenabled() and gc.get_freeze_count() > 0
    assert {m for m in set(sys.modules) - before if m.split(".")[0] in ("openai", "dashscope")} == set()
    gc.unfreeze()


def test_settle_imports_survives_a_missing_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    import vidline.cli.runtime as runtime

    monkeypatch.setitem(runtime._SDK_MODULES, "dashscope", "no_such_sdk_module")
    settle_imports(ModelConfig("dashscope"))  # the run reports a missing SDK itself
    assert gc.isenabled()
    gc.unfreeze()


def test_a_timeline_imports_the_openai_sdk_in_its_warm_up_with_the_collector_paused() -> None:
    # a fresh interpreter: settle_imports(background=True) leaves the SDK alone; the backend's warm-up
    # thread imports it inside the collector pause, and its objects are frozen
    code = (
        "import gc, sys\n"
        "from vidline.cli.runtime import settle_imports\n"
        "from vidline.models import make_backend\n"
        "from vidline.models.base import warm_up_in_background\n"
        "from vidline.models.config import ModelConfig\n"
        "cfg = ModelConfig('openai', base_url='http://127.0.0.1:9/v1', model='m', server='vllm')\n"
        "settle_imports(cfg, background=True)\n"
        "before = gc.get_freeze_count()\n"
        "backend = make_backend(cfg)\n"
        "assert 'openai' not in sys.modules\n"
        "t = warm_up_in_background(backend)\n"
        "t.join()\n"
        "assert t.name == 'vidline-warm-up' and 'openai' in sys.modules and backend._client_obj is not None\n"
        "assert gc.isenabled() and gc.get_freeze_count() > before + 10000\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_ctrl_c_while_the_cli_loads_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C while the command's modules load (the console script's import of vidline.cli, or the
    parser's import of a command) is "vidline: interrupted" and exit 130, not a traceback."""
    import builtins

    import vidline._console as console
    import vidline.cli as cli

    real_import = builtins.__import__

    def interrupted_import(name: str, *args: object, **kwargs: object) -> object:
        if name == "vidline.cli":
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", interrupted_import)
    with pytest.raises(SystemExit) as info:
        console.main()
    assert info.value.code == 130 and capsys.readouterr().err == "vidline: interrupted\n"
    monkeypatch.setattr(builtins, "__import__", real_import)

    def interrupted_parser() -> object:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted_parser)
    monkeypatch.setattr(cli, "_exit_on_second_interrupt", lambda: None)
    with pytest.raises(SystemExit) as info:
        cli.entry()
    assert info.value.code == 130 and capsys.readouterr().err == "vidline: interrupted\n"


def test_the_console_script_and_import_vidline_stay_light() -> None:
    """The console script is vidline._console:main, and ``import vidline`` loads no numpy: Ctrl-C is
    caught from the first import of the CLI on."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert 'vidline = "vidline._console:main"' in text
    code = "import sys, vidline, vidline._console\nassert 'numpy' not in sys.modules, sorted(sys.modules)\n"
    subprocess.run([sys.executable, "-c", code], check=True)
