"""Ablation and steering lab: switch features of the tuned model off (zero ablation, the validate
stage's method) or push on them (steering), let it complete openings, and compare the completions
and their rewards with the unmodified model's, sample by sample under one seed. Crosscoder latents
(the "What tuning changed" page links here with `?crosscoder=layer/size/latent`) can be switched off
too: their codes read the base model as well, which then runs alongside the tuned model."""

import pandas as pd
import streamlit as st

from app import charts, live, ui
from lfp_engine.report.formatting import num, p_value, signed, span
from lfp_engine.run.errors import InputError
from lfp_engine.validation.interventions import Intervention, validate
from lfp_engine.sae.keys import DictionaryKey, FeatureKey
from lfp_engine.serving import MAX_NEW_TOKENS, MAX_SAMPLES

FEATURES_KEY, ADDED_KEY, RESULT_KEY = "lab_features", "lab_added", "lab_result"
HELDOUT_SHOWN = 50


CROSSCODER = "crosscoder "  # prefix of a crosscoder latent's name in the feature list ('crosscoder 3/512/17')


def feature_id(layer: int, size: int, feature: int) -> str:
    return FeatureKey("tuned", layer, size, feature).label


def linked_latent(added: list[str]) -> str | None:
    """The crosscoder latent the URL names (once per session and latent), added to the lab's list."""
    link = st.query_params.get("crosscoder")
    if not link:
        return None
    try:
        name = CROSSCODER + FeatureKey.parse_label(link).label
    except InputError as err:
        st.error(f"{err}.")
        return None
    if name not in added:
        added.append(name)
        st.session_state[FEATURES_KEY] = list(dict.fromkeys([*st.session_state.get(FEATURES_KEY, []), name]))
    return name


run = ui.current_run()
st.title("Ablation and steering lab")
ui.explain("Choose features of the tuned model, switch them off or push on them, and see what the model writes "
           "and how much reward it earns, next to the unmodified model on the same openings and the same random "
           "draws. Ablation is the validate stage's: each chosen feature's contribution is removed from the layer's "
           "output and nothing else changes.")
if not ui.needs(run, "features", what="The lab"):
    st.stop()
server = live.live_run(run)
sizes = server.dictionary_sizes()
explained = run.explained_features("tuned")
explanations = {feature_id(r.layer, r.dict_size, r.feature): r.explanation for r in explained.itertuples()}
relevant = [feature_id(layer, size, f) for (layer, size), fs in sorted(server.relevant.items()) for f in sorted(fs)]
added = st.session_state.setdefault(ADDED_KEY, [])
st.session_state.setdefault(FEATURES_KEY, relevant)
linked = linked_latent(added)
if linked is not None:
    explanations[linked] = "crosscoder latent, opened from What tuning changed"

st.subheader("1. Features")
with st.container(border=True):
    pick_dictionary, pick_feature, add = st.columns([2, 1, 1], vertical_alignment="bottom")
    dictionary = pick_dictionary.selectbox("Dictionary", list(sizes), key="lab_dictionary",
                                           format_func=lambda k: f"layer {k[0]}, {k[1]} features")
    index = pick_feature.number_input("Feature index", min_value=0, value=0, step=1, key="lab_index")

    def add_feature() -> None:
        """Runs before the next script run, so the feature list can take the new feature."""
        key, feature = st.session_state["lab_dictionary"], int(st.session_state["lab_index"])
        try:
            validate(Intervention(ablate={key: (feature,)}), server.saes)
        except InputError as err:
            st.session_state["lab_add_error"] = str(err)
            return
        name = feature_id(*key, feature)
        if name not in added:
            added.append(name)
        st.session_state[FEATURES_KEY] = list(dict.fromkeys([*st.session_state[FEATURES_KEY], name]))

    add.button("Add feature", key="lab_add", on_click=add_feature)
    if "lab_add_error" in st.session_state:
        st.error(st.session_state.pop("lab_add_error"))
options = list(dict.fromkeys([*relevant, *added]))
chosen = st.multiselect("Chosen features (layer/dictionary size/index)", options, key=FEATURES_KEY,
                        format_func=lambda f: f"{f}: {explanations.get(f, 'not explained')}")
if not relevant:
    st.caption("No feature of this run is judged relevant to the tuning task, so none is chosen to start with.")

