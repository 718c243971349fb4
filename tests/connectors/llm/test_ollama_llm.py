"""OllamaLLM against a real HTTP server on 127.0.0.1 that speaks Ollama's ``POST /api/chat``."""

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from aiohttp import web

from agon.agents.llm import LLMError, Message
from agon.connectors.llm.factory import make_llm
from agon.connectors.llm.ollama import OllamaLLM
from agon.settings import LLMSettings

pytestmark = pytest.mark.timeout(30)

MESSAGES = [
    Message("system", "Motion: AI's impact on the job market is positive\nStance: for"),
    Message("user", "Open the debate."),
]
Action = Callable[[web.Request, dict], Awaitable[web.StreamResponse]]


class FakeOllama:
    """Answers each request with the next scripted action, then with a plain reply."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.script: list[Action] = []
        self.released = asyncio.Event()
        self.url = ""
        self.sent = 0

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        action = self.script.pop(0) if self.script else reply("default answer")
        return await action(request, body)


def final_fields(model: str) -> dict:
    return {
        "model": model,
        "created_at": "2025-01-01T00:00:00.000000Z",
        "done": True,
        "done_reason": "stop",
        "total_duration": 5_000_000,
        "load_duration": 1_000_000,
        "prompt_eval_count": 26,
        "prompt_eval_duration": 2_000_000,
        "eval_count": 7,
        "eval_duration": 2_000_000,
    }


def reply(text: str) -> Action:
    async def act(request: web.Request, body: dict) -> web.StreamResponse:
        return web.json_response(
            {**final_fields(body["model"]), "message": {"role": "assistant", "content": text}}
        )

    return act


def stream(chunks: list[str], error: str | None = None) -> Action:
    async def act(request: web.Request, body: dict) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        for chunk in chunks:
            line = {
                "model": body["model"],
                "created_at": "2025-01-01T00:00:00Z",
                "done": False,
                "message": {"role": "assistant", "content": chunk},
            }
            await response.write(json.dumps(line).encode() + b"\n")
        last = (
            {"error": error}
            if error
            else {**final_fields(body["model"]), "message": {"role": "assistant", "content": ""}}
        )
        await response.write(json.dumps(last).encode() + b"\n")
        await response.write_eof()
        return response

    return act


def endless(server: FakeOllama) -> Action:
    """A runaway model: words until the client hangs up (counted in ``server.sent``)."""

    async def act(request: web.Request, body: dict) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        server.sent = 0
        with contextlib.suppress(ConnectionError):
            while not server.released.is_set():
                line = {
                    "model": body["model"],
                    "done": False,
                    "message": {"role": "assistant", "content": "on "},
                }
                await response.write(json.dumps(line).encode() + b"\n")
                server.sent += 1
                await asyncio.sleep(0.001)
        return response

    return act


def status(code: int, error: str) -> Action:
    async def act(request: web.Request, body: dict) -> web.StreamResponse:
        return web.json_response({"error": error}, status=code)

    return act


def raw(text: str) -> Action:
    async def act(request: web.Request, body: dict) -> web.StreamResponse:
        return web.Response(text=text, content_type="application/json")

    return act


def hang(server: FakeOllama) -> Action:
    async def act(request: web.Request, body: dict) -> web.StreamResponse:
        await server.released.wait()
        return await reply("too late")(request, body)

    return act


@pytest.fixture
async def server() -> AsyncIterator[FakeOllama]:
    fake = FakeOllama()
    app = web.Application()
    app.router.add_post("/api/chat", fake.chat)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    fake.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    await web.SockSite(runner, sock).start()
    yield fake
    fake.released.set()
    await runner.cleanup()


@pytest.fixture
def unused_port() -> Iterator[int]:
    """A port bound but never listening: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@contextlib.asynccontextmanager
async def ollama(url: str, **kwargs) -> AsyncIterator[OllamaLLM]:
    llm = OllamaLLM(host=url, **kwargs)
    try:
        yield llm
    finally:
        await llm.aclose()


async def test_reply_and_request_body(server: FakeOllama):
    server.script = [reply("Jobs will grow.")]
    async with ollama(server.url) as llm:
        answer = await llm.chat("llama3.2", MESSAGES)
    assert (answer.text, answer.model) == ("Jobs will grow.", "llama3.2")
    assert (answer.prompt_tokens, answer.completion_tokens) == (26, 7)
    assert answer.latency_ms >= 0
    [body] = server.bodies
    assert body["model"] == "llama3.2"
    assert body["stream"] is False
    assert body["messages"] == [{"role": m.role, "content": m.content} for m in MESSAGES]


async def test_streamed_chunks_are_joined(server: FakeOllama):
    server.script = [stream(["Jobs ", "will ", "grow", "."])]
    async with ollama(server.url, stream=True) as llm:
        answer = await llm.chat("llama3.2", MESSAGES)
    assert answer.text == "Jobs will grow."
    assert (answer.prompt_tokens, answer.completion_tokens) == (26, 7)
    assert server.bodies[0]["stream"] is True


