"""The dashboard's live pages under Streamlit's AppTest, on a whole copy of the micro run: the
playground shows each token's implicit reward and the text's beside its true reward, as the
serving layer computes them, the lab generates
and refuses bad features and strengths with a message, the quiz stores answers (and says when the
store is busy), the validation page shows the stored tables. Bad input never raises."""

from __future__ import annotations

import html
import re

import duckdb
import pytest

from lfp_engine.report.formatting import num, p_value, percent
from app.live import EXAMPLE_TEXT as EXAMPLE
from lfp_engine.explain import annotation
from lfp_engine.serving import LiveRun
from lfp_engine.run.store import RunStore

from .apptest import metrics, texts

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live(live_app_run) -> LiveRun:
    run = LiveRun(live_app_run, device="cpu")
    yield run
    run.close()


def html_of(at) -> str:
    return "\n".join(h.proto.body for h in at.get("html"))


def test_playground_shows_each_tokens_implicit_reward_and_the_texts_beside_the_true_reward(open_app, live_app_run,
                                                                                           live):
    at = open_app(live_app_run, "views/playground.py")
    expected = live.implicit_reward(EXAMPLE)
    together = live.reward_units(EXAMPLE)
    shown = metrics(at)
    assert shown["True reward of the text"] == num(expected.true_reward)
    assert shown["What it learned to write (policy), text sum"] == num(together.totals["policy"]) != "–"
    assert shown["Implicit reward of the text, tuned model"] == num(expected.implicit_text_reward) != "–"
    assert shown["Tokens read"] == num(len(expected.tokens))
    assert "this tool's extension of the paper" in texts(at)
    assert "large and noisy" in texts(at)  # when the policy's reading is unreliable, said in plain words
    body = html_of(at)
    for value in expected.tokens["reward"]:
        assert f'title="implicit reward {value:+.3f}"' in body
    words = together.words
    for column, label in (("reward", "reward"), ("policy", "learned to write"), ("probe", "read inside")):
        for value in words[column].dropna():
            assert f'title="{label} {value:+.3f}"' in body
    for value in together.tokens["policy"]:
        assert f'title="learned to write {value:+.3f}"' in body
    # three readings per word, the probe and the policy per token, the base model's probe per token
    assert body.count('class="lfp-token"') == int(words[["reward", "policy", "probe"]].notna().sum().sum()) + \
        len(together.tokens) + 2 * len(expected.tokens)
    layer, size, feature, _ = expected.tokens["drivers"].iloc[0][0]
    assert f"layer={layer}&amp;dict_size={size}&amp;feature={feature}" in body  # a link to the feature page
    assert not at.warning and not at.error


def test_playground_opens_on_the_text_the_url_gives(open_app, live_app_run, live):
    at = open_app(live_app_run, "views/playground.py", {"text": "A dreadful plot."})
    assert at.text_area(key="playground_text").value == "A dreadful plot."
    assert metrics(at)["Tokens read"] == num(len(live.implicit_reward("A dreadful plot.").tokens))


@pytest.mark.parametrize("text, message", [("", "the text is empty"), ("  \n\t ", "the text is empty"),
                                           ("wonderful " * 10_000, "longer than the model's window")])
def test_playground_explains_empty_and_long_text(open_app, live_app_run, text, message):
    at = open_app(live_app_run, "views/playground.py")
    at.text_area(key="playground_text").set_value(text).run()
    assert not at.exception
    assert message in texts(at)


@pytest.mark.parametrize("text", ["<script>alert('x')</script><b>bold</b> & done",
                                  "good 😀🎬 film\x00\x07\x1b[31m\u202e end"])
def test_playground_shows_markup_emoji_and_control_characters_as_text(open_app, live_app_run, text):
    at = open_app(live_app_run, "views/playground.py")
    at.text_area(key="playground_text").set_value(text).run()
    assert not at.exception and not at.warning
    body = html_of(at)
    heat = body.split("</div>")[0]  # the tuned model's tokens: the text, escaped, piece by piece
    pieces = re.findall(r'class="lfp-token"[^>]*>([^<]*)</span>', heat)
    assert html.unescape("".join(pieces)).replace("·", "") == text.replace("·", "")
    assert "<script>" not in body and "<b>" not in body


def test_lab_compares_unmodified_and_modified_completions(open_app, live_app_run, live):
    at = open_app(live_app_run, "views/lab.py")
    key = sorted(live.saes)[0]
    at.selectbox(key="lab_dictionary").set_value(key)
    at.number_input(key="lab_index").set_value(1)
    at.button(key="lab_add").click().run()
    # The features judged relevant start chosen (the planted micro world has some); the added one joins them.
    relevant = [f"{layer}/{size}/{f}" for (layer, size), fs in sorted(live.relevant.items()) for f in sorted(fs)]
    added = f"{key[0]}/{key[1]}/1"
    assert at.multiselect(key="lab_features").value == list(dict.fromkeys([*relevant, added]))
    at.multiselect(key="lab_features").set_value([added]).run()
    at.number_input(key="lab_samples").set_value(4)
    at.number_input(key="lab_tokens").set_value(10)
    at.button(key="lab_run").click().run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert len(table) == 4
    prompts = at.multiselect(key="lab_heldout").value
    from lfp_engine.validation.interventions import Intervention

    expected = live.compare_generations(prompts, Intervention(ablate={key: (1,)}), 4, 10, 0)
    assert table["modified"].tolist() == expected.samples["modified"].tolist()
    assert table["unmodified"].tolist() == expected.samples["unmodified"].tolist()
    assert metrics(at)["Paired t-test"] == p_value(expected.comparison.p_value)


