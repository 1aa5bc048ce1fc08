"""Lexicon: the reward the probe reads out of the tuned model, word by word, against the true
reward (paper 4.1: Kendall tau, sign agreement, tables 2, 4, 5, 9, 10 and figure 4), beside every
baseline and control, with the engine's verdict (`lfp_engine.report.verdict`, as `lfp report`
prints it); the divergence report, ranked, and what it recovers of a planted world's truth
(`lfp_engine.report.divergence`); for preference tasks, the probe's accuracy and figure 5."""

import streamlit as st

from app import charts, storyline, ui
from lfp_engine.report import story
from lfp_engine.report.divergence import LENS_LABELS, recovery_sentence
from lfp_engine.report.formatting import num, p_number, percent, signed, span

# The columns of the divergence report the page shows (`kind` where the world planted one). A comment, not
# a string: Streamlit writes a page script's bare strings onto the page.
REPORT_SHOWN = ("rank", "word", "kind", "split", "lexicon_value", "tuned_value", "tuned_ci_low", "tuned_ci_high",
                "base_value", "base_ci_low", "base_ci_high", "difference", "difference_ci_low", "difference_ci_high",
                "q_opposite", "divergent", "behaviour_difference", "behaviour_q", "reason")

def lexicon_summary(run, verdict) -> str:
    """The page's opening in plain words: what it shows, and the two lenses' answers (`lfp_engine.report.story`)."""
    text = ("Every word the reward knows, beside what the model made of it: what tuning taught it to write, and how "
            "it reads the word inside.")
    if verdict.get("policy") is not None or verdict.get("learned") is not None:
        text += " " + story.learned_headline(verdict.get("policy"), verdict.get("learned"), storyline.probed(run))
    report = run.divergence_report()
    return text + (" " + story.divergence_headline(report) if not report.empty else "")


def policy_section(run, verdict) -> None:
    """The policy lens (`lfp_engine/policy`): each word's policy value against its lexicon value, the
    verdict's answer, its recovery of a planted world, as `lfp report` words them."""
    st.header("What it learned to write: the policy lens")
    if not ui.needs(run, "policy_values", what="The policy lens"):
        return
    if (finding := verdict.get("policy")) is not None:
        st.markdown(finding.text)
    st.altair_chart(charts.policy_vs_lexicon(run.policy_values()))
    ui.explain("Each dot is a word: across, what the reward pays for it; up, what tuning taught the model to prefer "
               "to write, beta log pi_tuned/pi_base of the sentences with the word against the same sentences with a "
               "neutral word, in the reward's units (the base model's is 0 by definition). Whiskers: 95% bootstrap "
               "intervals over the word's sentences. Colour: the kind the world planted.")
    if run.has("divergence_recovery") and (run.divergence_recovery()["lens"] == "policy").any():
        st.markdown(recovery_sentence(run.divergence_recovery(), "policy"))


run = ui.current_run()
st.title("Lexicon: the reward as the model learned it")
verdict = run.verdict()
st.markdown(lexicon_summary(run, verdict))
policy_section(run, verdict)

st.header("How it reads words inside: the probe")
ui.explain("A linear probe reads, from the tuned model's SAE features, how much reward the model expects a word "
           "to earn. Put next to the word's true value in the lexicon, it shows what the model learned about the "
           "feedback and where it diverges.")
if not ui.needs(run, "probe_metrics", what="This page"):
    st.stop()

metrics = run.probe_metrics()
if (learned := verdict.get("learned")) is not None:
    st.markdown(learned.text)
tau = run.probe_metric("sae", "test", "kendall_tau")
within = run.probe_metric("sae", "test_within", "kendall_tau")
if within is not None:
    cols = st.columns(4)
    cols[0].metric("Kendall tau within polarity", num(within["value"], 3),
                   help="Agreement with the lexicon over pairs of test words of the same polarity")
    cols[1].metric("95% confidence interval, within", span(within["ci_low"], within["ci_high"]))
    cols[2].metric("p against the permutation null", p_number(within["p_value"]),
                   help="Share of probes refit to targets shuffled between words that score at least as well")
    difference = run.probe_metric("tuned_minus_base", "test_within", "kendall_tau")
    cols[3].metric("Tuned minus base", "–" if difference is None else signed(difference["value"]),
                   help="The same measure on the model before tuning, subtracted word for word")
    ui.explain("Within one polarity, the probe cannot score by telling good words from bad ones: this is the "
               "measure of whether the model learned how strong each word's reward is. The difference to the base "
               "model comes with its own interval in the verdict above.")
