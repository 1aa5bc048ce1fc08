"""Hub loading: local paths work, an unreachable hub fails fast and clearly, bad ids are named."""

from __future__ import annotations

import time

import pytest

from lfp_engine.models import hub
from lfp_engine.run.errors import HubUnreachableError, UnknownModelError

from .conftest import tiny_neox


@pytest.fixture
def dead_hub(monkeypatch):
    """Point the hub at a closed loopback port: every request is refused at once."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def test_unreachable_hub_gives_the_offline_hint_quickly(dead_hub):
    start = time.monotonic()
    with pytest.raises(HubUnreachableError, match="offline: use --preset tiny or a local path"):
        hub.load_causal_lm("EleutherAI/pythia-70m-never-cached")
    assert time.monotonic() - start < 30
    with pytest.raises(HubUnreachableError, match="offline"):
        hub.load_dataset_split("stanfordnlp/imdb-never-cached", "train")


def test_forced_offline_mode_is_respected(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubUnreachableError, match="HF_HUB_OFFLINE"):
        hub.probe_hub("EleutherAI/pythia-70m")


def test_malformed_ids_are_unknown_models(dead_hub):
    with pytest.raises(UnknownModelError, match="neither an existing local path"):
        hub.load_causal_lm("not a model id !!")
    with pytest.raises(UnknownModelError):
        hub.load_tokenizer("../../etc/passwd-like//id")


def test_local_checkpoint_paths_load(tmp_path, dead_hub):
    model = tiny_neox(layers=2)
    model.save_pretrained(tmp_path / "ckpt")
    loaded = hub.load_causal_lm(str(tmp_path / "ckpt"))
    assert type(loaded).__name__ == "GPTNeoXForCausalLM"
    assert not loaded.training


def test_local_dataset_files_load(tmp_path):
    import pandas as pd

    pd.DataFrame({"text": ["one", "two"]}).to_parquet(tmp_path / "reviews.parquet")
    (tmp_path / "reviews.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n')
    assert hub.load_dataset_split(str(tmp_path / "reviews.parquet"), "train")["text"] == ["one", "two"]
    assert len(hub.load_dataset_split(str(tmp_path / "reviews.jsonl"), "test")) == 2
    (tmp_path / "notes.docx").write_text("x")
    with pytest.raises(UnknownModelError, match="not a dataset file"):
        hub.load_dataset_split(str(tmp_path / "notes.docx"), "train")