def test_lab_refuses_a_feature_out_of_range_and_a_nan_strength(open_app, live_app_run, live):
    at = open_app(live_app_run, "views/lab.py")
    key = sorted(live.saes)[0]
    at.selectbox(key="lab_dictionary").set_value(key)
    at.number_input(key="lab_index").set_value(live.saes[key].d_sae)
    at.button(key="lab_add").click().run()
    assert not at.exception and "out of range" in at.error[0].value
    at.number_input(key="lab_index").set_value(0)
    at.button(key="lab_add").click().run()
    at.radio(key="lab_mode").set_value("steer").run()
    at.number_input(key="lab_strength").set_value(float("nan"))  # Streamlit keeps the last finite value
    at.button(key="lab_run").click().run()
    assert not at.exception and not at.error
    assert at.number_input(key="lab_strength").value == 10.0 and "strength 10" in at.subheader[-1].value
    # what reaches the engine otherwise (an API call) is refused: tests/test_serving.py


def test_lab_with_typed_prompts_and_none_left(open_app, live_app_run):
    at = open_app(live_app_run, "views/lab.py")
    at.radio(key="lab_source").set_value("my own").run()
    at.text_area(key="lab_typed").set_value("  \n\n").run()
    at.button(key="lab_run").click().run()
    assert not at.exception and "no prompts" in at.error[0].value


def answer(at, choice: int) -> None:
    (radio,) = [r for r in at.radio if str(r.key).startswith("quiz_choice")]
    radio.set_value(choice)
    (submit,) = [b for b in at.button if "Save answer" in b.label]
    submit.click().run()


def test_quiz_stores_answers_and_updates_its_figures(open_app, live_app_run):
    store = RunStore(live_app_run)
    questions = store.read("annotation_questions", order_by="question_id")
    at = open_app(live_app_run, "views/quiz.py")
    assert "enter your name first" in texts(at).lower()
    at.text_input(key="quiz_name").set_value("  Ada <b>L</b> ").run()
    correct = int(questions["correct_option"].iloc[0])
    answer(at, correct)
    assert not at.exception and not at.error
    rows = store.read("annotations", "annotator = ?", ["Ada <b>L</b>"])
    assert rows["question_id"].tolist() == [questions["question_id"].iloc[0]] and rows["is_correct"].all()
    assert "Saved Ada <b>L</b>'s answer" in at.success[0].value
    assert at.selectbox(key="quiz_question_Ada <b>L</b>").value == 1  # on to the next question
    answer(at, len(questions["options"].iloc[1]) - 1)  # none of the above
    mine = store.read("annotations", "annotator = ?", ["Ada <b>L</b>"])
    assert mine["is_correct"].tolist() == [True, False] and mine["chose_none"].tolist() == [False, True]
    everyone = store.read("annotations")  # the figures cover every annotator (other tests answer too)
    figures = metrics(at)
    assert figures["Answers"] == num(len(everyone))
    assert figures["Right explanation chosen"] == percent(everyone["is_correct"].mean())
    assert figures["Chose “none of the above”"] == percent(everyone["chose_none"].mean())


def test_quiz_says_when_the_store_stays_busy(open_app, live_app_run, monkeypatch):
    monkeypatch.setattr(annotation, "ANSWER_RETRY_S", 0.3)
    at = open_app(live_app_run, "views/quiz.py")
    at.text_input(key="quiz_name").set_value("Busy").run()
    holder = duckdb.connect(str(RunStore(live_app_run).path), read_only=True)
    try:
        answer(at, 0)
    finally:
        holder.close()
    assert not at.exception and "stayed busy" in at.error[0].value
    assert RunStore(live_app_run).read("annotations", "annotator = ?", ["Busy"]).empty


def test_validation_page_shows_the_stored_tables(open_app, live_app_run):
    store = RunStore(live_app_run)
    at = open_app(live_app_run, "views/validation.py")
    assert not at.error
    frequency = store.read("feature_frequency")
    test = frequency[frequency["compared_with"] == "matched_shared"].iloc[0]
    shown = metrics(at)
    assert shown["Relevant > matched (one-sided)"] == p_value(test["p_value"])
    ablation = store.read("ablation_results")
    rows = ablation.set_index(["condition", ablation["compared_with"].fillna("")])
    assert shown["Mean reward, nothing ablated"] == num(rows.loc[("none", ""), "mean_reward"])
    assert shown["Relevant < random (paired)"] == p_value(rows.loc[("relevant", "random"), "p_value"])
    captions = " ".join(c.value for c in at.caption)
    assert "chosen by the probe itself" in captions and "matched to them in density" in captions
    shown_notes = {i.value for i in at.info}
    assert set(ablation["note"].dropna()) | set(frequency["note"].dropna()) <= shown_notes  # reasons, not bare NaN
    tables = [d.value for d in at.dataframe]
    assert sorted(tables[1]["condition"]) == sorted(ablation["condition"])
    assert list(tables[1]["p-value"])[3] == p_value(rows.loc[("relevant", "random"), "p_value"])
    summary = store.read("explanation_summary")
    assert sorted(tables[-1]["n_relevant"]) == sorted(summary["n_relevant"])
