"""A finished run, live: what the dashboard's playground and ablation lab ask of its models.

One `LiveRun` per run and process holds the tuned model, the base model, the tokenizer, every
tuned SAE, the probes and the task's reward, loaded once. Requests are methods:
`implicit_reward` (the probe's reward per token of a text and the text's implicit reward, on the
tuned or the base model, beside the true reward of the same text, in its units), `policy_reading`
(the policy lens on a text, `lfp_engine/policy`: beta log pi_tuned/pi_base per token, word and in
all), `reward_units` (both lenses and the true reward of a text side by side in the reward's units)
and `compare_generations` (completions with and without an intervention, drawn and scored by the validate
stage's own function, `intervened_completions`).

Several dashboard sessions call one `LiveRun` from their own threads at once. Nothing a request
does is visible to another: interventions are current per context (`interventions.intervening`)
and so are activation captures (`hooks.capture_mlp_outputs`); the hooks of both are installed
once, when the run is opened, so no request adds or removes hooks on a model another is running.
Sampling noise comes from a private generator per call (`generation.py`). A request therefore
returns exactly what it would return alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lfp_engine.run.config import RunConfig, config_from_dict
from lfp_engine.run.overrides import known_settings
from lfp_engine.run.errors import InputError, StageOrderError
from lfp_engine.models.hooks import shared_capture_hooks
from lfp_engine.models.generation import Sampling
from lfp_engine.models.hub import load_causal_lm, load_tokenizer, resolve_device
from lfp_engine.policy.log_ratio import PolicyPair, task_beta
from lfp_engine.policy.text import PolicyReading
from lfp_engine.policy.text import read_text as read_policy
from lfp_engine.probe.implicit_reward import read_text
from lfp_engine.validation.interventions import NO_INTERVENTION, Intervention, intervention_hooks, validate
from lfp_engine.run.manifest import read_config, read_manifest
from lfp_engine.probe.reader import PROBE_FILES, ProbeReader
from lfp_engine.tuning.reward import VaderReward, build_reward
from lfp_engine.statistics import PairedComparison, paired_comparison
from lfp_engine.sae.autoencoder import SparseAutoencoder
from lfp_engine.diffing.crosscoder import load_crosscoders
from lfp_engine.sae.keys import DictionaryKey
from lfp_engine.sae.saelens_format import find_saes, load_sae
from lfp_engine.run.store import RunStore
from lfp_engine.run.tasks import task_spec
from lfp_engine.validation.ablation import intervened_completions, relevant_features
from lfp_engine.diffing.paired_forward import PairedModels
from lfp_engine.worlds import PROMPTS, WorldRecord, read_world_table

MAX_SAMPLES = 256
MAX_NEW_TOKENS = 100
MAX_PROMPT_CHARS = 2_000


@dataclass
class LiveReward:
    """One text as a model reads it, beside the true reward of the same text."""

    model: str
    tokens: pd.DataFrame
    """Per token: position, token, start, end, reward (the probe's), drivers (see `implicit_reward.py`)."""
    truncated: bool
    """The text was longer than the model's window: only `text_read` was read and scored."""
    text_read: str
    true_reward: float | None
    """The task's reward of `text_read` (None for preference tasks, which have no reward function)."""
    words: pd.DataFrame | None
    """VADER task: each word of `text_read` with its character span and lexicon value."""
    implicit_words: pd.DataFrame
    """Each word of `text_read` with its character span and implicit value (the mean of its tokens')."""
    implicit_text_reward: float | None
    """The task's reward applied to the implicit values of every word (VADER task: scale x sum,
    clipped), in the true reward's units; None where the reward is not a sum over words (the
    classifier) or the probe is a classifier (preference tasks)."""


@dataclass
class ReadTogether:
    """One text read by the probe, by the policy lens and by the reward, all in the reward's units: a
    probe or lexicon value times the reward's scale (equation 3 sums a text's word values times the
    scale), a policy value as it is (beta log pi_tuned/pi_base is in the reward's units already)."""

    tokens: pd.DataFrame
    """Per token of the policy's reading: position, token, start, end, policy, probe (the probe's
    value of the same characters' token; NaN where the probe did not read it)."""
    words: pd.DataFrame
    """Per word of the reward's tokenizer: word, start, end, reward, probe, policy (NaN where a lens
    did not read the word)."""
    totals: dict[str, float | None]
    """The text's true reward, the probe's implicit reward of the text, and the policy's sum ('reward',
    'probe', 'policy'); None where a lens has no text-level number."""
    truncated: bool
    text_read: str


@dataclass
class GenerationComparison:
    samples: pd.DataFrame
    """Per sample: prompt, unmodified, unmodified_reward, modified, modified_reward, difference."""
    comparison: PairedComparison | None
    """Modified vs unmodified rewards, paired by sample (None with a single sample)."""


class LiveRun:
    """Models, SAEs, probes and reward of one finished run, ready for requests from any thread."""

    def __init__(self, root: Path | str, device: str = "auto"):
        self.store = RunStore(root)
        self.paths = self.store.paths
        stored = read_config(self.store)
        if stored is None:
            raise StageOrderError(f"{self.paths.root} holds no run: make one with `lfp run --out {self.paths.root}`")
        self.config = config_from_dict(known_settings(stored[1], RunConfig))
        manifest = read_manifest(self.store)
        if "rlhf" not in manifest or manifest["rlhf"].status != "done":
            raise StageOrderError(f"{self.paths.root} has no tuned model yet: run `lfp run --out {self.paths.root}`")
        self.device = resolve_device(device)
        world = WorldRecord.load(self.paths.world)
        self.tokenizer = load_tokenizer(world.tokenizer)
        dtype = self.config.world.dtype
        self.models = {"tuned": load_causal_lm(self.paths.resolve(str(manifest["rlhf"].outputs["tuned_model"])),
                                               self.device, dtype),
                       "base": load_causal_lm(world.base_model, self.device, dtype)}
        self.saes: dict[DictionaryKey, SparseAutoencoder] = {
            key: load_sae(path, self.device) for key, path in find_saes(self.paths.saes).items()}
        self.readers = {name: ProbeReader.load(self.paths, name, self.models[name], self.tokenizer, self.device,
                                               loaded=self.saes if name == "tuned" else None)
                        for name, file in PROBE_FILES.items() if (self.paths.probe / f"{file}.json").exists()}
        self.reward = build_reward(task_spec(self.config.task), self.config.reward, self.device)
        beta = task_beta(self.config)
        self.policy: PolicyPair | None = (PolicyPair(self.models["tuned"], self.models["base"], self.tokenizer, beta,
                                                     self.config.world.max_length) if beta > 0 else None)
        """The policy lens's two models (the same ones, loaded once); None without a KL penalty."""
        self.sampling = Sampling.of(self.config)
        prompts = read_world_table(self.paths.world, PROMPTS)
        self.heldout_prompts: list[str] = prompts.loc[prompts["purpose"] == "eval", "prompt"].tolist()
        self.relevant: dict[DictionaryKey, list[int]] = (
            relevant_features(self.store.read("feature_explanations", "model = ?", ["tuned"]),
                              self.readers["tuned"].dictionaries)
            if "feature_explanations" in self.store.tables() and "tuned" in self.readers else {})
        crosscoders = load_crosscoders(self.paths.crosscoders, self.device)
        self.paired: PairedModels | None = PairedModels(self.models["base"], crosscoders) if crosscoders else None
        """The base model and the crosscoders, when the run has them: the lab ablates crosscoder latents too."""
        self._hooks = ExitStack()
        self._hooks.enter_context(intervention_hooks(self.models["tuned"], self.saes, self.paired))
        for model in self.models.values():
            self._hooks.enter_context(shared_capture_hooks(model))

    def close(self) -> None:
        """Remove the hooks (the models stay usable as plain models)."""
        self._hooks.close()

    @property
    def max_tokens(self) -> int:
        """The longest text (in tokens) the playground reads: the probe's window."""
        return self.readers["tuned"].encoder.max_tokens if "tuned" in self.readers else 0

    # -- the playground ---------------------------------------------------------------------

    def implicit_reward(self, text: str, model: str = "tuned", top_k: int = 5) -> LiveReward:
        """The probe's reward per token, per word and for the whole of `text` on `model`, and the task's
        true reward of the same text. The implicit reward is computed from the model alone: the
        lexicon only enters the true reward and its per-word values."""
        if model not in PROBE_FILES:
            raise InputError(f"model must be one of {sorted(PROBE_FILES)}, got {model!r}")
        if model not in self.readers:
            raise StageOrderError(f"{self.paths.probe} has no probe of the {model} model: run the `probe` stage")
        reader = self.readers[model]
        lexicon_reward = isinstance(self.reward, VaderReward)
        aggregate = self.reward.aggregate if lexicon_reward and reader.probe.kind == "regression" else None
        reading = read_text(reader.encoder, reader.probe, text, aggregate, top_k)
        text_read = reading.text_read
        true_reward = float(self.reward([text_read])[0]) if self.reward is not None else None
        words = None
        if lexicon_reward:
            words = pd.DataFrame(self.reward.token_values(text_read), columns=["word", "start", "end", "value"])
        return LiveReward(model, reading.tokens, reading.truncated, text_read, true_reward, words, reading.words,
                          reading.text_reward)

    def policy_reading(self, text: str) -> PolicyReading:
        """The policy lens on `text` after the document separator: beta log pi_tuned/pi_base per token,
        per word (the sum of its tokens) and in all (`lfp_engine.policy.text`)."""
        if self.policy is None:
            raise InputError(f"this run was tuned without a KL penalty (beta {task_beta(self.config)}), so its "
                             "policy has no implicit reward to read")
        return read_policy(self.policy, text)

    def reward_units(self, text: str) -> ReadTogether:
        """`text` read by the tuned model's probe, by the policy lens and by the task's reward, per token,
        per word and in all, in the reward's units (a VADER task: lexicon values times its scale)."""
        probe = self.implicit_reward(text, "tuned")
        policy = self.policy_reading(probe.text_read)
        scale = self.reward.scale if isinstance(self.reward, VaderReward) else 1.0
        by_span = dict(zip(zip(probe.tokens["start"], probe.tokens["end"]), probe.tokens["reward"] * scale))
        tokens = policy.tokens.rename(columns={"reward": "policy"}).assign(
            probe=[by_span.get(span, float("nan")) for span in zip(policy.tokens["start"], policy.tokens["end"])])
        words = probe.implicit_words[["word", "start", "end"]].assign(probe=probe.implicit_words["value"] * scale)
        words = words.merge(policy.words[["start", "end", "value"]].rename(columns={"value": "policy"}),
                            on=["start", "end"], how="left")
        if probe.words is not None:
            words = words.merge(probe.words[["start", "end", "value"]].rename(columns={"value": "reward"}),
                                on=["start", "end"], how="left")
            words["reward"] *= scale
        else:
            words["reward"] = float("nan")
        words = words.sort_values("start").reset_index(drop=True)[["word", "start", "end", "reward", "probe", "policy"]]
        totals = {"reward": probe.true_reward, "probe": probe.implicit_text_reward, "policy": policy.total}
        return ReadTogether(tokens[["position", "token", "start", "end", "policy", "probe"]], words, totals,
                            probe.truncated or policy.truncated, policy.text_read)

    # -- the ablation and steering lab ------------------------------------------------------

    def compare_generations(self, prompts: Sequence[str], intervention: Intervention, n_samples: int,
                            max_new_tokens: int | None = None, seed: int = 0) -> GenerationComparison:
        """`n_samples` completions of the prompts (taken in turn) by the tuned model as it is and
        under `intervention`, all under `seed`: sample i of both sees the same noise, so the two
        differ only by what the intervention changed (nothing, when it is empty)."""
        validate(intervention, self.saes, self.paired)
        if self.reward is None:
            raise InputError(f"task {self.config.task!r} has no reward function to score completions with")
        if not prompts:
            raise InputError("no prompts: pick held-out openings or type at least one")
        long = [len(p) for p in prompts if len(p) > MAX_PROMPT_CHARS]
        if long:
            raise InputError(f"a prompt of {long[0]:,} characters: the lab takes prompts of up to "
                             f"{MAX_PROMPT_CHARS:,} (the model reads only its last few hundred tokens anyway)")
        if not 1 <= int(n_samples) <= MAX_SAMPLES:
            raise InputError(f"the number of samples must be between 1 and {MAX_SAMPLES}, got {n_samples}")
        tokens = self.sampling.max_new_tokens if max_new_tokens is None else int(max_new_tokens)
        if not 1 <= tokens <= MAX_NEW_TOKENS:
            raise InputError(f"new tokens per completion must be between 1 and {MAX_NEW_TOKENS}, got {tokens}")
        sampling = dataclasses.replace(self.sampling, max_new_tokens=tokens,
                                       min_new_tokens=min(self.sampling.min_new_tokens, tokens))
        chosen = [prompts[i % len(prompts)] for i in range(int(n_samples))]
        model = self.models["tuned"]
        plain = intervened_completions(model, self.tokenizer, chosen, NO_INTERVENTION, self.saes, self.reward,
                                       sampling, seed, "generate (unmodified)")
        changed = plain if intervention.empty else intervened_completions(
            model, self.tokenizer, chosen, intervention, self.saes, self.reward, sampling, seed, "generate (modified)",
            self.paired)
        samples = pd.DataFrame({"prompt": chosen, "unmodified": plain.texts, "unmodified_reward": plain.rewards,
                                "modified": changed.texts, "modified_reward": changed.rewards,
                                "difference": changed.rewards - plain.rewards})
        comparison = (paired_comparison(plain.rewards, changed.rewards, "reward", alternative="two-sided", seed=seed)
                      if len(chosen) > 1 else None)
        return GenerationComparison(samples, comparison)

    def dictionary_sizes(self) -> dict[DictionaryKey, int]:
        """Features per tuned dictionary, for pickers."""
        return {key: int(sae.d_sae) for key, sae in sorted(self.saes.items())}

