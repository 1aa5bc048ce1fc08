"""Implicit reward playground: type a text and see, word by word and for the whole text, three readings
on one scale (the reward's units): the reward the model was tuned on, what tuning taught the policy to
prefer to write (the policy lens, beta log pi_tuned/pi_base, `lfp_engine/policy`), and how the tuned
model reads it inside (the paper's probe on its SAE features); then, token by token, the probe's
reading, the features behind each token, and the same text read by the base model. The opening text
can come from the URL (`?text=`, the Story's tour links here with its sentence)."""

import streamlit as st

from app import charts, live, ui
from lfp_engine.report.formatting import num
from app.markup import drivers_table, reward_heat, text_pieces
from lfp_engine.run.errors import InputError

PER_TOKEN = ("Reading the probe at every token is this tool's extension of the paper, which reads it only at the "
             "substituted word of each contrastive triple (section 3.3).")
TEXT_REWARD = ("Every word's implicit value (the mean over its tokens) summed, times the reward's scale, clipped: the "
               "true reward's own formula, applied to the probe's values instead of the lexicon's. The probe was fit "
               "with a zero point (each triple's neutral word, and tokens the triple's versions share before it, at "
               "0), so a word the model reads as neutral adds about 0.")

POLICY_SUM = ("The sum over the text's tokens of beta log pi_tuned/pi_base (the policy lens): the text's "
              "implicit reward under the policy, up to a term of the prompt alone. Large and noisy for a text the "
              "model would never write.")
LENSES = (("reward", "reward", "What the reward pays for each word (its lexicon value times the reward's scale)."),
          ("policy", "learned to write", "What tuning taught the model to write: beta log pi_tuned/pi_base of each word "
           "(the sum over its tokens), read after a document separator."),
          ("probe", "read inside", "How the tuned model reads each word inside: the probe's value (the mean over the "
           "word's tokens) times the reward's scale."))
WHEN_UNRELIABLE = ("One colour scale for all three rows; hover a word for its value. The reward is exact: it is the "
                   "rule the model was tuned on. What it learned to write is read from the two models' own "
                   "probabilities, so it needs no probe; but it also carries how unusual the text is to the model, so "
                   "for a text the model would never write it is large and noisy (its sum most of all), and it is "
                   "most trustworthy on ordinary sentences, compared word against word. How it reads a word inside "
                   "comes from a probe fit on example sentences: it is most trustworthy for words and sentences like "
                   "those it was fit on.")

run = ui.current_run()
st.title("Implicit reward playground")
st.markdown("Type a sentence. Each word is coloured three ways: by what the reward pays for it, by what tuning "
            "taught the model to write, and by how the model reads it inside. Teal means more reward, red less.")
if not ui.needs(run, "probe_weights", what="The playground"):
    st.stop()
server = live.live_run(run)
text = st.text_area("Text", value=st.query_params.get("text") or live.EXAMPLE_TEXT, key="playground_text", height=110)
try:
    tuned = server.implicit_reward(text, "tuned")
    together = server.reward_units(text) if server.policy is not None else None
except InputError as err:
    st.warning(f"{err}.")
    st.stop()
base = server.implicit_reward(text, "base") if "base" in server.readers else None
if tuned.truncated:
    st.warning(f"The text is longer than the model's window: only its first {len(tuned.tokens)} tokens "
               f"({len(tuned.text_read):,} of {len(text):,} characters) are read, and both rewards below are of "
               "that part.")

st.header("Three readings of the text, on one scale")
metrics = st.columns(4)
metrics[0].metric("True reward of the text", num(tuned.true_reward),
                  help=f"The task's reward ({server.config.task}), the one the model was tuned on")
metrics[1].metric("What it learned to write (policy), text sum",
                  num(together.totals["policy"] if together is not None else None), help=POLICY_SUM)
metrics[2].metric("Implicit reward of the text, tuned model", num(tuned.implicit_text_reward), help=TEXT_REWARD)
metrics[3].metric("Tokens read", num(len(tuned.tokens)))
if together is not None:
    words = together.words
    together_scale = max(float(words[["reward", "probe", "policy"]].abs().max().max()), 1e-9)
    for column, label, caption in LENSES:
        if words[column].notna().any():
            st.caption(caption)
            read = words[words[column].notna()]
            st.html(reward_heat(together.text_read, read["end"].tolist(), read[column], together_scale, label))
    ui.explain(WHEN_UNRELIABLE)
else:
    st.info("This run was tuned without a penalty for drifting from the base model, so the policy lens has no "
            "implicit reward to read.")
if tuned.implicit_text_reward is None:
    st.caption("This task's reward is not a sum over words (or its probe is a classifier), so the implicit reward "
               "has no text-level number in the reward's units; the per-token values below still apply.")

shown = tuned.text_read
ends = tuned.tokens["end"].tolist()
pieces = text_pieces(shown, ends)
scale = max(float(tuned.tokens["reward"].abs().max()),
            float(base.tokens["reward"].abs().max()) if base is not None else 0.0)
st.subheader("Token by token")
ui.explain(PER_TOKEN)
st.caption("How the tuned model reads each token inside (the probe, in the lexicon's units):")
st.html(reward_heat(shown, ends, tuned.tokens["reward"], scale, "implicit reward"))
if together is not None:
    policy_tokens = together.tokens
    st.caption("What tuning taught it to write, token by token (beta log pi_tuned/pi_base given the tokens before "
               "it, in the reward's units; the word values above are its sums):")
    st.html(reward_heat(together.text_read, policy_tokens["end"].tolist(), policy_tokens["policy"],
                        max(float(policy_tokens["policy"].abs().max()), 1e-9), "learned to write"))
ui.explain("Teal: reward above zero, red: below; the stronger the colour, the larger. Hover a token for its value.")

st.subheader("What drove each token")
relevant = {(layer, size, f) for (layer, size), fs in server.relevant.items() for f in fs}
with st.container(height=420):
    st.html(drivers_table(pieces, tuned.tokens["reward"], tuned.tokens["drivers"], str(run.root), relevant))
ui.explain("The features whose weight in the probe times their activation on the token moved its value most; "
           "bold: judged related to the tuning task. Each opens its feature page.")

st.subheader("The same text on the base model")
if base is None:
    st.info("This run has no probe of the base model (`probe/base_probe.*`), which the `probe` stage writes when "
            "the base model's SAEs exist (`activations.models` includes `base`).")
else:
    st.html(reward_heat(shown, ends, base.tokens["reward"], scale, "base model's implicit reward"))
    st.altair_chart(charts.token_rewards({"tuned": tuned.tokens, "base": base.tokens}, pieces))
    ui.explain("Base model: the model before tuning, read by its own probe, fit exactly as the tuned model's was but "
               "on the base model's SAE features, put in the lexicon's units the same way, on the same training words, "
               "and at the same regularisation strength, so the two lines share one scale. Where they part, the two models' features carry the reward "
               "differently: tuning is one cause, each probe's own fitting noise another.")
