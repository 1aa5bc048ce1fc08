"""Explanation quiz: the paper's human check of the explanations (appendix G). A feature's top
examples and four explanations, its own among three others, shuffled, plus "none of the above":
which one fits? Answers are saved under the annotator's name in the run's `annotations` table,
and accuracy, the "none" rate and agreement between annotators update as they come in."""

import html

import streamlit as st

from app import ui
from lfp_engine.sae.keys import FeatureKey
from lfp_engine.report.formatting import num, percent
from app.markup import highlighted, labelled
from lfp_engine.explain.annotation import N_EXPLANATIONS, agreement, annotator_name, record_answer
from lfp_engine.run.errors import InputError, StoreBusyError

EXAMPLES_SHOWN = 6
LETTERS = "ABCDE"
SAVED_KEY = "quiz_saved"

run = ui.current_run()
st.title("Explanation quiz")
ui.explain("Is an explanation of a feature good enough that a person can pick it out from the feature's examples "
           "alone? The paper's two annotators chose the right explanation 67.5% and 70% of the time, where "
           f"guessing gives {percent(1 / N_EXPLANATIONS, 0)}.")
if not ui.needs(run, "annotation_questions", what="The quiz"):
    st.stop()
questions = run.annotation_questions()
answers = run.annotations()
saved = st.session_state.pop(SAVED_KEY, None)
if saved is not None:
    st.success(saved)

summary = agreement(answers)
shown = st.columns(4)
shown[0].metric("Answers", num(summary["n_answers"]), help=f"from {summary['n_annotators']} annotators")
shown[1].metric("Right explanation chosen", percent(summary["accuracy"]),
                delta=None if summary["n_answers"] == 0 else f"chance {percent(summary['chance'], 0)}",
                delta_color="off")
shown[2].metric("Chose “none of the above”", percent(summary["none_rate"]))
shown[3].metric("Annotators agree", percent(summary["agreement"]),
                help=f"share of the {summary['n_pairs']} pairs of annotators who answered the same question and "
                     "chose the same option")

name_input = st.text_input("Your name", key="quiz_name", max_chars=200,
                           help="answers are counted per annotator; a second answer to a question replaces the first")
try:
    name = annotator_name(name_input)
except InputError as err:
    st.info(f"{str(err).capitalize()}.")
    st.stop()

mine = set(answers.loc[answers["annotator"] == name, "question_id"])
todo = [i for i, q in enumerate(questions["question_id"]) if q not in mine]
st.caption(f"{name} has answered {len(mine)} of {len(questions)} questions.")
picker = f"quiz_question_{name}"
if saved is not None and todo:
    st.session_state[picker] = todo[0]  # on to the next unanswered question
position = st.selectbox("Question", range(len(questions)), index=todo[0] if todo else 0, key=picker,
                        format_func=lambda i: f"{i + 1}" + (" (answered)" if questions["question_id"][i] in mine else ""))
question = questions.iloc[position]

st.subheader("The feature fires on these texts")
key = FeatureKey(str(question["model"]), int(question["layer"]), int(question["dict_size"]), int(question["feature"]))
examples = run.feature_examples(key)
top = examples[examples["kind"] == "top"].head(EXAMPLES_SHOWN)
scale = max((float(v) for v in top["max_activation"]), default=0.0)
st.html("".join(labelled(f"example {i + 1}", highlighted(list(e.tokens), list(e.activations), scale))
                for i, e in enumerate(top.itertuples())))

st.subheader("Which explanation fits?")
options = list(question["options"])
st.html("<ol type='A' style='font-size: 1.05rem'>" + "".join(f"<li>{html.escape(str(o))}</li>" for o in options)
        + "</ol>")
with st.form(f"quiz_form_{question['question_id']}"):
    choice = st.radio("Your answer", range(len(options)), index=None, horizontal=True,
                      key=f"quiz_choice_{question['question_id']}",
                      format_func=lambda i: LETTERS[i])
    submitted = st.form_submit_button("Save answer", type="primary")
if submitted:
    if choice is None:
        st.warning("Pick one of the options first.")
    else:
        try:
            record_answer(run.store, question, name, int(choice))
        except StoreBusyError as err:
            st.error(f"The answer was not saved: the store stayed busy. Try again in a moment. ({err})")
        except InputError as err:
            st.error(f"The answer was not saved: {err}.")
        else:
            st.session_state[SAVED_KEY] = f"Saved {name}'s answer {LETTERS[int(choice)]} to question {position + 1}."
            st.rerun()
