"""The LLM client against a real HTTP server: caching, retries, timeouts, and the key's secrecy."""

from __future__ import annotations

import pytest

from lfp_engine.explain.settings import LlmSettings
from lfp_engine.explain.llm import (CACHE_TABLE, Usage, complete_many, endpoint_from_settings, parse_json_answer,
                            ResponseCache)
from lfp_engine.run.store import RunStore

from .fake_llm import FakeLLM

SECRET = "sk-test-very-secret-key-1234"


def echo(messages):
    return "answer to " + messages[-1]["content"]


def endpoint(server, **kw):
    settings = LlmSettings(base_url=server.base_url, model="fake-model", max_retries=kw.pop("retries", 3),
                           timeout_s=kw.pop("timeout", 10.0), max_concurrency=2)
    return endpoint_from_settings(settings, env={"OPENAI_API_KEY": SECRET})


def test_no_endpoint_configured_means_offline():
    assert endpoint_from_settings(LlmSettings(), env={}) is None
    assert endpoint_from_settings(LlmSettings(base_url="http://localhost:8000/v1"), env={}).api_key == "not-needed"
    assert SECRET not in repr(endpoint_from_settings(LlmSettings(), env={"OPENAI_API_KEY": SECRET}))


def test_answers_are_cached_in_the_store(tmp_path):
    store = RunStore(tmp_path)
    requests = [[{"role": "user", "content": f"q{i}"}] for i in range(5)]
    with FakeLLM(echo) as server:
        ep = endpoint(server)
        usage = Usage()
        first = complete_many(ep, requests, ResponseCache(store), "test", usage)
        assert [c.text for c in first] == [f"answer to q{i}" for i in range(5)]
        assert len(server.requests) == 5 and usage.prompt_tokens == 55 and usage.completion_tokens == 35
        assert server.requests[0]["authorization"] == f"Bearer {SECRET}"
        assert server.requests[0]["body"]["model"] == "fake-model"
        again = Usage()
        second = complete_many(ep, requests, ResponseCache(store), "test", again)
        assert len(server.requests) == 5  # zero new requests
        assert [c.text for c in second] == [c.text for c in first] and all(c.cached for c in second)
        assert (again.requests, again.cached, again.prompt_tokens) == (0, 5, 0)
    assert len(store.read(CACHE_TABLE)) == 5


def test_rate_limits_and_server_errors_are_retried(tmp_path):
    with FakeLLM(echo) as server:
        server.failures = [429, 500, 503]
        result = complete_many(endpoint(server), [[{"role": "user", "content": "x"}]],
                               ResponseCache(RunStore(tmp_path)), "test")
        assert result[0].text == "answer to x"
        assert len(server.requests) == 4


def test_a_failure_is_reported_not_cached_and_retried_next_run(tmp_path):
    store = RunStore(tmp_path)
    request = [[{"role": "user", "content": "x"}]]
    with FakeLLM(echo) as server:
        server.failures = [500, 500]
        failed = complete_many(endpoint(server, retries=1), request, ResponseCache(store), "test")
        assert failed[0].text is None and "500" in failed[0].error
        assert store.read(CACHE_TABLE).empty
        ok = complete_many(endpoint(server, retries=1), request, ResponseCache(store), "test")
        assert ok[0].text == "answer to x" and not ok[0].cached


def test_a_timeout_is_a_failure_not_a_hang(tmp_path):
    with FakeLLM(echo) as server:
        server.failures = ["slow", "slow"]
        server.slow_s = 2.0
        result = complete_many(endpoint(server, retries=1, timeout=0.5), [[{"role": "user", "content": "x"}]],
                               ResponseCache(RunStore(tmp_path)), "test")
        assert result[0].text is None and "Timeout" in result[0].error


def test_the_key_is_written_nowhere(tmp_path):
    store = RunStore(tmp_path)
    with FakeLLM(echo) as server:
        complete_many(endpoint(server), [[{"role": "user", "content": "x"}]], ResponseCache(store), "test")
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("text, expected", [
    ('{"a": 1}', {"a": 1}),
    ('Sure! ```json\n{"a": "x}y"}\n``` hope this helps', {"a": "x}y"}),
    ("no json at all", None),
    ('{"broken": ', None),
    ("[1, 2]", None),
    ("", None),
    (None, None),
])
def test_json_answers_are_found_or_refused(text, expected):
    assert parse_json_answer(text) == expected


def test_unusable_answers_are_failures_and_not_cached(tmp_path):
    store = RunStore(tmp_path)
    with FakeLLM(echo) as server:
        result = complete_many(endpoint(server), [[{"role": "user", "content": "x"}]], ResponseCache(store), "test",
                               accept=lambda i, text: text.startswith("{"))
        assert result[0].text is None and "unusable answer" in result[0].error
    assert store.read(CACHE_TABLE).empty
