"""The distributed layer: one process is the identity, and two CPU processes over gloo compute what
one process computes (data-parallel SAE training within rounding, everything dealt out exactly).

The two-process checks run in one `torch.multiprocessing.spawn` (both processes import torch once);
each process writes what it computed to a file and the test compares the files with one process's
results. The end-to-end runs over `torchrun` are in test_scale_out.py.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from lfp_engine.run.distributed import SINGLE, Ranks, from_environment, shared_atomic_path
from lfp_engine.run.errors import ConfigError, InputError
from lfp_engine.sae.training import SaeSpec, train_saes

SPECS = [SaeSpec(layer=4, d_sae=6), SaeSpec(layer=7, d_sae=12, architecture="untied"),
         SaeSpec(layer=7, d_sae=8, architecture="topk", k=3),
         SaeSpec(layer=4, d_sae=16, architecture="topk", k=2, auxk_coefficient=1 / 32, auxk_dead_tokens=24)]
"""Data-parallel training must give one process's dictionaries for each: the paper's tied SAE, untied,
top-k, and top-k with AuxK (whose dead-latent count sees the whole global batch)."""
PROMPTS = ["the film", "the plot was", "", "a good", "bad", "the", "plot", "film film", "was"]


def test_one_process_is_the_identity(tmp_path):
    assert SINGLE.is_main and not SINGLE.distributed and SINGLE.owns(7) and SINGLE.mine([1, 2, 3]) == [1, 2, 3]
    batch = torch.arange(12.0).view(2, 6)
    assert SINGLE.part(batch, dim=1) is batch
    assert SINGLE.broadcast(5) == 5 and SINGLE.all_gather("x") == ["x"]
    assert SINGLE.merged({2: "b", 0: "a"}) == ["a", "b"]
    values = np.ones(3)
    SINGLE.sum_(values)
    assert values.tolist() == [1, 1, 1]
    with pytest.raises(InputError):
        SINGLE.from_main(lambda: (_ for _ in ()).throw(InputError("bad")))
    with shared_atomic_path(tmp_path / "folder", SINGLE) as folder:
        folder.mkdir()
        (folder / "file").write_text("x")
    assert (tmp_path / "folder" / "file").read_text() == "x"


def test_units_are_dealt_round_robin_and_batches_split_evenly():
    second = Ranks(rank=1, size=3)
    assert [u for u in range(8) if second.owns(u)] == [1, 4, 7] == second.mine(list(range(8)))
    batch = torch.arange(24.0).view(2, 12)
    assert torch.equal(second.part(batch, dim=1), batch[:, 4:8])
    with pytest.raises(ConfigError, match="divisible by 3"):
        second.part(torch.zeros(2, 10), dim=1)


def test_the_place_comes_from_the_launchers_environment(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert from_environment() == Ranks(rank=3, size=4, local_rank=1)
    assert Ranks(3, 4, 1).device(torch.device("cuda")) == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match="names one GPU"):
        Ranks(3, 4, 1).device(torch.device("cuda", 0))
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ConfigError, match="not below WORLD_SIZE"):
        from_environment()


def batches(seed: int, n_steps: int, rows: int):
    """Global batches [2 layers, rows, 6], the same for every process."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(n_steps):
        yield torch.randn(2, rows, 6, generator=generator)


def sampling_setup():
    from lfp_engine.worlds.tokenizer import train_bpe_tokenizer

    from .conftest import tiny_neox

    tokenizer = train_bpe_tokenizer(["the film was good and the plot was bad"] * 20, 300)
    return tiny_neox(layers=2, vocab=len(tokenizer)), tokenizer


def computed(ranks: Ranks) -> dict:
    """What the checks compute, on `ranks`: collectives, SAEs trained data-parallel, sampled completions."""
    from lfp_engine.models.generation import sample_completions

    out = {"gathered": ranks.all_gather(ranks.rank), "broadcast": ranks.broadcast(f"from {ranks.rank}"),
           "merged": ranks.merged({u: f"unit {u}" for u in range(5) if ranks.owns(u)})}
    rows = np.zeros((4, 2))
    rows[ranks.rank::ranks.size] = ranks.rank + 1
    ranks.sum_(rows)
    out["summed"] = rows.tolist()
    try:
        ranks.from_main(lambda: (_ for _ in ()).throw(InputError("refused on rank 0")))
    except InputError as err:
        out["error"] = str(err)
    trained = train_saes(batches(0, 40, 8), [4, 7], SPECS, d_in=6, n_steps=40, learning_rate=1e-2, seed=5,
                         log_every=20, ranks=ranks)
    out["saes"] = [{k: v.detach().clone() for k, v in sae.state_dict().items()} for sae in trained.saes]
    out["log"] = trained.log
    model, tokenizer = sampling_setup()
    out["completions"] = sample_completions(model, tokenizer, PROMPTS, max_new_tokens=5, batch_size=2, seed=3,
                                            ranks=ranks).completion_ids
    return out


