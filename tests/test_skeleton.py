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
