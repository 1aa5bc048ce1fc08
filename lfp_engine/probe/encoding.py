"""The probe's input A(x) and the activation deltas between contrastive elements (paper 3.3).

A(x) is the concatenation, over the chosen layers, of the smaller dictionary's SAE code of the
MLP output, taken from one model for both the activations and the SAEs (the authors' code took
activations from the base model and encoded them with the tuned model's SAEs). For a word
triple, A(x) is the mean code over the substituted word's sub-tokens: a positive and a neutral
word may split into different numbers of tokens, so per-token deltas cannot be paired, but
their mean codes can. For a text triple it is the mean over all of the text's tokens. Texts are
fed as the SAEs saw their training activations (with the BOS/document separator first, whose
position is never encoded) and padding never reaches an SAE.

Then Delta+ = ||A(x+) - A(x0)|| and Delta- = -||A(x-) - A(x0)||.

`Encoder` also yields per-token codes, which the dashboard's implicit-reward view applies the
probe to; since the probe is linear, the mean of its per-token values over a word's tokens is
exactly its value on the word's A(x).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from lfp_engine.sae.activations import mlp_outputs, pad_batch
from lfp_engine.run.distributed import SINGLE, Ranks
from lfp_engine.run.errors import InputError
from lfp_engine.sae.autoencoder import SparseAutoencoder


@dataclass(frozen=True)
class CodeLayout:
    """Which column of A(x) is which feature: layers in ascending order, each layer's codes in turn."""

    layers: tuple[int, ...]
    widths: tuple[int, ...]
    """Dictionary size of each layer's SAE (or d_model for raw activations)."""

    @property
    def offsets(self) -> tuple[int, ...]:
        return tuple(int(x) for x in np.concatenate([[0], np.cumsum(self.widths)[:-1]]))

    @property
    def total(self) -> int:
        return int(sum(self.widths))

    def column(self, layer: int, feature: int) -> int:
        return self.offsets[self.layers.index(layer)] + feature

    def feature_of(self, column: int) -> tuple[int, int, int]:
        """(layer, dict_size, feature) of a column."""
        i = int(np.searchsorted(self.offsets, column, side="right") - 1)
        return self.layers[i], self.widths[i], int(column - self.offsets[i])


@dataclass(frozen=True)
class TokenizedText:
    ids: list[int]
    positions: list[int]
    """Positions (in `ids`) whose codes are averaged: the word's sub-tokens, or all tokens."""


def tokenize(tokenizer, texts: Sequence[str], spans: Sequence[tuple[int, int]] | None,
             max_tokens: int) -> list[TokenizedText]:
    """Token ids of each text, with the positions to average over.

    With `spans` (character ranges of the substituted words), the text is cut after the word's
    last token (later tokens cannot influence it) and only the last `max_tokens` are kept; without,
    the first `max_tokens`. A text with no tokens, or a span that covers none, is refused.
    """
    encoded = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for i, (ids, offsets) in enumerate(zip(encoded["input_ids"], encoded["offset_mapping"], strict=True)):
        if not ids:
            raise InputError(f"text {i} has no tokens: {texts[i]!r}")
        if spans is None:
            ids = ids[:max_tokens]
            out.append(TokenizedText(ids, list(range(len(ids)))))
            continue
        start, end = spans[i]
        inside = [j for j, (a, b) in enumerate(offsets) if a < end and b > start]
        if not inside:
            raise InputError(f"characters {start}-{end} of text {i} cover no token: {texts[i]!r}")
        cut = inside[-1] + 1
        first = max(0, cut - max_tokens)
        out.append(TokenizedText(ids[first:cut], [j - first for j in inside if j >= first]))
    return out