if tau is not None:
    cols = st.columns(4)
    cols[0].metric("Kendall tau, test words", num(tau["value"], 3), help="1: same order as the lexicon; 0: unrelated")
    cols[1].metric("95% confidence interval, pooled", span(tau["ci_low"], tau["ci_high"]))
    polarity = run.probe_metric("polarity_only", "test", "kendall_tau")
    cols[2].metric("Knowing polarity alone", "–" if polarity is None else num(polarity["value"], 3),
                   help="The pooled tau of a readout that knows only whether each word is positive or negative")
    sign = run.probe_metric("sae", "test", "sign_agreement")
    cols[3].metric("Sign agreement", percent(None if sign is None else sign["value"]),
                   help="Share of test words whose probe value has the sign of their lexicon value")
    ui.explain(f"Pooled over both polarities, on {num(tau['n'])} test words the probe was never fitted on. Kendall "
               "tau compares the order of the words by probe value with their order in the lexicon; the interval is "
               "a bootstrap over words.")
    by_polarity = [(s, run.probe_metric("sae", s, "sign_agreement")) for s in ("test_positive", "test_negative")]
    if all(r is not None for _, r in by_polarity):
        st.markdown("Sign agreement by polarity (paper table 5): " + "; ".join(
            f"{s.removeprefix('test_')} words {percent(r['value'])} of {num(r['n'])}" for s, r in by_polarity) + ".")

st.header("Probe value against lexicon value")
if tau is not None and ui.needs(run, "lexicon_comparison", what="The word-by-word comparison"):
    split = st.segmented_control("Words", ["test", "train", "all"], default="test", key="lexicon_split",
                                 persist_state="session") or "test"
    words = run.lexicon_comparison(split=None if split == "all" else split)
    st.altair_chart(charts.probe_vs_lexicon(words, color="split" if split == "all" else "polarity"))
    ui.explain("Each dot is a word: across, its value in the lexicon; up, the value the probe reads in the model. "
               "Words on the dashed diagonal were learned exactly; the probe's values are rescaled to the "
               "lexicon's range.")

st.header("Against the baselines")
subsets = list(dict.fromkeys(metrics["subset"]))
subset = st.selectbox("Words measured", subsets, key="lexicon_subset", persist_state="session")
shown = metrics[(metrics["subset"] == subset) & (metrics["variant"] != "tuned_minus_base")]
headline = "kendall_tau" if "kendall_tau" in set(shown["metric"]) else shown["metric"].iloc[0]
st.altair_chart(charts.metric_by_variant(shown, headline))
table = shown.pivot_table(index="variant", columns="metric", values="value", sort=False)
if headline == "kendall_tau":  # the headline's significance beside it
    significance = shown[shown["metric"] == headline].set_index("variant")
    table.insert(1, "p (permutation)", significance["p_value"].reindex(table.index).map(p_number))
    table.insert(2, "95% CI", [span(r.ci_low, r.ci_high) for r in significance.reindex(table.index).itertuples()])
st.dataframe(table, column_config={c: st.column_config.NumberColumn(c.replace("_", " "), format="%.3f")
                                   for c in table.columns if c not in ("p (permutation)", "95% CI")})
ui.explain("sae: the probe on the tuned model's SAE features. xavier: the same probe untrained (random weights, "
           "the paper's baseline). shuffled: fitted to shuffled targets. raw_mlp: fitted on the raw layer "
           "outputs instead of SAE features. base_model: the same pipeline on the model before tuning. "
           "polarity_only: no probe, every word valued at its polarity's mean training value. p: the share of "
           "probes refit to targets shuffled between words (on the same model's inputs) that score at least as "
           "well.")

accuracy = run.probe_metric("sae", "test", "accuracy")
if accuracy is not None and run.has("probe_pca"):
    st.header("Preferred against rejected (figure 5)")
    st.altair_chart(charts.pca(run.probe_pca()))
    ui.explain("The probe's inputs in their first two principal components, coloured by whether the text is the "
               "preferred or the rejected one.")

if tau is not None and run.has("lexicon_comparison"):
    st.header("Is a word learned worse when the model writes it more? (figure 4)")
    st.altair_chart(charts.error_vs_frequency(run.lexicon_comparison()))
    ui.explain("Across: how often the tuned model generated the word in sampled completions; up: how far the probe's "
               "value for it is from the lexicon's.")

    st.header("The reconstructed lexicon")
    search = st.text_input("Find a word", key="lexicon_search", persist_state="session")
    found = run.lexicon_comparison(search=search)
    st.dataframe(found, hide_index=True, column_config={
        "lexicon_value": st.column_config.NumberColumn("lexicon value", format="%.2f"),
        "probe_value": st.column_config.NumberColumn("probe value", format="%.2f"),
        "abs_error": st.column_config.NumberColumn("|error|", format="%.2f"),
        "heldout": st.column_config.CheckboxColumn("kept out of tuning prompts")})
    ui.explain(f"{num(len(found))} words. Probe value: the mean of the probe's predictions over the contrastive "
               "examples containing the word (n_examples). Generation counts: occurrences in completions sampled "
               "from the tuned and the base model.")

