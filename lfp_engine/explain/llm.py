"""Talking to a language model through any OpenAI-compatible endpoint, cached and bounded.

The method asks an LLM to write contrastive rewrites (paper 3.3, HH and toxic tasks), to
explain SAE features, to judge their relevance and to simulate their activations (3.4, 4.2).
All of it goes through `complete_many`:
- the endpoint is OpenAI itself or any compatible server (vLLM, llama.cpp, Ollama): model and
  base URL come from the run's settings or the environment, the key only ever from the
  environment, and it is never written to the store, the manifest or the logs;
- every response is cached in the run's store (`explanation_cache`, keyed by a hash of model
  and prompt) as soon as it arrives, so a re-run, or a run resumed after a crash, pays nothing
  for what it already asked;
- requests run with bounded concurrency; the `openai` client retries rate limits (429), server
  errors (5xx) and timeouts with exponential backoff (honouring Retry-After);
- a request that still fails, or whose answer the caller cannot use (malformed JSON, an empty
  explanation), is returned as failed and not cached, so the next run asks again;
- tokens used are counted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

import pandas as pd
from tqdm.auto import tqdm

from lfp_engine.explain.settings import LlmSettings
from lfp_engine.run.manifest import now
from lfp_engine.run.store import RunStore

log = logging.getLogger(__name__)

CACHE_TABLE = "explanation_cache"
CACHE_DDL = (
    f"CREATE TABLE IF NOT EXISTS {CACHE_TABLE} (key VARCHAR PRIMARY KEY, model VARCHAR, purpose VARCHAR, "
    "prompt VARCHAR, response VARCHAR, prompt_tokens BIGINT, completion_tokens BIGINT, created_at VARCHAR)",
    [],
)

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Endpoint:
    base_url: str | None
    model: str
    api_key: str = field(repr=False)
    timeout_s: float
    max_retries: int
    max_concurrency: int
    temperature: float
    max_tokens: int

    def describe(self) -> dict[str, object]:
        """What may be recorded about the endpoint: everything but the key."""
        return {"base_url": self.base_url or "https://api.openai.com/v1", "model": self.model,
                "temperature": self.temperature, "max_tokens": self.max_tokens}

    def client(self):
        from openai import OpenAI

        return OpenAI(base_url=self.base_url, api_key=self.api_key, timeout=self.timeout_s,
                      max_retries=self.max_retries)


def endpoint_from_settings(settings: LlmSettings, env: Mapping[str, str] | None = None) -> Endpoint | None:
    """The configured endpoint, or None when neither a base URL nor a key is configured.

    Base URL: `llm.base_url`, else $OPENAI_BASE_URL. Key: the environment variable named by
    `llm.api_key_env` (default OPENAI_API_KEY); a local server that wants no key gets a dummy.
    """
    env = os.environ if env is None else env
    base_url = settings.base_url or env.get("OPENAI_BASE_URL", "")
    key = env.get(settings.api_key_env, "")
    if not base_url and not key:
        return None
    return Endpoint(base_url=base_url or None, model=settings.model, api_key=key or "not-needed",
                    timeout_s=settings.timeout_s, max_retries=settings.max_retries,
                    max_concurrency=settings.max_concurrency, temperature=settings.temperature,
                    max_tokens=settings.max_tokens)


def cache_key(model: str, messages: Messages) -> str:
    return hashlib.sha256(json.dumps({"model": model, "messages": messages}, sort_keys=True).encode()).hexdigest()


@dataclass
class Completion:
    text: str | None
    """The answer, or None when the request failed after its retries."""
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False


@dataclass
class Usage:
    requests: int = 0
    cached: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, c: Completion) -> None:
        self.cached += c.cached
        self.requests += not c.cached
        self.failed += c.text is None
        if not c.cached:
            self.prompt_tokens += c.prompt_tokens
            self.completion_tokens += c.completion_tokens


class ResponseCache:
    """The store's `explanation_cache`, read once, appended to as responses arrive."""

    def __init__(self, store: RunStore):
        self.store = store
        store.write({}, [CACHE_DDL])
        frame = store.read(CACHE_TABLE)
        self._entries = {row.key: row for row in frame.itertuples()}
        self._lock = threading.Lock()

    def get(self, key: str) -> Completion | None:
        row = self._entries.get(key)
        if row is None:
            return None
        return Completion(text=row.response, prompt_tokens=int(row.prompt_tokens),
                          completion_tokens=int(row.completion_tokens), cached=True)

    def put(self, key: str, model: str, purpose: str, messages: Messages, c: Completion) -> None:
        with self._lock:
            self.store.write({}, [(
                f"INSERT OR REPLACE INTO {CACHE_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [key, model, purpose, json.dumps(messages), c.text, c.prompt_tokens, c.completion_tokens, now()],
            )])
            self._entries[key] = pd.Series({"response": c.text, "prompt_tokens": c.prompt_tokens,
                                            "completion_tokens": c.completion_tokens})


def _ask(client, endpoint: Endpoint, messages: Messages) -> Completion:
    from openai import OpenAIError

    try:
        response = client.chat.completions.create(model=endpoint.model, messages=messages,
                                                  temperature=endpoint.temperature, max_tokens=endpoint.max_tokens)
    except OpenAIError as err:
        # The message names the failure (status, timeout); the key is in neither.
        return Completion(text=None, error=f"{type(err).__name__}: {err}")
    choice = response.choices[0] if response.choices else None
    text = choice.message.content if choice is not None and choice.message is not None else None
    if text is None:
        return Completion(text=None, error="the endpoint returned no message content")
    usage = response.usage
    return Completion(text=text, prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                      completion_tokens=getattr(usage, "completion_tokens", 0) or 0)


def complete_many(endpoint: Endpoint, requests: Sequence[Messages], cache: ResponseCache, purpose: str,
                  usage: Usage | None = None,
                  accept: Callable[[int, str], bool] = lambda i, text: True) -> list[Completion]:
    """Answer every request (cached ones from the store), keeping the order of `requests`.

    `accept(i, answer)` says whether the answer to request i is usable; one that is not is
    returned with `text=None` and an error, and is not cached.
    """
    results: list[Completion | None] = [None] * len(requests)
    keys = [cache_key(endpoint.model, m) for m in requests]
    todo = []
    for i, key in enumerate(keys):
        hit = cache.get(key)
        if hit is not None:
            results[i] = hit
        else:
            todo.append(i)
    if todo:
        client = endpoint.client()
        with ThreadPoolExecutor(max_workers=endpoint.max_concurrency) as pool:
            futures = {pool.submit(_ask, client, endpoint, requests[i]): i for i in todo}
            for future in tqdm(as_completed(futures), total=len(futures), desc=f"LLM {purpose}", unit="request"):
                i = futures[future]
                completion = future.result()
                if completion.text is not None and not accept(i, completion.text):
                    completion = Completion(text=None, error=f"unusable answer: {completion.text[:200]!r}",
                                            prompt_tokens=completion.prompt_tokens,
                                            completion_tokens=completion.completion_tokens)
                if completion.text is not None:
                    cache.put(keys[i], endpoint.model, purpose, requests[i], completion)
                else:
                    log.warning("LLM request for %s failed: %s", purpose, completion.error)
                results[i] = completion
    done = [r for r in results if r is not None]
    if usage is not None:
        for r in done:
            usage.add(r)
    return done


def parse_json_answer(text: str | None) -> dict | None:
    """The first JSON object in an answer (models wrap JSON in prose or code fences); None if none."""
    if not text:
        return None
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict):
            return value
        start = text.find("{", start + 1)
    return None