class Encoder:
    """A model and one SAE per chosen layer: token texts in, concatenated codes out.

    Without SAEs (`saes=None`) the representation is the raw MLP outputs, the probe's
    no-SAE baseline. With several processes (`ranks`), `representations` deals its batches out
    among them and hands every process all the rows.
    """

    def __init__(self, model: nn.Module, tokenizer, layers: Sequence[int],
                 saes: Mapping[int, SparseAutoencoder] | None, bos_token_id: int | None, max_tokens: int,
                 batch_size: int = 32, ranks: Ranks = SINGLE):
        self.model, self.tokenizer, self.ranks = model, tokenizer, ranks
        self.layers = sorted(layers)
        self.saes = saes
        if saes is not None and set(saes) != set(self.layers):
            raise InputError(f"SAEs for layers {sorted(saes)} do not match the chosen layers {self.layers}")
        self.bos_token_id = bos_token_id
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.device = next(model.parameters()).device
        self.d_model = d_model = model.get_input_embeddings().weight.shape[1]
        widths = [saes[layer].d_sae for layer in self.layers] if saes is not None else [d_model] * len(self.layers)
        self.layout = CodeLayout(tuple(self.layers), tuple(widths))

    @torch.inference_mode()
    def _codes(self, batch: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """([B, T, D] codes and [B, T, L*d] raw MLP outputs of the text tokens), BOS column dropped."""
        ids, attention, _ = pad_batch(batch, self.tokenizer.pad_token_id, self.bos_token_id, self.device)
        outputs = mlp_outputs(self.model, self.layers, ids, attention)
        raw = torch.cat([outputs[layer].float() for layer in self.layers], dim=-1)
        codes = raw if self.saes is None else torch.cat(
            [self.saes[layer].encode(outputs[layer].float()) for layer in self.layers], dim=-1)
        offset = 0 if self.bos_token_id is None else 1
        return codes[:, offset:], raw[:, offset:]

    def token_codes(self, text: TokenizedText) -> np.ndarray:
        """Codes of every token of one text: [n_tokens, D]."""
        codes, _ = self._codes([text.ids])
        return codes[0, : len(text.ids)].cpu().numpy().astype(np.float64)

    def _per_text(self, texts: Sequence[TokenizedText], desc: str) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """(index, codes [positions, D], raw MLP outputs [positions, L*d]) of each text at its positions,
        from forward passes over batches of texts of similar length. Batch k is the same texts wherever
        it is encoded; with several processes (`ranks`) this process encodes only the batches it owns."""
        order = np.argsort([len(t.ids) for t in texts], kind="stable")
        starts = range(0, len(order), self.batch_size)
        for k, start in enumerate(tqdm(starts, desc=desc, unit="batch", mininterval=1, leave=False)):
            if not self.ranks.owns(k):
                continue
            chunk = order[start:start + self.batch_size]
            codes, raw = self._codes([texts[i].ids for i in chunk])
            for row, i in enumerate(chunk):
                yield int(i), codes[row, texts[i].positions].double(), raw[row, texts[i].positions].double()

    def _filled(self, n_rows: int, with_raw: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Zeroed outputs of `n_rows` rows: codes, and raw MLP outputs when asked for."""
        raw = np.zeros((n_rows, len(self.layers) * self.d_model)) if with_raw else None
        return np.zeros((n_rows, self.layout.total)), raw

    def representations(self, texts: Sequence[TokenizedText], desc: str = "encode",
                        with_raw: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """A(x) for each text: the mean code over its positions, [n, D] float64. With `with_raw`,
        also the mean raw MLP outputs [n, L*d] from the same forward passes (the no-SAE baseline)."""
        out, raw_out = self._filled(len(texts), with_raw)
        for i, codes, raw in self._per_text(texts, desc):
            out[i] = codes.mean(0).cpu().numpy()
            if raw_out is not None:
                raw_out[i] = raw.mean(0).cpu().numpy()
        return self._gathered(out, raw_out)

    def position_codes(self, texts: Sequence[TokenizedText], desc: str = "encode tokens",
                       with_raw: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """The code at each position of each text, one row per position, texts in order:
        [sum of positions, D] float64 (with `with_raw`, also the raw MLP outputs)."""
        offsets = np.concatenate([[0], np.cumsum([len(t.positions) for t in texts])]).astype(int)
        out, raw_out = self._filled(int(offsets[-1]), with_raw)
        for i, codes, raw in self._per_text(texts, desc):
            out[offsets[i]:offsets[i + 1]] = codes.cpu().numpy()
            if raw_out is not None:
                raw_out[offsets[i]:offsets[i + 1]] = raw.cpu().numpy()
        return self._gathered(out, raw_out)

    def representations_with_positions(self, texts: Sequence[TokenizedText], extra: Sequence[Sequence[int]],
                                       desc: str = "encode", with_raw: bool = False) -> tuple:
        """One forward pass per text gives both `representations(texts)` and the codes at positions
        `extra[i]` of text i (as `position_codes` would on the same ids): the neutral element of a
        triple and the shared tokens of the probe's zero point are the same token ids, read once.
        Returns (representations, extra codes), each with its raw MLP outputs when `with_raw`."""
        if len(extra) != len(texts):
            raise InputError(f"{len(extra)} lists of extra positions for {len(texts)} texts")
        merged = [TokenizedText(t.ids, list(t.positions) + list(e)) for t, e in zip(texts, extra, strict=True)]
        rows = self.position_codes(merged, desc, with_raw)
        own = np.array([len(t.positions) for t in texts])
        starts = np.concatenate([[0], np.cumsum(own + np.array([len(e) for e in extra]))[:-1]]).astype(int)
        mine = np.concatenate([np.arange(a, a + n) for a, n in zip(starts, own, strict=True)])
        rest = np.setdiff1d(np.arange(sum(len(t.positions) for t in merged)), mine)
        parts = rows if with_raw else (rows,)
        means = tuple(np.add.reduceat(part[mine], np.concatenate([[0], np.cumsum(own)[:-1]]), axis=0) / own[:, None]
                      for part in parts)
        extras = tuple(part[rest] for part in parts)
        return (means, extras) if with_raw else (means[0], extras[0])

    def _gathered(self, out: np.ndarray, raw_out: np.ndarray | None) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Each row was filled by the one process that encoded its batch (zeros elsewhere): summed over
        the processes, so every process holds every row; refused when the model overflowed."""
        self.ranks.sum_(out)
        if raw_out is not None:
            self.ranks.sum_(raw_out)
        if not np.isfinite(out).all():
            raise InputError("the codes contain NaN or infinite values; the model overflows in its dtype")
        return out if raw_out is None else (out, raw_out)