st.subheader("2. Intervention")
mode_column, strength_column = st.columns(2)
mode = mode_column.radio("What to do to them", ["zero-ablate", "steer"], key="lab_mode", horizontal=True,
                         help="zero-ablate: remove what the features contribute; steer: add each feature's direction "
                              "(unit length) times the strength at every position")
strength = strength_column.number_input("Steering strength", value=10.0, step=1.0, key="lab_strength",
                                        disabled=mode != "steer")

st.subheader("3. Openings and sampling")
source = st.radio("Openings", ["held-out openings", "my own"], key="lab_source", horizontal=True)
if source == "held-out openings":
    heldout = server.heldout_prompts[:HELDOUT_SHOWN]
    prompts = st.multiselect("Held-out openings (never used in tuning)", heldout, default=heldout[:4],
                             key="lab_heldout")
else:
    typed = st.text_area("One opening per line", key="lab_typed", value="The movie was")
    prompts = [line for line in typed.splitlines() if line.strip()]
samples_column, tokens_column, seed_column = st.columns(3)
n_samples = samples_column.number_input("Samples", min_value=1, max_value=MAX_SAMPLES, value=8, key="lab_samples",
                                        help="completions per model, the openings taken in turn")
max_new_tokens = tokens_column.number_input("New tokens per completion", min_value=1, max_value=MAX_NEW_TOKENS,
                                            value=20, key="lab_tokens")
seed = seed_column.number_input("Seed", min_value=0, value=0, key="lab_seed")

if st.button("Generate", type="primary", key="lab_run"):
    by_dictionary: dict[DictionaryKey, list[int]] = {}
    by_crosscoder: dict[DictionaryKey, list[int]] = {}
    for name in chosen:
        target = by_crosscoder if name.startswith(CROSSCODER) else by_dictionary
        key = FeatureKey.parse_label(name.removeprefix(CROSSCODER))
        target.setdefault(key.dictionary, []).append(key.feature)
    crossed = {k: tuple(v) for k, v in by_crosscoder.items()}
    intervention = (Intervention(ablate={k: tuple(v) for k, v in by_dictionary.items()}, ablate_crosscoder=crossed)
                    if mode == "zero-ablate" else
                    Intervention(steer={k: tuple((f, float(strength)) for f in v) for k, v in by_dictionary.items()}))
    try:
        if mode == "steer" and crossed:
            raise InputError("crosscoder latents can be switched off here, not steered: choose zero-ablate")
        with st.spinner("Generating…"):
            result = server.compare_generations(prompts, intervention, int(n_samples), int(max_new_tokens), int(seed))
        st.session_state[RESULT_KEY] = (result, mode, len(chosen), float(strength))
    except InputError as err:
        st.session_state.pop(RESULT_KEY, None)
        st.error(f"{err}.")

if RESULT_KEY in st.session_state:
    result, done_mode, n_features, done_strength = st.session_state[RESULT_KEY]
    samples, comparison = result.samples, result.comparison
    what = ("nothing changed: no feature chosen" if n_features == 0 else
            f"{n_features} features zero-ablated" if done_mode == "zero-ablate" else
            f"{n_features} features steered at strength {num(done_strength)}")
    st.subheader(f"Unmodified against modified ({what})")
    shown = st.columns(4)
    shown[0].metric("Mean reward, unmodified", num(samples["unmodified_reward"].mean()))
    shown[1].metric("Mean reward, modified", num(samples["modified_reward"].mean()),
                    delta=signed(samples["difference"].mean()))
    if comparison is not None:
        shown[2].metric("95% interval of the difference", span(comparison.ci_low, comparison.ci_high))
        shown[3].metric("Paired t-test", p_value(comparison.p_value))
    ui.explain(f"Over {len(samples)} samples: both models complete the same openings with the same random draws, "
               "so each pair differs only by the intervention (with nothing chosen, the two are identical).")
    st.altair_chart(charts.reward_pairs(samples))
    st.dataframe(pd.DataFrame({"opening": samples["prompt"], "unmodified": samples["unmodified"],
                               "reward": samples["unmodified_reward"], "modified": samples["modified"],
                               "modified reward": samples["modified_reward"], "difference": samples["difference"]}),
                 hide_index=True, key="lab_samples_table",
                 column_config={c: st.column_config.NumberColumn(format="%.3f")
                                for c in ("reward", "modified reward", "difference")})
