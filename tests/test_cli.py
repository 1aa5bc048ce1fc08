"""Bad input through the CLI: a one-line error, exit status 2, and the run folder untouched."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from lfp_engine.run.manifest import MANIFEST_TABLE
from lfp_engine.run.store import RunStore
from precompute.cli import main


def folder_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def error_of(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("lfp: error: ") and "Traceback" not in err
    return err


@pytest.mark.parametrize("argv, message", [
    (["--preset", "huge"], "unknown preset 'huge'"),
    (["--set", "rlhf.steps=0"], "rlhf.steps: must be at least 1"),
    (["--set", "synthetic.test_fraction=1.5"], "synthetic.test_fraction"),
    (["--set", "rlhf.nonsense=1"], "unknown setting 'rlhf.nonsense'"),
    (["--set", "justakey"], "not of the form key=value"),
    (["--stages", "bogus"], "unknown stage"),
    (["--stages", "rlhf"], "needs ['world'] to be done first"),
])
def test_bad_run_options_fail_before_anything_is_written(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    assert message in error_of(capsys, ["run", "--out", str(out), *argv])
    assert not out.exists()


def test_unreachable_hub_for_a_hub_preset(tmp_path, capsys, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    err = error_of(capsys, ["run", "--preset", "pythia-70m", "--out", str(tmp_path / "p"), "--stages", "world"])
    assert "offline: use --preset tiny or a local path" in err
    assert not (tmp_path / "p").exists()  # nothing made before the world's sources are known reachable
    err = error_of(capsys, ["run", "--preset", "pythia-70m", "--out", str(tmp_path / "q"), "--stages", "world",
                            "--set", "world.base_model=no such model"])
    assert "neither an existing local path nor a valid Hugging Face model id" in err
    assert not (tmp_path / "q").exists()


def test_corrupted_manifest_is_reported_and_the_folder_untouched(micro_run, tmp_path, capsys):
    out = tmp_path / "corrupt"
    shutil.copytree(micro_run, out)
    RunStore(out).write({}, [(f"UPDATE {MANIFEST_TABLE} SET settings = ? WHERE stage = ?", ["{broken", "rlhf"])])
    before = folder_digest(out)
    assert "corrupted" in error_of(capsys, ["run", "--out", str(out)])
    assert "corrupted" in error_of(capsys, ["status", str(out)])
    assert folder_digest(out) == before


def test_corrupted_store_file_is_reported_and_the_folder_untouched(micro_run, tmp_path, capsys):
    out = tmp_path / "garbage"
    shutil.copytree(micro_run, out)
    (out / "lfp.duckdb").write_bytes(b"\x00garbage" * 512)
    before = folder_digest(out)
    assert "not a readable DuckDB store" in error_of(capsys, ["run", "--out", str(out)])
    assert folder_digest(out) == before


def test_a_run_keeps_its_preset(micro_run, capsys):
    before = folder_digest(micro_run)
    assert "is a run of preset 'micro', not 'tiny'" in error_of(capsys, ["run", "--preset", "tiny", "--out", str(micro_run)])
    assert folder_digest(micro_run) == before


def test_status_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert "not a run folder" in error_of(capsys, ["status", str(tmp_path)])
    assert "not a run folder" in error_of(capsys, ["report", str(tmp_path)])


def test_report_before_the_answering_stages_says_what_gives_them(micro_run, tmp_path, capsys):
    out = tmp_path / "bare"
    out.mkdir()
    shutil.copy2(micro_run / "lfp.duckdb", out / "lfp.duckdb")
    store = RunStore(out)
    store.drop(sorted(store.tables() - {"run_config", "run_manifest", "world_lexicon"}))
    assert main(["report", str(out)]) == 0
    assert "No answers yet: the `rlhf` and `probe` stages give them" in capsys.readouterr().out


def test_config_file_layers_over_the_preset(tmp_path, capsys):
    cfg = tmp_path / "settings.toml"
    cfg.write_text('seed = 4\n[rlhf]\nsteps = "many"\n')
    assert "rlhf.steps: expected a whole number" in error_of(capsys, ["run", "--out", str(tmp_path / "r"),
                                                                     "--config", str(cfg)])
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = = 4")
    assert "does not parse" in error_of(capsys, ["run", "--out", str(tmp_path / "r"), "--config", str(bad)])
