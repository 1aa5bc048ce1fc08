"""The run's findings as scenes: one heading, one short sentence and one picture each, for the Story
page's first screen and its guided tour.

The sentences are the engine's (`lfp_engine.report.story`, read from the verdict and the divergence
report); the pictures are `app.charts`' and `app.markup`'s; every number comes from the store through
`app.data`. A scene whose stage has not run says so plainly and names the command that fills it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import streamlit as st

from app import charts, ui
from app.data import RunData
from app.markup import completions, marked_word, quoted
from lfp_engine.report import story
from lfp_engine.report.formatting import rounded
from lfp_engine.run.tasks import TASKS

PLAYGROUND_PAGE, LAB_PAGE = "views/playground.py", "views/lab.py"


@dataclass
class Scene:
    """One finding: `sentence` and `picture` once its stage has run, else `needs`, the table it waits for."""

    key: str
    heading: str
    sentence: str = ""
    picture: Callable[[], None] | None = None
    notes: list[str] = field(default_factory=list)
    """Further short sentences the Story page shows under the picture (the tour shows the sentence only)."""
    needs: str | None = None
    action: tuple[str, str, dict[str, str]] | None = None
    """(button label, page, query parameters): where the scene invites the reader to go next."""

    def show(self, run: RunData, notes: bool = True) -> None:
        """The sentence, the picture and the notes; or, before the stage has run, what fills it."""
        if self.needs is not None:
            st.info(f"This run has not got this far yet. {ui.how_to_fill(run, self.needs)}")
            return
        st.markdown(self.sentence)
        if self.picture is not None:
            self.picture()
        for note in self.notes if notes else ():
            ui.explain(note)


def _task(run: RunData):
    return TASKS.get(run.config()[1].get("task", ""))


def reward_scene(run: RunData) -> Scene:
    """What was trained and what the reward pays, with example words."""
    scene = Scene("reward", "What the model was tuned for")
    spec = _task(run)
    if spec is None:
        scene.sentence = f"The model was tuned for the task `{run.config()[1].get('task')}`."
        return scene
    examples = run.example_words() if spec.reward == "vader" and run.has("world_lexicon") else None
    scene.sentence = story.reward_sentence(spec.reward, spec.method, examples)
    if examples is not None:
        scene.picture = lambda: st.altair_chart(charts.example_words(examples))
    return scene


def tuning_scene(run: RunData) -> Scene:
    """That tuning raised the reward: before and after, with one completion of each model."""
    scene = Scene("tuning", "What tuning did")
    metric = run.reward_metric()
    if metric is None:
        scene.needs = "rlhf_rewards"
        return scene
    rewards = run.rlhf_rewards()
    rows = rewards[rewards["metric"] == metric].set_index("model")
    if not {"base", "tuned"} <= set(rows.index):
        scene.needs = "rlhf_rewards"
        return scene
    base, tuned = float(rows.loc["base", "mean"]), float(rows.loc["tuned", "mean"])
    scene.sentence = story.tuning_sentence(run.verdict().get("reward"), base, tuned)
    sample = story.example_sample(run.rlhf_samples()) if run.has("rlhf_samples") else None

    def picture() -> None:
        st.altair_chart(charts.before_after(base, tuned))
        if sample is not None:
            st.html(completions(str(sample["prompt"]), [
                (f"Before (reward {rounded(sample['base_reward'])}):", str(sample["base_completion"])),
                (f"After (reward {rounded(sample['tuned_reward'])}):", str(sample["tuned_completion"]))]))

    scene.picture = picture
    return scene


def probed(run: RunData) -> str:
    """What the run's probe reads, as a person is told it: 'answers' (preference tasks), else 'words'."""
    accuracy = run.has("probe_metrics") and run.probe_metric("sae", "test", "accuracy") is not None
    return "answers" if accuracy else "words"


def learned_scene(run: RunData) -> Scene:
    """Whether the model learned the feedback: the verdict's two lenses in plain words."""
    scene = Scene("learned", "Did it learn the feedback?")
    verdict = run.verdict()
    writes, inside = verdict.get("policy"), verdict.get("learned")
    if writes is None and inside is None:
        scene.needs = "probe_metrics"
        return scene
    things = probed(run)
    scene.sentence = story.learned_headline(writes, inside, things)
    if writes is not None and inside is not None:
        scene.notes = [story.writes_sentence(writes), story.inside_sentence(inside, things)]
    report = run.divergence_report()
    if not report.empty:
        counts = story.lens_counts(report)
        scene.picture = lambda: st.altair_chart(charts.lens_bars(counts))
    return scene


