"""The probe's data: A(x) of every triple element, and the targets it is fit to (paper 3.3).

Delta+ = ||A(x+) - A(x0)|| and Delta- = -||A(x-) - A(x0)||: the distance of the positive element
from the neutral one, and minus that of the negative element, so the sign says reward or penalty.
The neutral element is the reference point of both: its own delta, ||A(x0) - A(x0)||, is 0 by
that definition. Word triples therefore also give the probe its zero point: the neutral word at
target 0, and a sample of the tokens the three elements share before it, whose delta is 0 too
(`zero_point.py`). Without them the probe only ever sees rewarded and penalised words, and says
nothing meaningful about a token the model treats as neutral, which is what most tokens are when
the probe is read over whole texts (`implicit_reward.py`).

For word triples the deltas are put in the reward's units by one gain, fit by least squares of
gain x delta on the lexicon values of the *training* rows (the paper normalises the deltas "to
be in the same range as the fine-tuning reward"). Fitting each model's deltas against the same
lexicon values on the same training words puts the tuned and the base model's targets on one
scale (their probes also share one strength, `linear.py`); one positive gain cannot reorder words or texts, so it sets units and decides no rank
agreement measured later. For text triples (preference tasks) the target is the class,
preferred (1) or not (0), and there is no neutral row.

**The probe's inputs are put on one scale per model** before any fit (`on_one_scale`, applied by
`variants.fit_variants`; `code_scale`, issue 21): the codes are divided
by their root-mean-square deviation over the fitted rows. Ridge shrinks a fit by the size of its
inputs, so the tuned and the base model's probes, which share one strength (`linear.py`), would
otherwise be shrunk differently by any change of amplitude tuning made, and read that as a change of
value; and each model's own gain above would fold the same amplitude change away unseen. Scaled, a
model whose codes are another's times a constant gives the same fit and the same values; the change
of amplitude is reported as its own figure (`amplitude_rows`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from lfp_engine.probe.zero_point import ContextTokens
from lfp_engine.run.errors import InputError

SCORED_ELEMENTS = ("positive", "negative")
"""Triple elements whose word is a lexicon word: the rows every measure reads."""


def target_scale(deltas: np.ndarray, values: np.ndarray) -> float:
    """The gain g minimising sum (g * delta - value)^2: deltas in the lexicon's units.

    `deltas` and `values` are the training rows' signed deltas and their words' lexicon values;
    their signs agree by construction, so the gain is positive.
    """
    deltas = np.asarray(deltas, dtype=np.float64)
    power = float(deltas @ deltas)
    if power == 0.0:
        raise InputError("every activation delta is zero: the SAE codes do not distinguish the triples")
    gain = float(deltas @ np.asarray(values, dtype=np.float64)) / power
    if not gain > 0:
        raise InputError("the training rows' deltas do not point the way of their lexicon values: "
                         "the triples' positive and negative words are mixed up")
    return gain


def activation_deltas(positive: np.ndarray, neutral: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Delta+, Delta-): the distance of the positive element from the neutral one, and minus that
    of the negative element, so the sign says reward or penalty."""
    return np.linalg.norm(positive - neutral, axis=1), -np.linalg.norm(negative - neutral, axis=1)


@dataclass
class ProbeDataset:
    """Rows = the positive, then the negative element of every triple, then (word triples only)
    the neutral element (`element == 'neutral'`) and the shared tokens drawn before it
    (`element == 'context'`), both at target 0."""

    kind: str
    """'word' (regression on deltas, per-word values) or 'text' (classification of the two rewrites)."""
    X: np.ndarray
    target: np.ndarray
    """Scaled activation delta (regression; 0 on neutral and context rows) or class 1/0 (logistic)."""
    split: np.ndarray
    element: np.ndarray
    triple_id: np.ndarray
    word: np.ndarray
    """The substituted word (word triples; the neutral word on neutral rows, the token's own word on
    context rows), None for text triples. A lexicon word's rows are also its cross-validation group
    (`cv_groups`)."""
    lexicon_value: np.ndarray
    """The word's lexicon value (0 on neutral rows)."""
    scale: float
    """The gain that puts the activation deltas in the lexicon's units (word triples; 1 for text)."""
    code_scale: float = 1.0
    """What the model's codes were divided by to give `X` (`on_one_scale`): a probe fit on `X` reads
    raw codes with its weights divided by it."""

    @property
    def cv_groups(self) -> np.ndarray:
        """The probe's cross-validation groups: a lexicon word's rows are its word, so a held-out fold
        holds only words the probe was not fit on (what the test split then measures); a zero-point
        row (neutral word, shared token) goes with its text, so a held-out fold holds the ordinary
        tokens of texts the probe never read. That is the zero point's use: the playground reads the
        common words of a new text, words the corpus is full of, and they must read about 0 there.
        Grouping these rows by their own word instead asked the zero point to hold on words never
        seen at all: on the tiny world that error dominated the choice of strength and drove it to
        the grid's largest value, which reads every word near 0 (docs/benchmarks.md, implicit reward).
        Text triples: the triple (a text's two rewrites stay together)."""
        texts = np.char.add("text:", self.triple_id.astype(str))
        if self.kind != "word":
            return texts
        return np.where(self.scored, self.word.astype(str), texts)

    @property
    def scored(self) -> np.ndarray:
        """The rows compared with the lexicon: the positive and negative elements."""
        return np.isin(self.element, SCORED_ELEMENTS)

    @property
    def at_word(self) -> np.ndarray:
        """The rows at a triple's substituted word (its three elements), not the shared tokens."""
        return self.element != "context"

    @property
    def fitted(self) -> np.ndarray:
        """The rows the probe is fit on: every element of the training triples, neutral ones included."""
        return self.split == "train"

    @property
    def train(self) -> np.ndarray:
        """Scored rows of the training triples."""
        return self.fitted & self.scored

    @property
    def test(self) -> np.ndarray:
        """Scored rows of the test triples: words no probe was fit on."""
        return (self.split == "test") & self.scored