def _worker(rank: int, size: int, folder: str) -> None:
    """One of the spawned processes: join the group (rendezvous through a file, so no port can be
    taken by someone else), compute, write the result."""
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank,
                                         world_size=size)
    try:
        result = computed(Ranks(rank=rank, size=size))
    finally:
        torch.distributed.destroy_process_group()
    Path(folder, f"rank{rank}.pkl").write_bytes(pickle.dumps(result))


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> list[dict]:
    folder = tmp_path_factory.mktemp("ranks")
    torch.multiprocessing.spawn(_worker, args=(2, str(folder)), nprocs=2, join=True)
    return [pickle.loads((folder / f"rank{r}.pkl").read_bytes()) for r in range(2)]


def test_two_processes_hear_each_other(two_processes):
    for rank, result in enumerate(two_processes):
        assert result["gathered"] == [0, 1] and result["broadcast"] == "from 0"
        assert result["merged"] == [f"unit {u}" for u in range(5)]
        assert result["summed"] == [[1, 1], [2, 2], [1, 1], [2, 2]]
        assert result["error"] == "refused on rank 0"


def test_data_parallel_saes_equal_one_process_with_the_same_global_batch(two_processes):
    alone = train_saes(batches(0, 40, 8), [4, 7], SPECS, d_in=6, n_steps=40, learning_rate=1e-2, seed=5, log_every=20)
    for result in two_processes:
        for ours, theirs in zip(result["saes"], alone.saes):
            for name, value in theirs.state_dict().items():
                torch.testing.assert_close(ours[name], value, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(result["log"][["loss", "mse", "sparsity"]].to_numpy(),
                                   alone.log[["loss", "mse", "sparsity"]].to_numpy(), rtol=1e-4, atol=1e-6)
    for a, b in zip(*(r["saes"] for r in two_processes)):  # the processes hold the very same weights
        assert all(torch.equal(a[k], b[k]) for k in a)
    # The check has teeth: half the batch (what one process sees) trains other weights.
    half = train_saes((b[:, :4] for b in batches(0, 40, 8)), [4, 7], SPECS, d_in=6, n_steps=40, learning_rate=1e-2,
                      seed=5, log_every=20)
    assert not torch.allclose(half.saes[0].W_enc, alone.saes[0].W_enc, rtol=1e-4, atol=1e-5)


def test_sampling_dealt_out_by_batch_equals_one_process(two_processes):
    from lfp_engine.models.generation import sample_completions

    model, tokenizer = sampling_setup()
    alone = sample_completions(model, tokenizer, PROMPTS, max_new_tokens=5, batch_size=2, seed=3)
    assert [r["completions"] for r in two_processes] == [alone.completion_ids] * 2


def test_the_launchers_command_lines(tmp_path, monkeypatch):
    from precompute import launch

    run = ["run", "--out", "runs/x", "--set", "seed=3"]
    assert launch.launcher_command("torchrun", 4, None, run)[1:] == [
        "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "4", "-m", "precompute.cli", *run]
    monkeypatch.setattr(launch, "accelerate_default_config", lambda: tmp_path / "none.yaml")
    command = launch.launcher_command("accelerate", 2, None, run)
    assert command[1:9] == ["-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
                            "--multi_gpu", "--mixed_precision"] and command[-7:] == ["--module", "precompute.cli", *run]
    mine = tmp_path / "fsdp.yaml"
    mine.write_text("distributed_type: FSDP\n")
    command = launch.launcher_command("accelerate", 8, str(mine), run)
    assert ["--config_file", str(mine)] == command[command.index("--config_file"):][:2] and "--multi_gpu" not in command
    with pytest.raises(ConfigError, match="no such file"):
        launch.launcher_command("accelerate", 2, str(tmp_path / "missing.yaml"), run)
    with pytest.raises(ConfigError, match="at least 1"):
        launch.launcher_command("torchrun", 0, None, run)


def test_lfp_run_with_a_launcher_checks_the_settings_first_and_passes_them_on(tmp_path, monkeypatch, capsys):
    from precompute import cli, launch

    started = []
    monkeypatch.setattr(launch.os, "execv", lambda path, command: started.append(command))
    assert cli.main(["run", "--out", str(tmp_path / "r"), "--preset", "micro", "--set", "sae.l1_coefficient=-1",
                     "--launcher", "torchrun", "--nproc", "2"]) == 2
    assert "sae.l1_coefficient" in capsys.readouterr().err and not started and not (tmp_path / "r").exists()
    cli.main(["run", "--out", str(tmp_path / "r"), "--preset", "micro", "--stages", "world", "--set", "seed=3",
              "--launcher", "torchrun", "--nproc", "2", "-v"])
    assert started[0][-11:] == ["-m", "precompute.cli", "run", "--out", str(tmp_path / "r"), "--preset", "micro",
                                "--stages", "world", "--set", "seed=3", "--verbose"][-11:]
    assert cli.main(["run", "--out", str(tmp_path / "r"), "--preset", "micro", "--launcher", "torchrun",
                     "--accelerate-config", "x.yaml"]) == 2
    assert "--accelerate-config goes with --launcher accelerate" in capsys.readouterr().err
    assert cli.main(["run", "--out", str(tmp_path / "r"), "--preset", "micro", "--nproc", "2"]) == 2
    assert "--nproc and --accelerate-config go with --launcher" in capsys.readouterr().err