@dataclass(frozen=True)
class Divergence:
    """The divergence as the page shows it: the report, the word map and the featured word."""

    report: object
    words: object
    featured: story.FeaturedWord | None
    excerpt: story.Excerpt | None
    learned_title: str


def divergence(run: RunData) -> Divergence | None:
    """The divergence report turned into the word map and one featured word; None before the probe stage."""
    report = run.divergence_report()
    if report.empty:
        return None
    kinds = run.word_kinds()
    excerpts = story.word_excerpts(run.word_examples()) if run.has("triples") else {}
    featured = story.featured_word(report, kinds)
    title = ("what tuning taught it to write" if story.has_policy(report) else
             "how it reads the word inside")
    return Divergence(report, story.word_map(report, kinds, excerpts), featured,
                      excerpts.get(featured.word) if featured is not None else None, title)


def divergence_scene(run: RunData, found: Divergence | None, with_map: bool = False) -> Scene:
    """Where what it learned parts from the reward: one word in one sentence (`with_map`: above the word map,
    the word labelled on it, as the tour shows it)."""
    scene = Scene("divergence", "Where it parts from the reward")
    if found is None:
        scene.needs = "word_values"
        return scene
    scene.sentence = story.divergence_headline(found.report)
    if found.featured is not None:
        scene.sentence += " " + story.word_sentence(found.featured)
        kind = run.word_kinds().get(found.featured.word)
        if kind in story.PLANTED_PLAIN:
            scene.notes = [story.PLANTED_PLAIN[kind]]
        if found.excerpt is not None:
            text = found.excerpt
            paid = float(found.featured.row.lexicon_value) > 0
            word = found.featured.word

            def picture() -> None:
                st.html(marked_word(text.text, text.start, text.end, paid))
                if with_map:
                    word_map_picture(found, (word,), height=380)

            scene.picture = picture
    return scene


def word_map_picture(found: Divergence, labelled: tuple[str, ...] = (), height: int = 430) -> None:
    st.altair_chart(charts.word_map(found.words, found.learned_title, labelled, height))


def playground_scene(run: RunData, found: Divergence | None) -> Scene:
    """Try a sentence yourself: the featured sentence's words on the word map, and a way into the playground."""
    scene = Scene("playground", "Try a sentence yourself")
    if not run.has("probe_weights"):  # what the playground itself needs
        scene.needs = "probe_weights"
        return scene
    scene.sentence = ("Type any sentence in the playground to see, word by word, what the reward pays and what the "
                      "model learned.")
    text = found.excerpt.text if found is not None and found.excerpt is not None else None
    if found is not None and text is not None:
        shown = tuple(story.words_in(text, found.words["word"]))
        if shown:
            words = found.words[found.words["word"].isin(shown)]

            def picture() -> None:
                st.html(quoted(text))
                st.altair_chart(charts.sentence_words(words, shown, found.learned_title))

            scene.picture = picture
    scene.action = ("Open the playground", PLAYGROUND_PAGE, {"text": text} if text else {})
    return scene


def lab_scene(run: RunData) -> Scene:
    """Switch a feature off: what switching off the features tied to the reward did, and a way into the lab."""
    scene = Scene("lab", "Switch a feature off")
    if not run.has("ablation_results"):
        scene.needs = "ablation_results"
        return scene
    results = run.ablation_results()
    sentence = story.ablation_sentence(results)
    scene.sentence = (sentence or "This run found no feature tied to the reward to switch off.") + \
        " In the lab you can switch off any feature and read what the model writes."
    if sentence is not None:
        scene.picture = lambda: st.altair_chart(charts.ablation_bars(results))
    scene.action = ("Open the lab", LAB_PAGE, {})
    return scene


def tour(run: RunData) -> list[Scene]:
    """The guided tour's screens, in order."""
    found = divergence(run)
    return [reward_scene(run), tuning_scene(run), learned_scene(run), divergence_scene(run, found, with_map=True),
            playground_scene(run, found), lab_scene(run)]
