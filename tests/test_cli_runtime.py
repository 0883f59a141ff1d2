"""The CLI's tuning of its own process: glibc's mmap threshold, and the SDK imported without
collections and then frozen out of them."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

from vidline.cli.runtime import settle_imports, tune_allocator
from vidline.models.config import ModelConfig


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_allocator_threshold_is_fixed_unless_the_user_set_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert tune_allocator()
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert not tune_allocator()  # the user's own setting wins


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
