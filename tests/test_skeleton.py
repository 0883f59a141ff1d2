import pytest

import vidline
from vidline.cli import main
from vidline.errors import VideoOpenError, redact
from vidline.models.config import resolve_model_config


def test_error_messages_are_one_line() -> None:
    err = VideoOpenError("/x/y.mp4", "not a media file\n(details)")
    assert str(err) == "/x/y.mp4: not a media file (details)"


def test_redact_hides_keys() -> None:
    assert redact("bad key sk-abcdef", "sk-abcdef") == "bad key ***"


def test_lazy_attribute_error() -> None:
    with pytest.raises(AttributeError):
        _ = vidline.does_not_exist  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("backend", "env", "expected"),
    [
        ("auto", {}, None),
        ("motion", {"OPENAI_API_KEY": "k"}, None),
        ("auto", {"OPENAI_BASE_URL": "http://h/v1"}, "openai"),
        # OPENAI_API_KEY alone (exported for other tools) is no Qwen-VL server: the README's first
        # command went to api.openai.com instead of the offline motion backend
        ("auto", {"OPENAI_API_KEY": "k"}, None),
        ("auto", {"OPENAI_API_KEY": "k", "DASHSCOPE_API_KEY": "d"}, "dashscope"),
        ("auto", {"OPENAI_API_KEY": "k", "OPENAI_BASE_URL": "http://h/v1"}, "openai"),
        ("auto", {"DASHSCOPE_API_KEY": "k"}, "dashscope"),
        ("dashscope", {}, "dashscope"),
    ],
)
def test_backend_resolution(backend: str, env: dict[str, str], expected: str | None) -> None:
    cfg = resolve_model_config(backend, env=env)
    assert (cfg.backend if cfg else None) == expected


def test_cli_help_exits_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0


def test_type_checkers_see_every_lazy_name_from_its_module() -> None:
    """The ``if TYPE_CHECKING:`` imports in vidline/__init__.py name exactly the lazy exports, each from
    the module ``__getattr__`` loads it from (else a user's mypy sees ``object``)."""
    import ast
    import importlib
    import inspect

    tree = ast.parse(inspect.getsource(vidline))
    block = next(node for node in tree.body if isinstance(node, ast.If)
                 and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
    typed = {alias.name: stmt.module for stmt in block.body if isinstance(stmt, ast.ImportFrom)
             for alias in stmt.names}
    assert set(typed) == set(vidline._LAZY) and set(vidline._LAZY) <= set(vidline.__all__)
    for name, module in typed.items():
        assert getattr(importlib.import_module(str(module)), name) is getattr(vidline, name), name


def test_require_number_takes_numpy_scalars_not_bools_or_strings() -> None:
    import numpy as np

    from vidline.errors import ConfigError, require_number

    require_number("n", np.int64(4), minimum=1, integer=True)
    require_number("x", np.float32(0.5), above=0, maximum=1)
    for bad in (True, "3", float("nan"), float("inf"), 2.5, 0):
        with pytest.raises(ConfigError, match="n must be >= 1"):
            require_number("n", bad, minimum=1, integer=True)
