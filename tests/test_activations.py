"""Activation capture: rows are exactly the text tokens (never padding), shards and index agree,
reading back streams the same numbers, and bad input is refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lfp_engine.sae.activations import ActivationSet, capture_activations, mlp_outputs, pad_batch, token_sequences
from lfp_engine.run.errors import InputError, StageOrderError

from .conftest import tiny_neox

PAD, BOS = 0, 1


def sequences(n: int = 23, seed: int = 0) -> list[tuple[int, list[int]]]:
    rng = np.random.default_rng(seed)
    return [(100 + i, rng.integers(2, 64, size=int(rng.integers(1, 12))).tolist()) for i in range(n)]


def capture(tmp_path, model, seqs, layers=(0, 2), shard_rows=16, batch_size=4, bos=BOS):
    return capture_activations(model, seqs, list(layers), tmp_path / "set", pad_token_id=PAD, bos_token_id=bos,
                               batch_size=batch_size, shard_rows=shard_rows, model_name="tiny")


@pytest.mark.parametrize("bos", [BOS, None])
def test_rows_are_the_text_tokens_of_each_text_alone(tmp_path, bos):
    model = tiny_neox()
    seqs = sequences()
    info = capture(tmp_path, model, seqs, bos=bos)
    acts = ActivationSet(tmp_path / "set")
    assert info.n_rows == sum(len(s) for _, s in seqs) == len(acts.index) and info.n_shards > 1
    assert sorted(acts.sequences()) == sorted(seqs)
    # Every text, run alone with no padding at all, gives the very rows that were stored.
    index = acts.index
    for text_id, tokens in seqs[:8]:
        ids, attention, text = pad_batch([tokens], PAD, bos, "cpu")
        assert attention.all()
        alone = mlp_outputs(model, [0, 2], ids, attention)
        rows = np.sort(index.loc[index["text_id"] == text_id, "row"].to_numpy())
        for layer in (0, 2):
            stored = acts.gather(layer, rows)
            torch.testing.assert_close(stored, alone[layer][text].float(), rtol=1e-5, atol=1e-6)
        assert index.loc[index["text_id"] == text_id, "position"].tolist() == list(range(len(tokens)))


def test_padding_positions_never_become_rows(tmp_path):
    """A batch mixing long and short texts: the count of rows is the count of text tokens, and no
    stored vector is the MLP output at a padding position."""
    model = tiny_neox()
    seqs = [(1, [5] * 11), (2, [6, 7]), (3, [8])]
    capture(tmp_path, model, seqs, layers=[1], batch_size=3)
    acts = ActivationSet(tmp_path / "set")
    ids, attention, text = pad_batch([s for _, s in seqs], PAD, BOS, "cpu")
    padded = mlp_outputs(model, [1], ids, attention)[1][attention == 0]
    stored = acts.shard(0, [1])[0]
    assert stored.shape[0] == 14 and padded.shape[0] > 0
    assert not any(torch.isclose(stored, p).all(dim=1).any() for p in padded)
    assert (acts.index["token_id"] != PAD).all()


def test_shards_end_at_text_boundaries_and_stream_in_order(tmp_path):
    model = tiny_neox()
    capture(tmp_path, model, sequences(40), shard_rows=20)
    acts = ActivationSet(tmp_path / "set")
    index = acts.index
    assert index.groupby("text_id")["shard"].nunique().max() == 1
    assert (index["row"].to_numpy() == np.arange(len(index))).all()
    streamed = torch.cat([chunk for _, chunk in acts.iter_rows([2, 0], batch_rows=7)], dim=1)
    whole = torch.cat([acts.shard(s, [2, 0]) for s in range(acts.info.n_shards)], dim=1)
    assert torch.equal(streamed, whole)
    rows = np.array([0, 3, len(index) - 1])
    assert torch.equal(acts.gather(0, rows), whole[1, rows])


def tag_rows(folder, layers):
    """Overwrite each stored vector with its row number (+ 1000 per layer), to follow rows around."""
    from safetensors.torch import save_file

    acts = ActivationSet(folder)
    start = 0
    for shard, size in enumerate(acts.shard_sizes()):
        rows = torch.arange(start, start + size, dtype=torch.float32)[:, None].expand(size, acts.d_model)
        save_file({f"layer_{layer}": (rows + 1000 * i).contiguous() for i, layer in enumerate(layers)},
                  str(folder / f"shard_{shard:05d}.safetensors"))
        start += size
    return acts


def test_training_batches_are_seeded_shuffles_of_all_rows(tmp_path):
    capture(tmp_path, tiny_neox(), sequences(40), shard_rows=20)
    acts = tag_rows(tmp_path / "set", [0, 2])
    n = acts.n_rows // 5
    one = torch.cat(list(acts.shuffled_batches([0, 2], 5, n, seed=3, buffer_bytes=2000)), dim=1)
    two = torch.cat(list(acts.shuffled_batches([0, 2], 5, n, seed=3, buffer_bytes=2000)), dim=1)
    other = torch.cat(list(acts.shuffled_batches([0, 2], 5, n, seed=4, buffer_bytes=2000)), dim=1)
    assert torch.equal(one, two) and not torch.equal(one, other)
    rows = one[0, :, 0].long()
    assert torch.equal(one[1, :, 0], one[0, :, 0] + 1000)  # both layers of a batch hold the same rows
    assert len(set(rows.tolist())) == len(rows) == 5 * n  # an epoch never repeats a row
    assert rows.tolist() != sorted(rows.tolist())
    more = list(acts.shuffled_batches([0], 5, 3 * n, seed=3))
    assert len(more) == 3 * n  # epochs repeat when more batches are asked than rows exist


def test_token_budget_is_exact_and_texts_are_cut():
    class CharTokenizer:
        def __call__(self, texts, add_special_tokens=False):
            return {"input_ids": [[ord(c) % 50 + 2 for c in t] for t in texts]}

    texts = pd.DataFrame({"text_id": [7, 8, 9], "text": ["abcdef", "", "ghijklmnop"]})
    out = list(token_sequences(CharTokenizer(), texts, n_tokens=9, max_tokens=5))
    assert [t for t, _ in out] == [7, 9] and [len(s) for _, s in out] == [5, 4]


def test_nan_activations_and_bad_layers_are_refused(tmp_path):
    model = tiny_neox()
    with pytest.raises(InputError, match=r"layer index \[7\] out of range"):
        capture(tmp_path, model, sequences(), layers=[0, 7])
    with torch.no_grad():
        model.gpt_neox.layers[1].mlp.dense_4h_to_h.bias[0] = float("nan")
    with pytest.raises(InputError, match="layer 1 has NaN"):
        capture(tmp_path, model, sequences(), layers=[0, 1])
    with pytest.raises(InputError, match="no tokens"):
        capture(tmp_path / "empty", tiny_neox(), [], layers=[0])


def test_nan_in_a_stored_shard_is_refused_when_read(tmp_path):
    from safetensors.torch import load_file, save_file

    capture(tmp_path, tiny_neox(), sequences(), shard_rows=1000)
    path = tmp_path / "set" / "shard_00000.safetensors"
    tensors = load_file(str(path))
    tensors["layer_0"][3, 1] = float("nan")
    save_file(tensors, str(path))
    with pytest.raises(InputError, match="NaN"):
        next(ActivationSet(tmp_path / "set").shuffled_batches([0], 4, 1, seed=0))


def test_a_missing_set_says_which_stage_to_run(tmp_path):
    with pytest.raises(StageOrderError, match="`activations` stage"):
        ActivationSet(tmp_path / "nothing")
