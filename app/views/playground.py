"""Implicit reward playground: type a text and see, token by token and for the whole text, the
reward the tuned model implicitly gives it (the probe on its SAE features), the reward it was
actually trained on beside it in the same units, the features behind each token, and the same text
read by the base model."""

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

run = ui.current_run()
st.title("Implicit reward playground")
ui.explain("The probe reads the tuned model's sparse features and says how much reward the model expects for "
           "each token. Type a text to see that implicit reward next to the true reward of the same text.")
ui.explain(PER_TOKEN)
if not ui.needs(run, "probe_weights", what="The playground"):
    st.stop()
server = live.live_run(run)
text = st.text_area("Text", value=live.EXAMPLE_TEXT, key="playground_text", height=110)
try:
    tuned = server.implicit_reward(text, "tuned")
except InputError as err:
    st.warning(f"{err}.")
    st.stop()
base = server.implicit_reward(text, "base") if "base" in server.readers else None
if tuned.truncated:
    st.warning(f"The text is longer than the model's window: only its first {len(tuned.tokens)} tokens "
               f"({len(tuned.text_read):,} of {len(text):,} characters) are read, and both rewards below are of "
               "that part.")

shown = tuned.text_read
ends = tuned.tokens["end"].tolist()
pieces = text_pieces(shown, ends)
scale = max(float(tuned.tokens["reward"].abs().max()),
            float(base.tokens["reward"].abs().max()) if base is not None else 0.0)
metrics = st.columns(4)
metrics[0].metric("True reward of the text", num(tuned.true_reward),
                  help=f"The task's reward ({server.config.task}), the one the model was tuned on")
metrics[1].metric("Implicit reward of the text, tuned model", num(tuned.implicit_text_reward), help=TEXT_REWARD)
metrics[2].metric("Implicit reward of the text, base model", num(base.implicit_text_reward if base else None),
                  help=TEXT_REWARD)
metrics[3].metric("Tokens read", num(len(tuned.tokens)))
if tuned.implicit_text_reward is None:
    st.caption("This task's reward is not a sum over words (or its probe is a classifier), so the implicit reward "
               "has no text-level number in the reward's units; the per-token values below still apply.")

st.subheader("Per token, as the tuned model reads it")
st.html(reward_heat(shown, ends, tuned.tokens["reward"], scale, "implicit reward"))
if tuned.words is not None:
    st.caption("The true reward: each word's VADER lexicon value (the reward is their sum × "
               f"{server.config.reward.scale:g}, clipped).")
    word_scale = max(float(tuned.words["value"].abs().max()), float(tuned.implicit_words["value"].abs().max()), 1e-9)
    st.html(reward_heat(shown, tuned.words["end"].tolist(), tuned.words["value"], word_scale, "lexicon value"))
    if tuned.implicit_text_reward is not None:
        st.caption("The implicit reward per word, on the same colour scale: the mean of the word's tokens above, "
                   "the values the text's implicit reward sums.")
        st.html(reward_heat(shown, tuned.implicit_words["end"].tolist(), tuned.implicit_words["value"], word_scale,
                            "implicit word value"))
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