async def test_error_inside_a_stream_is_retried(server: FakeOllama):
    server.script = [stream(["Jobs "], error="runner process has terminated"), stream(["Fine."])]
    async with ollama(server.url, stream=True) as llm:
        answer = await llm.chat("llama3.2", MESSAGES)
    assert answer.text == "Fine."
    assert len(server.bodies) == 2


async def test_slow_server_is_retried_then_fails_retriable(server: FakeOllama):
    server.script = [hang(server), hang(server)]
    started = time.monotonic()
    async with ollama(server.url, timeout_s=0.3, retries=1) as llm:
        with pytest.raises(LLMError) as info:
            await llm.chat("llama3.2", MESSAGES)
    assert info.value.retriable
    assert len(server.bodies) == 2
    assert time.monotonic() - started < 5


async def test_per_call_timeout_bounds_the_whole_call(server: FakeOllama):
    server.script = [hang(server)]
    started = time.monotonic()
    async with ollama(server.url, timeout_s=60, retries=2) as llm:
        with pytest.raises(LLMError, match="within 0.5s") as info:
            await llm.chat("llama3.2", MESSAGES, timeout=0.5)
    assert info.value.retriable
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("code", [500, 503, 429])
async def test_server_error_then_success(server: FakeOllama, code: int):
    server.script = [status(code, "overloaded"), reply("Second time lucky.")]
    async with ollama(server.url, retries=2) as llm:
        answer = await llm.chat("llama3.2", MESSAGES)
    assert answer.text == "Second time lucky."
    assert len(server.bodies) == 2


async def test_persistent_server_error_exhausts_retries(server: FakeOllama):
    server.script = [status(500, "boom")] * 3
    async with ollama(server.url, retries=2) as llm:
        with pytest.raises(LLMError, match="3 attempts") as info:
            await llm.chat("llama3.2", MESSAGES)
    assert info.value.retriable
    assert len(server.bodies) == 3


async def test_missing_model_fails_at_once(server: FakeOllama):
    server.script = [status(404, 'model "nosuch:7b" not found, try pulling it first')]
    async with ollama(server.url, retries=2) as llm:
        with pytest.raises(LLMError, match="nosuch:7b") as info:
            await llm.chat("nosuch:7b", MESSAGES)
    assert not info.value.retriable
    assert len(server.bodies) == 1


async def test_unreadable_reply_is_not_retried(server: FakeOllama):
    server.script = [raw("<html>proxy error</html>")]
    async with ollama(server.url, retries=2) as llm:
        with pytest.raises(LLMError, match="unreadable") as info:
            await llm.chat("llama3.2", MESSAGES)
    assert not info.value.retriable
    assert len(server.bodies) == 1


@pytest.mark.parametrize("streaming", [False, True])
async def test_connection_refused_is_retriable(unused_port: int, streaming: bool):
    async with ollama(f"http://127.0.0.1:{unused_port}", retries=1, stream=streaming) as llm:
        with pytest.raises(LLMError, match="2 attempts") as info:
            await llm.chat("llama3.2", MESSAGES)
    assert info.value.retriable


async def test_factory_builds_an_ollama_client(server: FakeOllama):
    llm = make_llm(LLMSettings(backend="ollama", model="llama3.2", ollama_host=server.url, retries=0))
    try:
        assert isinstance(llm, OllamaLLM)
        assert (await llm.chat("llama3.2", MESSAGES)).text == "default answer"
    finally:
        await llm.aclose()


async def test_settings_reach_every_call(server: FakeOllama):
    settings = LLMSettings(
        backend="ollama", ollama_host=server.url, max_output_tokens=123, temperature=0.2,
        context_tokens=8192, keep_alive="30m", stream=False,
    )  # fmt: skip
    llm = make_llm(settings)
    try:
        await llm.chat("llama3.2", MESSAGES)
    finally:
        await llm.aclose()
    [body] = server.bodies
    assert body["options"] == {"num_predict": 123, "temperature": 0.2, "num_ctx": 8192}
    assert body["keep_alive"] == "30m" and body["stream"] is False


async def test_a_runaway_stream_is_cut_off_at_the_output_cap(server: FakeOllama):
    server.script = [endless(server)]
    started = time.monotonic()
    async with ollama(server.url, stream=True, max_output_chars=300) as llm:
        answer = await llm.chat("llama3.2", MESSAGES, timeout=10)
    assert 300 <= len(answer.text) < 310 and answer.text.startswith("on on ")
    assert answer.completion_tokens > 0 and answer.prompt_tokens > 0, "estimated when Ollama sent no counts"
    await asyncio.sleep(0.3)
    sent = server.sent
    await asyncio.sleep(0.3)
    assert server.sent == sent, "the server kept generating after the client hung up"
    assert time.monotonic() - started < 5


def test_a_prompt_budget_that_leaves_no_room_to_answer_is_refused():
    with pytest.raises(ValueError, match="exceed context_tokens"):
        LLMSettings(context_tokens=2048, prompt_budget_tokens=2000, max_output_tokens=300)


def test_a_call_timeout_beyond_the_turn_deadline_is_refused():
    from agon.settings import Settings

    with pytest.raises(ValueError, match="must be less than worker.turn_timeout_s"):
        Settings(llm={"timeout_s": 30}, worker={"turn_timeout_s": 30})
