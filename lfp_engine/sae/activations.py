"""Capturing MLP outputs of the chosen layers over a corpus, and reading them back (paper section 3.2).

What is captured: the MLP block's output (d_model wide) of every chosen layer, for every text
token, in one forward pass for all layers (`hooks.capture_mlp_outputs`). Padding never becomes a
row: rows are selected through the attention mask, and the BOS token fed before each text (the
document separator the model was pretrained with) is context, not a row. Feeding padding
positions to the SAE was one of the authors' mistakes (docs/architecture.md).

On disk an *activation set* is a folder:
- `shard_00000.safetensors`, ...: one float32 tensor per layer (`layer_<L>`, [rows, d_model]),
  all layers of a shard holding the same rows. Shards end at text boundaries, so a text's rows
  are contiguous and in one shard (a feature's context window is read from one file).
- `index.parquet`: one line per row: row, shard, offset, text_id, position (token position in
  the text, 0 = first text token, BOS excluded), token_id.
- `activations.json`: layers, hook names, width, the model the rows come from, BOS use.
Capture streams: at most one shard of rows (plus one batch) is in memory, whatever the corpus.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm

from lfp_engine.models.architecture import anatomy
from lfp_engine.run.distributed import SINGLE, Ranks
from lfp_engine.run.errors import InputError, StageOrderError
from lfp_engine.models.hooks import capture_mlp_outputs
from lfp_engine.sae.settings import ActivationSettings

log = logging.getLogger(__name__)

INDEX = "index.parquet"
INFO = "activations.json"
SHUFFLE_BUFFER_BYTES = 1 << 30
"""How much activation data (all layers) the training stream shuffles at once."""


def shard_name(shard: int) -> str:
    return f"shard_{shard:05d}.safetensors"


def layer_key(layer: int) -> str:
    return f"layer_{layer}"


@dataclass(frozen=True)
class ActivationSetInfo:
    layers: list[int]
    hook_names: dict[str, str]
    """Layer (as text, JSON keys) -> module path of its MLP, the SAELens `hook_name`."""
    d_model: int
    n_rows: int
    n_shards: int
    model: str
    """Where the model came from (path or hub id): the SAEs trained on these rows record it."""
    bos_token_id: int | None
    """Token fed before each text (not stored as a row), None if none was."""


# ---------------------------------------------------------------------------------------
# Choosing and tokenizing texts


def token_sequences(tokenizer, texts: pd.DataFrame, n_tokens: int, max_tokens: int,
                    chunk: int = 256) -> Iterator[tuple[int, list[int]]]:
    """(text_id, token ids) in the frame's order, each cut to `max_tokens`, until `n_tokens` are given.

    The last text is cut so that exactly `n_tokens` tokens come out (fewer only if the texts run
    out). Texts are tokenized a chunk at a time, so a large corpus is never tokenized whole.
    """
    remaining = n_tokens
    for start in range(0, len(texts), chunk):
        part = texts.iloc[start:start + chunk]
        encoded = tokenizer(part["text"].tolist(), add_special_tokens=False)["input_ids"]
        for text_id, ids in zip(part["text_id"].tolist(), encoded):
            ids = ids[:min(max_tokens, remaining)]
            if not ids:
                continue
            yield int(text_id), ids
            remaining -= len(ids)
            if remaining == 0:
                return


def length_sorted_batches(sequences: Iterable[tuple[int, list[int]]], batch_size: int,
                           window: int = 16) -> Iterator[list[tuple[int, list[int]]]]:
    """Batches of sequences of similar length (sorted within windows of `window` batches), so
    little of each forward pass is spent on padding; deterministic for a given input order."""
    pending: list[tuple[int, list[int]]] = []

    def flush() -> Iterator[list[tuple[int, list[int]]]]:
        pending.sort(key=lambda item: len(item[1]))
        for i in range(0, len(pending), batch_size):
            yield pending[i:i + batch_size]
        pending.clear()

    for item in sequences:
        pending.append(item)
        if len(pending) == batch_size * window:
            yield from flush()
    yield from flush()


def pad_batch(sequences: Sequence[Sequence[int]], pad_token_id: int, bos_token_id: int | None,
              device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded input ids [B, T], attention mask [B, T], and the text-token mask [B, T].

    The text-token mask is the attention mask minus the BOS column: exactly the positions that
    are rows of an activation set, and where an SAE may be spliced in.
    """
    offset = 0 if bos_token_id is None else 1
    width = offset + max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if offset:
            ids[row, 0] = bos_token_id
        ids[row, offset:offset + len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
        attention[row, :offset + len(seq)] = 1
    text = attention.bool()
    text[:, :offset] = False
    return ids.to(device), attention.to(device), text.to(device)


# ---------------------------------------------------------------------------------------
# Capture


@torch.inference_mode()
def mlp_outputs(model: nn.Module, layers: list[int], input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> dict[int, torch.Tensor]:
    """{layer: MLP output [B, T, d]} of one forward pass, stopped after the deepest layer."""
    with capture_mlp_outputs(model, layers, stop_after_last=True) as captured:
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    return dict(captured)


class _ShardWriter:
    """Buffers captured rows and writes them a shard at a time; keeps the index of every row.

    With several processes each writes the shards it owns (`Ranks.owns(shard)`) and skips the
    forward passes of the others; where a shard ends depends only on the token counts, which every
    process knows, so all of them number the shards and index the rows alike."""

    def __init__(self, folder: Path, layers: list[int], shard_rows: int, ranks: Ranks = SINGLE):
        self.folder, self.layers, self.shard_rows, self.ranks = folder, layers, shard_rows, ranks
        self.buffer: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
        self.meta: list[np.ndarray] = []
        self.buffered = 0
        self.index: list[pd.DataFrame] = []
        self.n_shards = 0
        self.n_rows = 0

    @property
    def owns_current(self) -> bool:
        """Whether the shard that the next batch joins is this process's to compute and write."""
        return self.ranks.owns(self.n_shards)

    def add(self, rows: dict[int, torch.Tensor] | None, text_ids: np.ndarray, positions: np.ndarray,
            token_ids: np.ndarray) -> None:
        """A batch's rows (None for a batch of a shard another process writes) and its index columns."""
        if rows is not None:
            for layer in self.layers:
                self.buffer[layer].append(rows[layer])
        self.meta.append(np.stack([text_ids, positions, token_ids]))
        self.buffered += len(text_ids)
        if self.buffered >= self.shard_rows:
            self.flush()

    def flush(self) -> None:
        if not self.buffered:
            return
        if self.buffer[self.layers[0]]:
            tensors = {layer_key(layer): torch.cat(self.buffer[layer]).contiguous() for layer in self.layers}
            save_file(tensors, str(self.folder / shard_name(self.n_shards)))
        text_ids, positions, token_ids = np.concatenate(self.meta, axis=1)
        self.index.append(pd.DataFrame({
            "row": np.arange(self.n_rows, self.n_rows + self.buffered, dtype=np.int64),
            "shard": np.full(self.buffered, self.n_shards, dtype=np.int32),
            "offset": np.arange(self.buffered, dtype=np.int32),
            "text_id": text_ids.astype(np.int64),
            "position": positions.astype(np.int32),
            "token_id": token_ids.astype(np.int32),
        }))
        self.n_rows += self.buffered
        self.n_shards += 1
        self.buffer = {layer: [] for layer in self.layers}
        self.meta = []
        self.buffered = 0


def _batch_rows(model: nn.Module, layers: list[int], batch: list[tuple[int, list[int]]], pad_token_id: int,
                bos_token_id: int | None, device: torch.device) -> dict[int, torch.Tensor]:
    """{layer: the text tokens' MLP outputs [rows, d], float32 on the CPU} of one batch; refuses a
    non-finite activation (a model that overflows, e.g. in float16, must not train SAEs on NaN)."""
    ids, attention, text = pad_batch([seq for _, seq in batch], pad_token_id, bos_token_id, device)
    outputs = mlp_outputs(model, layers, ids, attention)
    rows = {}
    for layer in layers:
        selected = outputs[layer][text].float()
        if not torch.isfinite(selected).all():
            raise InputError(f"the MLP output of layer {layer} has NaN or infinite values (texts "
                             f"{[t for t, _ in batch][:5]}...); the model overflows in dtype "
                             f"{outputs[layer].dtype}: use world.dtype=float32")
        rows[layer] = selected.cpu()
    return rows


def capture_activations(model: nn.Module, sequences: Iterable[tuple[int, list[int]]], layers: list[int],
                        folder: Path, *, pad_token_id: int, bos_token_id: int | None, batch_size: int,
                        shard_rows: int, model_name: str, n_expected: int | None = None,
                        ranks: Ranks = SINGLE) -> ActivationSetInfo:
    """Run `model` over `sequences` ((text_id, token ids) pairs) and write an activation set into `folder`.

    One forward pass per batch captures all `layers`; only text tokens become rows. With several
    processes (`ranks`), each runs the batches of the shards it owns and writes those shards, and
    rank 0 writes the index and the info: the same files one process writes. Raises `InputError`
    for a layer out of range, no tokens, or a non-finite activation.
    """
    a = anatomy(model)
    layers = sorted(set(layers))
    bad = [layer for layer in layers if not 0 <= layer < a.n_layers]
    if bad:
        raise InputError(f"layer index {bad} out of range: the model has layers 0..{a.n_layers - 1}")
    folder.mkdir(parents=True, exist_ok=True)
    device = next(model.parameters()).device
    writer = _ShardWriter(folder, layers, shard_rows, ranks)
    d_model = 0
    offset = 0 if bos_token_id is None else 1
    progress = tqdm(total=n_expected, desc="capture", unit="tok", mininterval=1, leave=False)
    for batch in length_sorted_batches(sequences, batch_size):
        rows = _batch_rows(model, layers, batch, pad_token_id, bos_token_id, device) if writer.owns_current else None
        d_model = rows[layers[0]].shape[1] if rows is not None else d_model
        lengths = [len(seq) for _, seq in batch]
        text_ids = np.repeat([t for t, _ in batch], lengths)
        positions = np.concatenate([np.arange(n) for n in lengths])
        token_ids = np.concatenate([np.asarray(seq) for _, seq in batch])
        writer.add(rows, text_ids, positions, token_ids)
        progress.update(len(token_ids))
    progress.close()
    writer.flush()
    if writer.n_rows == 0:
        raise InputError("no tokens to capture: the texts are empty")
    info = ActivationSetInfo(layers=layers, hook_names={str(layer): a.mlp_path(layer) for layer in layers},
                             d_model=ranks.broadcast(d_model), n_rows=writer.n_rows, n_shards=writer.n_shards,
                             model=model_name, bos_token_id=bos_token_id if offset else None)
    if ranks.is_main:
        pd.concat(writer.index, ignore_index=True).to_parquet(folder / INDEX, index=False)
        (folder / INFO).write_text(json.dumps(asdict(info), indent=2), encoding="utf-8")
        log.info("captured %d rows x %d layers (d=%d) in %d shards into %s", info.n_rows, len(layers),
                 info.d_model, info.n_shards, folder)
    return info


SETS = (("train", "train", "n_train_tokens"), ("eval", "test", "n_eval_tokens"))
"""(activation set, corpus split it is drawn from, setting of its token budget)."""


def bos_token(tokenizer, prepend: bool) -> int | None:
    """The token fed before each text: the tokenizer's BOS, else its EOS (Pythia's document separator)."""
    if not prepend:
        return None
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


@dataclass(frozen=True)
class CapturedSets:
    layers: list[int]
    max_tokens_per_text: int
    """Tokens of each text read: the window every later stage uses (BOS aside)."""
    n_train_rows: int
    n_eval_rows: int
    d_model: int


def capture_sets(model: nn.Module, tokenizer, corpus: pd.DataFrame, layers: list[int], root: Path,
                 settings: ActivationSettings, max_length: int, seed: int, model_name: str,
                 ranks: Ranks = SINGLE) -> CapturedSets:
    """Capture the train set (SAE training rows, the paper's 75,000) from the corpus's train split and
    the eval set (held-out rows, on which every SAE metric is measured) from its test split, into
    root/train and root/eval. Texts are taken in a seeded random order until each token budget is
    met, so the tuned and base models (and a later capture of other layers, `lfp sae-compare`) see
    exactly the same tokens. With several processes (`ranks`) each captures its shards of both sets
    (`capture_activations`)."""
    bos = bos_token(tokenizer, settings.prepend_bos)
    window = min(settings.max_tokens_per_text + (bos is not None), max_length,
                 getattr(model.config, "max_position_embeddings", None) or max_length)
    max_tokens = window - (bos is not None)
    rng = np.random.default_rng(seed)
    rows, d_model = {}, 0
    for name, split, budget in SETS:
        texts = corpus[corpus["split"] == split]
        if texts.empty:
            raise InputError(f"the corpus has no {split!r} texts to capture activations from")
        texts = texts.iloc[rng.permutation(len(texts))]
        n_tokens = getattr(settings, budget)
        info = capture_activations(
            model, token_sequences(tokenizer, texts, n_tokens, max_tokens), layers, root / name,
            pad_token_id=tokenizer.pad_token_id, bos_token_id=bos, batch_size=settings.batch_size,
            shard_rows=settings.shard_rows, model_name=model_name, n_expected=n_tokens, ranks=ranks)
        if info.n_rows < n_tokens and ranks.is_main:
            log.warning("the %s split holds only %d tokens of the %d asked for (activations.%s)",
                        split, info.n_rows, n_tokens, budget)
        rows[name], d_model = info.n_rows, info.d_model
    return CapturedSets(layers=list(layers), max_tokens_per_text=max_tokens, n_train_rows=rows["train"],
                        n_eval_rows=rows["eval"], d_model=d_model)


# ---------------------------------------------------------------------------------------
# Reading


class ActivationSet:
    """A captured activation set on disk (see the module docstring), read lazily."""

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)
        path = self.folder / INFO
        if not path.exists():
            raise StageOrderError(f"{self.folder} holds no captured activations: run the `activations` stage first")
        data = json.loads(path.read_text(encoding="utf-8"))
        self.info = ActivationSetInfo(**data)
        self._index: pd.DataFrame | None = None
        self._shard_sizes: list[int] | None = None

    @property
    def layers(self) -> list[int]:
        return list(self.info.layers)

    @property
    def d_model(self) -> int:
        return self.info.d_model

    @property
    def n_rows(self) -> int:
        return self.info.n_rows

    def hook_name(self, layer: int) -> str:
        return self.info.hook_names[str(layer)]

    @property
    def index(self) -> pd.DataFrame:
        if self._index is None:
            self._index = pd.read_parquet(self.folder / INDEX)
        return self._index

    def _check_layers(self, layers: Sequence[int]) -> None:
        missing = [layer for layer in layers if layer not in self.info.layers]
        if missing:
            raise InputError(f"layers {missing} were not captured in {self.folder} (it has {self.info.layers})")

    def shard(self, shard: int, layers: Sequence[int]) -> torch.Tensor:
        """Rows of one shard for `layers`: [len(layers), rows, d_model], float32, finite."""
        self._check_layers(layers)
        with safe_open(str(self.folder / shard_name(shard)), framework="pt") as f:
            stacked = torch.stack([f.get_tensor(layer_key(layer)) for layer in layers])
        if not torch.isfinite(stacked).all():
            raise InputError(f"{self.folder / shard_name(shard)} holds NaN or infinite activations; "
                             "re-run the `activations` stage (`lfp run --force activations`)")
        return stacked

    def shard_sizes(self) -> list[int]:
        if self._shard_sizes is None:
            self._shard_sizes = self.index.groupby("shard").size().sort_index().tolist()
        return self._shard_sizes

    def iter_rows(self, layers: Sequence[int], batch_rows: int,
                  device: torch.device | str = "cpu") -> Iterator[tuple[int, torch.Tensor]]:
        """(first row, [len(layers), n, d]) in row order, `batch_rows` at a time, a shard in memory at once."""
        start = 0
        for shard in range(self.info.n_shards):
            data = self.shard(shard, layers).to(device)
            for i in range(0, data.shape[1], batch_rows):
                chunk = data[:, i:i + batch_rows]
                yield start + i, chunk
            start += data.shape[1]

    def gather(self, layer: int, rows: np.ndarray) -> torch.Tensor:
        """Activations [len(rows), d] of `layer` at the given sorted global rows, one shard read at a time."""
        sizes = np.asarray(self.shard_sizes())
        starts = np.concatenate([[0], np.cumsum(sizes)])
        shards = np.searchsorted(starts, rows, side="right") - 1
        parts = []
        for shard in np.unique(shards):
            data = self.shard(int(shard), [layer])[0]
            parts.append(data[torch.as_tensor(rows[shards == shard] - starts[shard])])
        return torch.cat(parts) if parts else torch.zeros(0, self.d_model)

    def sequences(self) -> list[tuple[int, list[int]]]:
        """(text_id, token ids) of every captured text, in row order: the model inputs to replay."""
        index = self.index
        bounds = np.flatnonzero(np.diff(index["text_id"].to_numpy())) + 1
        starts = np.concatenate([[0], bounds])
        ends = np.concatenate([bounds, [len(index)]])
        tokens = index["token_id"].to_numpy()
        text_ids = index["text_id"].to_numpy()
        return [(int(text_ids[s]), tokens[s:e].tolist()) for s, e in zip(starts, ends)]

    def shuffled_batches(self, layers: Sequence[int], batch_size: int, n_batches: int, seed: int,
                         device: torch.device | str = "cpu", buffer_bytes: int = SHUFFLE_BUFFER_BYTES,
                         buffer_layers: int | None = None) -> Iterator[torch.Tensor]:
        """`n_batches` training batches [len(layers), batch_size, d], all layers on the same rows.

        Each epoch visits the shards in a seeded order, a buffer of about `buffer_bytes` at a
        time (moved to `device` in one transfer), and shuffles the rows within it; rows left
        over at the end of a buffer join the next. When the set holds fewer rows than asked
        for, epochs repeat with new orders. Batches are views of the on-device buffer: no host
        synchronisation per batch. The buffer holds as many shards as fit `buffer_layers` layers
        (default: those read): a process that trains some of a run's layers sizes it for all of them,
        so its rows come in exactly the order one process training every layer sees them.
        """
        if self.n_rows < batch_size:
            raise InputError(f"{self.folder} has {self.n_rows} rows, fewer than one batch of {batch_size}")
        generator = torch.Generator().manual_seed(seed)
        row_bytes = (buffer_layers or len(layers)) * self.d_model * 4
        per_buffer = max(1, buffer_bytes // max(1, row_bytes * max(self.shard_sizes())))
        given = 0
        carry: torch.Tensor | None = None
        while True:
            order = torch.randperm(self.info.n_shards, generator=generator).tolist()
            for g in range(0, len(order), per_buffer):
                parts = [self.shard(s, layers) for s in order[g:g + per_buffer]]
                buffer = torch.cat(parts, dim=1).to(device)
                if carry is not None:
                    buffer = torch.cat([carry, buffer], dim=1)
                perm = torch.randperm(buffer.shape[1], generator=generator).to(device)
                buffer = buffer[:, perm]
                usable = buffer.shape[1] // batch_size * batch_size
                for i in range(0, usable, batch_size):
                    yield buffer[:, i:i + batch_size]
                    given += 1
                    if given == n_batches:
                        return
                carry = buffer[:, usable:]