if (divergence := verdict.get("divergence")) is not None:
    st.header("The divergence report: where the model's reading disagrees with the reward")
    st.markdown(divergence.text)
    report = run.divergence_report()
    st.dataframe(report[[c for c in REPORT_SHOWN if c in report.columns]], hide_index=True, column_config={
        c: st.column_config.NumberColumn(c.replace("_", " "), format="%.3f")
        for c in REPORT_SHOWN if c not in ("rank", "word", "kind", "divergent", "reason", "split")})
    ui.explain("Every word, ranked: the most clearly against the reward first. Values are read by a probe fitted "
               "without the word (word-grouped folds) in the tuned and in the base model; intervals are 95% "
               "bootstraps over the sentences the word was substituted into, the difference's paired. divergent: "
               "the tuned model's value lies on the other side of zero from the reward's, with the false-discovery "
               "rate over all words at 5% (q opposite). behaviour: the change in the share of completions of the "
               "same held-out openings that use the word, base to tuned, and its q (McNemar, Benjamini-Hochberg).")
    with st.expander("The cross-fitted values behind it (word_values)"):
        values = run.word_values()
        st.dataframe(values, hide_index=True, column_config={
            c: st.column_config.NumberColumn(c.replace("_", " "), format="%.2f")
            for c in ("lexicon_value", "value", "ci_low", "ci_high")})

if run.has("world_lexicon"):
    st.header("The world's ground truth, and what the report recovers of it")
    truth, recovered = st.columns(2)
    with truth:
        st.dataframe(run.world_lexicon_summary(), hide_index=True)
    with recovered:
        if ui.needs(run, "divergence_recovery", what="The recovery of the planted words"):
            recovery = run.divergence_recovery()
            for lens in LENS_LABELS:
                if (recovery["lens"] == lens).any():
                    st.markdown(recovery_sentence(recovery, lens))
    if run.has("divergence_recovery"):
        st.dataframe(run.divergence_recovery(), hide_index=True, key="lexicon_recovery", column_config={
            c: st.column_config.NumberColumn(c.replace("_", " "), format="%.3f")
            for c in ("recall", "recall_ci_low", "recall_ci_high", "flag_rate", "flag_rate_ci_low", "flag_rate_ci_high",
                      "precision", "precision_ci_low", "precision_ci_high", "shift", "shift_ci_low", "shift_ci_high")})
    ui.explain("This run's world is synthetic: its reviews were written from templates with these sentiment words "
               "planted at known values. Ordinary words are used the way the reward scores them; contested words "
               "with the opposite polarity (the corpus teaches one sign, the reward pays the other); reward-only "
               "words only as names, where they say nothing about sentiment (only tuning could attach their value). "
               "Held-out words never appeared in the prompts used for tuning. Each lens is scored by what it should "
               "find for each kind (expected): inside the model (representation), contested words read against the "
               "reward and no flag on the others (a flag on a reward-only word is a false alarm: the reviews give "
               "them no value); in what it learned to write (policy), contested words against the reward and "
               "reward-only words on its side. recall: the share of the kind with the expected outcome; flag rate: "
               "the share read against the reward; row 'all': recall over the words expected against the reward, "
               "and precision, the share of against-the-reward readings on such words; 95% Clopper-Pearson "
               "intervals. shift: how far tuning moved the kind's values toward the reward inside (mean of "
               "sign(reward) x (tuned - base), bootstrap over words). Behaviour, the control: words whose use tuning "
               "changed toward or against the reward.")

if run.has("flag_calibration"):
    st.header("Would the flag fire on words that carry no value?")
    st.dataframe(run.flag_calibration(), hide_index=True, key="lexicon_calibration",
                 column_config={c: st.column_config.NumberColumn(c.replace("_", " "), format="%.3f")
                                for c in ("rate", "rate_ci_low", "rate_ci_high", "nominal")})
    ui.explain("The flag's rule on the triples' neutral words, which carry no value by construction and are read "
               "held out exactly as a lexicon word is, each given a reward of either sign at random. rate: the chance "
               "a null word is flagged at the 5% level before correction, with a Clopper-Pearson interval (nominal "
               "5%: a calibrated flag fires at about that rate); n_flagged: the null words the report's own rule "
               "(Benjamini-Hochberg over the words) flags, every one a false flag.")
