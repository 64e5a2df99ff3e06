"""The Ollama judge client of chapter 7 (check_if_running, query_model, generate_model_scores) against a
local HTTP server on 127.0.0.1 that speaks Ollama's chat API: ``POST /api/chat`` answered with a chunked
stream of JSON lines (``{"message": {"role": "assistant", "content": piece}, "done": false}`` ..., then a
last line with ``"done": true``), ``GET /`` answered "Ollama is running". The server can also be down, slow,
stall in the middle of an answer, report an error, or answer with something that is not Ollama's format."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ch07_instruct.instruct import (
    JudgeScores,
    OllamaError,
    check_if_running,
    generate_model_scores,
    judge_prompt,
    parse_score,
    query_model,
)


class FakeOllama(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # chunked transfer, as Ollama streams

    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):
        body = b"Ollama is running"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _chunk(self, data: bytes):
        self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def do_POST(self):
        server = self.server
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server.requests.append(request)
        behaviour = server.behaviour(request) if callable(server.behaviour) else server.behaviour
        kind, value = behaviour
        if kind == "error":  # Ollama's answer to an unknown model
            body = json.dumps({"error": value}).encode()
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if kind == "slow":
            time.sleep(value)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if kind == "garbage":
            self._chunk(b"<html>not ollama</html>\n")
        elif kind in ("answer", "slow", "stall", "truncated"):
            text = value if kind != "slow" else "42"
            pieces = [text[i : i + 3] for i in range(0, len(text), 3)] or [""]
            for piece in pieces:
                line = {
                    "model": request["model"],
                    "message": {"role": "assistant", "content": piece},
                    "done": False,
                }
                self._chunk(json.dumps(line).encode() + b"\n")
            if kind == "stall":
                time.sleep(2)
            if kind != "truncated":
                self._chunk(
                    json.dumps({"model": request["model"], "done": True, "done_reason": "stop"}).encode()
                    + b"\n"
                )
        self._chunk(b"")  # the end of the chunked body


@pytest.fixture
def ollama():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOllama)
    server.daemon_threads = True
    server.requests = []
    server.behaviour = ("answer", "Llamas eat grass.")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/api/chat"
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def down_url():
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/chat"


ENTRIES = [
    {"instruction": "Name a colour.", "input": "", "output": "Blue.", "model_response": "Blue."},
    {"instruction": "Add 2 and 2.", "input": "", "output": "4", "model_response": "5"},
    {"instruction": "Say hi.", "input": "", "output": "Hi!", "model_response": "Hello."},
    {"instruction": "Spell it.", "input": "freind", "output": "friend", "model_response": "fiend"},
]


def test_check_if_running(ollama, down_url):
    assert check_if_running(ollama.url) is True
    assert check_if_running(ollama.url.removesuffix("/api/chat")) is True  # the server's root works too
    assert check_if_running(down_url) is False
    assert check_if_running("not a url") is False


def test_query_model_joins_the_streamed_pieces_and_sends_the_book_options(ollama):
    assert query_model("What do Llamas eat?", "llama3", ollama.url) == "Llamas eat grass."
    (request,) = ollama.requests
    assert request == {
        "model": "llama3",
        "messages": [{"role": "user", "content": "What do Llamas eat?"}],
        "options": {"seed": 123, "temperature": 0.0, "num_ctx": 2048},
    }
    query_model("hi", "phi3", ollama.url, seed=1, num_ctx=4096)
    assert ollama.requests[-1]["model"] == "phi3"
    assert ollama.requests[-1]["options"] == {"seed": 1, "temperature": 0.0, "num_ctx": 4096}


def test_query_model_keeps_unicode_split_across_lines(ollama):
    ollama.behaviour = ("answer", "Lamas fressen Gräser ☺ und Heu")
    assert query_model("x", url=ollama.url) == "Lamas fressen Gräser ☺ und Heu"


def test_a_server_that_is_down(down_url):
    with pytest.raises(
        ConnectionError, match=r"no Ollama server answers at .*ollama serve.*ollama pull llama3"
    ):
        query_model("hi", url=down_url, timeout=5)


def test_a_slow_server_times_out(ollama):
    ollama.behaviour = ("slow", 2.0)
    start = time.perf_counter()
    with pytest.raises(TimeoutError, match="silent for 0.3 s before answering"):
        query_model("hi", url=ollama.url, timeout=0.3)
    assert time.perf_counter() - start < 1.5


def test_a_server_that_stalls_in_the_middle_of_an_answer(ollama):
    ollama.behaviour = ("stall", "a long answer")
    with pytest.raises(TimeoutError, match="in the middle of a reply"):
        query_model("hi", url=ollama.url, timeout=0.3)


def test_an_unknown_model_says_how_to_pull_it(ollama):
    ollama.behaviour = ("error", 'model "llama3" not found, try pulling it first')
    with pytest.raises(OllamaError, match=r"HTTP 404: model \"llama3\" not found.*ollama pull llama3"):
        query_model("hi", url=ollama.url)


def test_an_answer_not_in_ollamas_format(ollama):
    ollama.behaviour = ("garbage", None)
    with pytest.raises(OllamaError, match="did not answer in Ollama's format"):
        query_model("hi", url=ollama.url)


def test_a_stream_that_ends_before_done(ollama):
    ollama.behaviour = ("truncated", "half an ans")
    with pytest.raises(ConnectionError, match="before the end of its answer"):
        query_model("hi", url=ollama.url)


@pytest.mark.parametrize(
    ("answer", "score"),
    [
        ("85", 85),
        (" 85.\n", 85),
        ("Score: 70", 70),
        ("score = 7", 7),
        ("85/100", 85),
        ("85 out of 100", 85),
        ("0", 0),
        ("100", 100),
        ("120", None),
        ("-5", None),
        ("85.5", None),
        ("I would give it an 85.", None),
        ("85 or 90", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_score(answer, score):
    assert parse_score(answer) == score


def test_generate_model_scores_counts_answers_that_are_not_scores(ollama, capsys):
    answers = iter(["85", "Score: 10", "It is a good answer.", "120"])
    ollama.behaviour = lambda request: ("answer", next(answers))
    scores = generate_model_scores(ENTRIES, "model_response", url=ollama.url, progress=False)
    assert isinstance(scores, JudgeScores) and scores == [85, 10] and scores.average == 47.5
    assert scores.unscored == [(2, "It is a good answer."), (3, "120")]
    out = capsys.readouterr().out
    assert "2 of 4 answers were not a score from 0 to 100" in out and "entry 2: 'It is a good answer.'" in out
    prompts = [r["messages"][0]["content"] for r in ollama.requests]
    assert prompts == [judge_prompt(entry, "model_response") for entry in ENTRIES]


def test_generate_model_scores_counts_a_timeout_and_goes_on(ollama, capsys):
    ollama.behaviour = lambda request: (
        ("slow", 1.0) if "Add 2 and 2" in request["messages"][0]["content"] else ("answer", "50")
    )
    scores = generate_model_scores(ENTRIES, "model_response", url=ollama.url, timeout=0.3, progress=False)
    assert scores == [50, 50, 50] and scores.unscored == [(1, None)]
    assert "1 of 4 answers" in capsys.readouterr().out


def test_generate_model_scores_all_scored_prints_nothing(ollama, capsys):
    ollama.behaviour = ("answer", "60")
    scores = generate_model_scores(ENTRIES, "model_response", url=ollama.url, progress=False)
    assert scores == [60] * 4 and scores.unscored == [] and capsys.readouterr().out == ""


def test_generate_model_scores_stops_at_once_when_the_server_is_down(down_url):
    with pytest.raises(ConnectionError):
        generate_model_scores(ENTRIES, "model_response", url=down_url, progress=False)


def test_generate_model_scores_needs_the_responses():
    with pytest.raises(ValueError, match="entry 1 has no 'model_response' key"):
        generate_model_scores(
            [ENTRIES[0], {"instruction": "x", "input": "", "output": "y"}], "model_response"
        )


def test_judge_prompt_is_the_books():
    prompt = judge_prompt(ENTRIES[1], "model_response")
    assert prompt.startswith("Given the input `Below is an instruction")
    assert "and correct output `4`, score the model response `5` on a scale from 0 to 100" in prompt
    assert prompt.endswith("Respond with the integer number only.")


def test_an_empty_judge_scores_average_is_nan():
    assert JudgeScores().average != JudgeScores().average
