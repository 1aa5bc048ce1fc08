"""DPO's implicit reward on preference pairs, and how often it prefers the chosen answer.

For a DPO run the policy lens is exactly what DPO optimises: beta [log pi/pi_base (chosen | prompt) -
log pi/pi_base (rejected | prompt)], whose sign says which answer the tuned policy implicitly rewards
more (TRL's `DPOTrainer` logs its parts as rewards/chosen and rewards/rejected, and the share of
pairs where the first exceeds the second as rewards/accuracies, on its training batches). Here it is
read on held-out pairs. The answers are tokenized the way TRL trains on them: the prompt alone, then
the prompt with the answer and the EOS token, the answer starting where the two token sequences part.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

from lfp_engine.policy.log_ratio import EncodedText, PolicyPair
from lfp_engine.probe.measures import MetricRow
from lfp_engine.run.errors import InputError
from lfp_engine.statistics import proportion


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def encode_answers(pair: PolicyPair, prompts: Sequence[str], chosen: Sequence[str],
                   rejected: Sequence[str]) -> tuple[list[EncodedText], list[EncodedText]]:
    """Each pair's chosen and rejected answer after their shared prompt tokens (TRL's rule)."""
    if not (len(prompts) == len(chosen) == len(rejected)) or not prompts:
        raise InputError("preference pairs need as many prompts, chosen and rejected answers, and at least one")
    eos = pair.tokenizer.eos_token or ""
    tok = pair.tokenizer
    out: tuple[list[EncodedText], list[EncodedText]] = ([], [])
    for prompt, *answers in zip(prompts, chosen, rejected):
        prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        full = [tok(prompt + a + ("" if a.endswith(eos) else eos), add_special_tokens=False)["input_ids"]
                for a in answers]
        start = min(common_prefix(prompt_ids, ids) for ids in full)
        context = prompt_ids[:start] or [pair.separator]
        room = pair.max_tokens - len(context)
        for side, ids in zip(out, full):
            side.append(EncodedText(context, ids[start:][:room], [], len(ids) - start > room))
    return out


def pair_rewards(pair: PolicyPair, prompts: Sequence[str], chosen: Sequence[str],
                 rejected: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """beta log pi_tuned/pi_base of each pair's chosen and of its rejected answer, given the prompt."""
    encoded_chosen, encoded_rejected = encode_answers(pair, prompts, chosen, rejected)
    sums = [np.array([v.sum() for v in pair.token_values(side, desc=f"policy {name}")])
            for side, name in ((encoded_chosen, "chosen"), (encoded_rejected, "rejected"))]
    return sums[0], sums[1]


def accuracy_row(chosen: np.ndarray, rejected: np.ndarray, subset: str = "test") -> MetricRow:
    """The share of pairs whose chosen (or positive) answer the policy implicitly rewards more, with
    its Clopper-Pearson interval and a one-sided binomial test against 50%."""
    hits, n = int(np.sum(chosen > rejected)), len(chosen)
    share, low, high = proportion(hits, n)
    p = stats.binomtest(hits, n, 0.5, alternative="greater").pvalue
    return MetricRow("policy", subset, "preference_accuracy", share, n, p_value=float(p), ci_low=low, ci_high=high,
                     test="binomial")
