"""`vidline ask / describe / chapters` against the reference server, through the real SDKs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.refserver import RefServer
from vidline.cli import main
from vidline.synth import Marker, make_video, render_frame
from vidline.understand import find_time_references

MARKERS = (Marker("red square", 1.0, 3.0), Marker("green circle", 4.0, 6.0), Marker("blue triangle", 7.0, 9.0))
QUESTION = "which shapes appear and when?"


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli_ask") / "shapes.mp4"
    make_video(path, duration=10.0, fps=10, size=(160, 120), markers=MARKERS)
    return path


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "DASHSCOPE_API_KEY", "DASHSCOPE_HTTP_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("VIDLINE_CACHE_DIR", str(tmp_path / "cache"))


def _model(server: RefServer, api: str = "openai") -> list[str]:
    url = server.openai_base_url if api == "openai" else server.dashscope_base_url
    return ["--backend", api, "--base-url", url, "--api-key", "sk-test", "--model", "qwen2.5-vl-ref"]


def _generations(server: RefServer, n: int = 1) -> list:  # noqa: ANN202
    deadline = time.monotonic() + 3.0
    while True:
        gens = [r for r in server.requests if r.api in ("openai", "dashscope", "compat") and r.status]
        if len(gens) >= n or time.monotonic() > deadline:
            return gens
        time.sleep(0.02)


def _cited(text: str, label: str) -> list[float]:
    out: list[float] = []
    for sentence in text.replace("。", ".\n").replace(". ", ".\n").splitlines():
        if label in sentence:
            out += [t for _s, _e, t in find_time_references(sentence)]
    return out


def _check_truth(text: str, tol: float = 0.7) -> None:
    for m in MARKERS:
        times = _cited(text, m.label)
        assert times, (m.label, text)
        assert all(m.start - tol <= t <= m.end + tol for t in times), (m, times)


@pytest.mark.parametrize("api", ["openai", "dashscope"])
def test_ask_no_stream(refserver: RefServer, video: Path, api: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["ask", str(video), QUESTION, "--no-stream", "--system-prompt", "You are terse.",
                 *_model(refserver, api)])
    out, err = capsys.readouterr()
    assert code == 0, err
    _check_truth(out)
    gen = _generations(refserver)[0]
    assert out.endswith("\n") and not gen.stream and gen.system == "You are terse."


@pytest.mark.parametrize("api", ["openai", "dashscope"])
def test_ask_stream(refserver: RefServer, video: Path, api: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["ask", str(video), QUESTION, "--stream", "--max-tokens", "300", *_model(refserver, api)])
    out, err = capsys.readouterr()
    assert code == 0, err
    gen = _generations(refserver)[0]
    assert gen.stream and gen.chunks_sent > 3 and gen.parameters.get("max_tokens") == 300
    assert out == gen.answer + "\n"
    _check_truth(out)


def test_ask_json(refserver: RefServer, video: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["ask", str(video), QUESTION, "--json", *_model(refserver)])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    assert doc["path"] == "single" and doc["inputs"] == [str(video)] and doc["complete"] is True
    assert doc["usage"]["prompt_tokens"] == _generations(refserver)[0].prompt_tokens > 0
    _check_truth(doc["answer"])
    assert doc["citations"] and all(0 <= t <= 10 for t in doc["citations"])


def test_ask_map_reduce_when_over_budget(refserver: RefServer, video: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["ask", str(video), QUESTION, "--json", "--budget-tokens", "300", "--window", "2.5", "--caption-fps", "2",
            "--quiet", *_model(refserver, "dashscope")]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["path"] == "map-reduce" and len(doc["captions"]) == 4
    assert [c["start"] for c in doc["captions"]] == [0.0, 2.5, 5.0, 7.5]
    _check_truth(doc["answer"])
    assert len(_generations(refserver, 5)) == 5
    # re-running uses the cached captions (the cache dir is VIDLINE_CACHE_DIR): one request only
    refserver.reset()
    assert main(args) == 0
    doc2 = json.loads(capsys.readouterr().out)
    assert {c["status"] for c in doc2["captions"]} == {"cached"} and len(_generations(refserver)) == 1


def test_ask_dry_run(refserver: RefServer, video: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", str(video), QUESTION, "--dry-run", *_model(refserver)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("path: single") and "estimated input tokens:" in out
    assert main(["ask", str(video), QUESTION, "--dry-run", "--json", "--strategy", "map-reduce", "--window", "2.5",
                 *_model(refserver)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["path"] == "map-reduce" and doc["requests"] == 5 and doc["estimated_tokens"] > 0
    assert [r for r in refserver.requests if r.api != "models"] == []  # nothing sent


def test_ask_json_estimate_counts_the_payload_the_server_gets(refserver: RefServer, video: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    # the reference server is an OpenAI-compatible server but no vLLM: "generic", frames as image_url
    # parts (no temporal merge: twice a video's tokens). The run identifies it before planning.
    assert main(["ask", str(video), QUESTION, "--json", "--no-cache", *_model(refserver)]) == 0
    doc = json.loads(capsys.readouterr().out)
    gen = _generations(refserver)[0]
    assert gen.n_images == 20 and gen.n_frames == 0
    used = doc["usage"]["prompt_tokens"]
    assert used == gen.prompt_tokens and abs(doc["estimated_tokens"] - used) <= 0.03 * used, (doc, used)
    # the dry run cannot know: it says what it assumed, and --server generic gives the real run's numbers
    refserver.reset()
    assert main(["ask", str(video), QUESTION, "--dry-run", *_model(refserver)]) == 0
    out = capsys.readouterr().out
    assert "payload: vllm server, video mode (assumed)" in out and "--server" in out and "--mode" in out
    assert main(["ask", str(video), QUESTION, "--dry-run", "--json", *_model(refserver)]) == 0
    assumed = json.loads(capsys.readouterr().out)
    assert (assumed["server"], assumed["mode"], assumed["server_assumed"]) == ("vllm", "video", True)
    assert "--server" in assumed["note"] and assumed["estimated_tokens"] < 0.6 * doc["estimated_tokens"]
    assert main(["ask", str(video), QUESTION, "--dry-run", "--json", "--server", "generic", *_model(refserver)]) == 0
    generic = json.loads(capsys.readouterr().out)
    assert (generic["server"], generic["mode"], generic["server_assumed"], generic["note"]) == (
        "generic", "frames", False, None)
    assert generic["estimated_tokens"] == doc["estimated_tokens"] and generic["reason"] == doc["reason"]
    assert refserver.requests == []  # dry runs contact nothing


def test_ask_generic_server_keeps_the_budget(refserver: RefServer, video: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    # 1200 tokens hold 18 frames of 10 s as a video (9 x 130) but only 8 as images (130 each + marker and
    # time label): the single request sent must be within the budget as the server counts it
    assert main(["ask", str(video), QUESTION, "--json", "--no-cache", "--budget-tokens", "1200",
                 *_model(refserver)]) == 0
    doc = json.loads(capsys.readouterr().out)
    gen = _generations(refserver)[0]
    assert doc["path"] == "single" and gen.n_images == 8
    assert gen.visual_tokens + 2 * gen.n_images + 5 * gen.n_images <= 1200


def test_ask_dropped_stream_is_reported_incomplete(refserver: RefServer, video: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    refserver.configure(drop_stream_after=3)
    code = main(["ask", str(video), QUESTION, "--stream", "--retries", "1", *_model(refserver)])
    out, err = capsys.readouterr()
    assert code == 3
    assert "incomplete" in err and "[stream interrupted, retrying" in err
    assert out.endswith("\n") and 0 < len(out.strip()) < 60  # the partial text, once, not repeated
    assert len(_generations(refserver, 2)) == 2


def test_ask_several_images(refserver: RefServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = []
    for i, label in enumerate(["blue triangle", "green circle", "red square"]):
        p = tmp_path / f"img{i}.jpg"
        Image.fromarray(render_frame(0.0, 200, 150, [Marker(label, 0, 1)])).save(p, quality=95)
        paths.append(str(p))
    code = main(["ask", *paths, "what do these images show?", "--no-stream", *_model(refserver, "dashscope")])
    out, err = capsys.readouterr()
    assert code == 0, err
    gen = _generations(refserver)[0]
    assert gen.n_images == 3 and gen.n_frames == 0
    assert 0 <= out.find("blue triangle") < out.find("green circle") < out.find("red square")


def test_ask_bad_input_and_no_model(refserver: RefServer, video: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", str(video), QUESTION]) == 2
    assert "no model configured" in capsys.readouterr().err
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    code = main(["ask", str(junk), QUESTION, *_model(refserver)])
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1 and "junk.mp4" in err


def test_describe(refserver: RefServer, video: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["describe", str(video), "--stream", "--lang", "zh", *_model(refserver, "dashscope")])
    out, err = capsys.readouterr()
    assert code == 0, err
    gen = _generations(refserver)[0]
    assert gen.stream and "Chinese" in (gen.system or "")
    _check_truth(out)


@pytest.mark.parametrize("fmt", ["youtube", "vtt", "json"])
def test_chapters(refserver: RefServer, video: Path, fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["chapters", str(video), "--format", fmt, *_model(refserver)])
    out, err = capsys.readouterr()
    assert code == 0, err
    if fmt == "youtube":
        lines = out.splitlines()
        assert lines[0] == "00:00 red square"  # YouTube: the first chapter starts at 00:00
        assert [ln.split(" ", 1)[1] for ln in lines] == [m.label for m in MARKERS]
        starts = [find_time_references(ln)[0][2] for ln in lines]
        assert all(abs(s - m.start) <= 1.0 for s, m in zip(starts[1:], MARKERS[1:], strict=True))
    elif fmt == "vtt":
        assert out.startswith("WEBVTT\n\n")
        cues = [b.splitlines() for b in out.strip().split("\n\n")[1:]]
        assert [c[2] for c in cues] == [m.label for m in MARKERS]
        assert cues[0][1].startswith("00:00:00.000 --> ")
        assert all(" --> " in c[1] for c in cues)
    else:
        data = json.loads(out)
        assert [d["title"] for d in data] == [m.label for m in MARKERS]
        assert data[0]["start"] == 0.0 and data[-1]["end"] == pytest.approx(10.0, abs=0.2)
        for d, m in zip(data[1:], MARKERS[1:], strict=True):
            assert abs(d["start"] - m.start) <= 1.0


def test_chapters_map_reduce(refserver: RefServer, video: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["chapters", str(video), "--strategy", "map-reduce", "--window", "2.5", "--caption-fps", "2",
                 "--quiet", "--format", "json", *_model(refserver)])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert [d["title"] for d in data] == [m.label for m in MARKERS] and data[0]["start"] == 0.0
    for d, m in zip(data[1:], MARKERS[1:], strict=True):
        assert abs(d["start"] - m.start) <= 1.0
    assert len(_generations(refserver, 5)) == 5  # 4 caption windows + the final request


@pytest.mark.parametrize("extra", [["--stream"], ["--no-stream"]])
def test_ask_wrong_key_fails_fast(refserver: RefServer, video: Path, extra: list[str],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    args = _model(refserver, "dashscope")
    args[args.index("sk-test")] = "sk-wrong"
    code = main(["ask", str(video), QUESTION, *extra, *args])
    err = capsys.readouterr().err
    assert code == 1 and "authentication failed" in err and "sk-wrong" not in err and "incomplete" not in err
    assert len([r for r in refserver.requests if r.api == "dashscope"]) == 1  # not retried


@pytest.mark.parametrize("option", [["--budget-tokens", "0"], ["--budget-tokens", "-100"], ["--max-frames", "0"],
                                    ["--concurrency", "0"]])
def test_ask_counts_must_be_positive(refserver: RefServer, video: Path, option: list[str],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    # --budget-tokens 0 once ran a map-reduce at 4 frames per window and answered wrongly, exit 0
    with pytest.raises(SystemExit) as info:
        main(["ask", str(video), QUESTION, *_model(refserver), *option])
    assert info.value.code == 2 and "Traceback" not in capsys.readouterr().err
    assert not _generations(refserver, 0)


def test_ask_question_not_utf8_is_a_bad_option(refserver: RefServer, video: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    # a Latin-1 terminal: Python hands undecodable bytes over as surrogates; the SDK failed on them only
    # after the video was decoded (a traceback with --json)
    question = b"quand appara\xeet le carr\xe9 ?".decode("utf-8", "surrogateescape")
    for extra in ([], ["--json"]):
        with pytest.raises(SystemExit) as info:
            main(["ask", str(video), question, *_model(refserver), *extra])
        assert info.value.code == 2 and "not valid UTF-8" in capsys.readouterr().err
    assert not _generations(refserver, 0)


def test_chapters_output_checked_first_and_format_from_suffix(refserver: RefServer, video: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    for bad, says in ((tmp_path / "missing" / "ch.vtt", "no such directory"), (tmp_path, "is a directory")):
        assert main(["chapters", str(video), *_model(refserver), "-o", str(bad), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err
    assert not _generations(refserver, 0)  # checked before the answer was asked (and paid) for
    out = tmp_path / "ch.json"
    assert main(["chapters", str(video), *_model(refserver), "-o", str(out), "--quiet"]) == 0
    marks = json.loads(out.read_text())  # JSON, as the suffix says (it was YouTube text)
    assert marks and marks[0]["start"] == 0


def test_ask_output_write_error_is_one_line(refserver: RefServer, video: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    class Full:
        def write(self, _text: str) -> int:
            raise OSError(28, "No space left on device")

        def flush(self) -> None:
            pass

        def isatty(self) -> bool:
            return False

    monkeypatch.setattr("sys.stdout", Full())
    assert main(["ask", str(video), QUESTION, *_model(refserver), "--no-stream"]) == 1
    assert "No space left on device" in capsys.readouterr().err


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"question": 123}, "question must be text"), ({"question": b"when?"}, "question must be text"),
    ({"max_tokens": "abc"}, "max_tokens"), ({"useful_fps": float("nan")}, "useful_fps"),
    ({"concurrency": "2"}, "concurrency"), ({"max_visual_tokens": 0}, "max_visual_tokens"),
    ({"max_visual_tokens": -1}, "max_visual_tokens"), ({"cache": 123}, "cache must be"),
    ({"system_prompt": 5}, "system_prompt must be text"),
    ({"question": "caf\udce9?"}, "question is not valid UTF-8"),
])
def test_ask_api_arguments_are_config_errors(video: Path, kwargs: dict, name: str) -> None:
    from vidline.errors import ConfigError
    from vidline.models.config import ModelConfig
    from vidline.understand import ask

    question = kwargs.pop("question", QUESTION)
    config = ModelConfig("openai", base_url="http://127.0.0.1:9/v1", model="m")
    with pytest.raises(ConfigError, match=name):
        ask(video, question, config=config, **kwargs)


def test_ask_arguments_in_the_wrong_order_are_said(video: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the question forgotten: the second video was taken for the question and "answered"
    assert main(["ask", str(video), str(video)]) == 2
    assert "is a file: give the question last" in capsys.readouterr().err
    # the question first: "what is this: no such file" said nothing about the order
    assert main(["ask", "what is this", str(video)]) == 2
    assert "give the question last" in capsys.readouterr().err
    assert main(["ask", "what is this", str(video) + ".missing", "when?"]) == 2
    assert "the question goes last" in capsys.readouterr().err