def on_one_scale(data: ProbeDataset) -> ProbeDataset:
    """`data` with its inputs divided by their root-mean-square deviation over the fitted rows (the
    module docstring says why); the divisor is kept as `code_scale`."""
    fitted = data.X[data.fitted]
    scale = float(np.sqrt(np.mean((fitted - fitted.mean(axis=0)) ** 2))) if len(fitted) else 0.0
    if not scale > 0:
        raise InputError("the probe's inputs do not vary over the training rows: nothing to fit")
    return replace(data, X=data.X / scale, code_scale=scale * data.code_scale)


def _word_rows(reps: Mapping[str, np.ndarray], triples: pd.DataFrame, context: ContextTokens) -> ProbeDataset:
    """Positive, negative and neutral rows of word triples (targets in lexicon units), then the
    shared tokens at 0; `reps['context']` holds the codes of `context`'s tokens."""
    d_pos, d_neg = activation_deltas(reps["positive"], reps["neutral"], reps["negative"])
    n, m = len(triples), len(context.triple)
    delta = np.concatenate([d_pos, d_neg])
    values = np.concatenate([triples["value_positive"].to_numpy(dtype=float),
                             triples["value_negative"].to_numpy(dtype=float)])
    splits, ids = triples["split"].to_numpy(), triples["triple_id"].to_numpy()
    train = np.concatenate([splits] * 2) == "train"
    scale = target_scale(delta[train], values[train])
    return ProbeDataset(
        kind="word", X=np.vstack([reps["positive"], reps["negative"], reps["neutral"],
                                  reps["context"] if m else np.zeros((0, reps["neutral"].shape[1]))]),
        target=np.concatenate([delta * scale, np.zeros(n + m)]),
        split=np.concatenate([splits] * 3 + [splits[context.triple]]),
        element=np.array(["positive"] * n + ["negative"] * n + ["neutral"] * n + ["context"] * m),
        triple_id=np.concatenate([ids] * 3 + [ids[context.triple]]),
        word=np.concatenate([triples[f"word_{e}"].to_numpy() for e in ("positive", "negative", "neutral")]
                            + [context.word]),
        lexicon_value=np.concatenate([values, np.zeros(n + m)]), scale=scale)


def build_dataset(reps: Mapping[str, np.ndarray], triples: pd.DataFrame, kind: str,
                  context: ContextTokens | None = None) -> ProbeDataset:
    """The probe's data from A(x) of each element of `kind` triples (word triples: deltas in lexicon
    units, the neutral word and the `context` tokens at 0; text triples: the two rewrites' classes)."""
    if kind == "word":
        if context is None:
            raise InputError("word triples need the neutral elements' shared tokens (zero_point.context_tokens)")
        return _word_rows(reps, triples, context)
    n = len(triples)
    return ProbeDataset(
        kind=kind, X=np.vstack([reps["positive"], reps["negative"]]), target=np.concatenate([np.ones(n), np.zeros(n)]),
        split=np.concatenate([triples["split"].to_numpy()] * 2), element=np.array(["positive"] * n + ["negative"] * n),
        triple_id=np.concatenate([triples["triple_id"].to_numpy()] * 2), word=np.full(2 * n, None, dtype=object),
        lexicon_value=np.full(2 * n, np.nan), scale=1.0)
