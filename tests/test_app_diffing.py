"""The "What tuning changed" page under AppTest, and crosscoder latents in the lab.

On the real micro run (a few tuning steps: the crosscoder rightly finds no tuned-only latent, and
the page says so), and on a copy carrying FIXTURE tuned-only latents (tests/crosscoder_fixture.py)
for the full page: counts, ranking, plain sentences shown as text, the chosen latent, the link to
the lab. The lab's crosscoder ablation runs on a whole copy of the micro run (`live_app_run`).
"""

from __future__ import annotations

import pytest

from lfp_engine.run.store import RunStore
from lfp_engine.report.formatting import num, signed
from lfp_engine.sae.keys import DictionaryKey
from lfp_engine.validation.interventions import Intervention

from .apptest import metrics, texts
from .contract_fixture import MARKUP_EXPLANATION, copy_run
from .crosscoder_fixture import MARKUP_SENTENCE, add_crosscoder_fixture

pytestmark = pytest.mark.slow
PAGE = "views/diffing.py"


@pytest.fixture(scope="module")
def diffing_runs(micro_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("diffing") / "runs"
    return {"micro": copy_run(micro_run, root / "micro"),
            "fixture": add_crosscoder_fixture(copy_run(micro_run, root / "fixture"))}


def test_the_page_on_the_micro_run_counts_tags_and_says_nothing_was_created(open_app, diffing_runs):
    run = diffing_runs["micro"]
    at = open_app(run, PAGE)
    assert at.title[0].value == "What tuning changed" and not at.error
    tags = RunStore(run).query("SELECT tag, count(*) AS n FROM crosscoder_latents GROUP BY tag").set_index("tag")["n"]
    shown = metrics(at)
    for tag in ("tuned-only", "base-only", "shared", "changed"):
        assert shown[f"{tag.capitalize()} latents"] == num(int(tags.get(tag, 0)))
    pointer = "What it taught the model shows instead in what the model writes"
    links = {(link.proto.page, link.proto.label) for link in at.get("page_link")}  # '' is the default page
    if tags.get("tuned-only", 0) == 0:  # then the latents most tied to the reward are shown instead
        assert "tuning created nothing" in texts(at)
        assert "There are no tuned-only latents" in texts(at) and "confirms 0" not in texts(at)
        assert pointer in texts(at) and links == {("", "Open the Story"), ("lexicon", "Open the Lexicon")}
        top = RunStore(run).query("SELECT feature FROM crosscoder_latents WHERE top_rank IS NOT NULL ORDER BY top_rank")
        assert at.dataframe(key="diffing_top").value["latent"].tolist() == top["feature"].tolist()


def test_the_page_ranks_tuned_only_latents_and_shows_one_when_picked(open_app, diffing_runs):
    run = diffing_runs["fixture"]
    at = open_app(run, PAGE)
    assert not at.error and "shows instead in what the model writes" not in texts(at)  # tuning made some
    top = RunStore(run).query("SELECT * FROM crosscoder_latents WHERE top_rank IS NOT NULL ORDER BY top_rank")
    table = at.dataframe(key="diffing_top").value
    assert table["latent"].tolist() == top["feature"].tolist()
    assert table["reward r"].tolist() == pytest.approx(top["reward_r"].tolist())
    first = top.iloc[0]
    assert at.subheader[-1].value.startswith(f"Latent {first['feature']} · layer {first['layer']}")
    assert metrics(at)["Reward correlation r"] == signed(first["reward_r"])
    assert metrics(at)["Reward change when switched off"] != "–"
    html = "".join(h.proto.body for h in at.get("html"))
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold</b>" not in html  # the stored sentence stays text
    assert MARKUP_SENTENCE not in html
    assert MARKUP_EXPLANATION not in html and "&lt;script&gt;alert(&#x27;explanation&#x27;)" in html


def test_the_lab_accepts_a_crosscoder_latent_from_the_link(open_app, live_app_run):
    at = open_app(live_app_run, "views/lab.py", query={"crosscoder": "0/128/5"})
    assert "crosscoder 0/128/5" in at.multiselect(key="lab_features").value


def test_switching_off_crosscoder_latents_in_the_live_run(live_app_run):
    """Through `LiveRun`, as the lab calls it: nothing ablated gives the unmodified completions;
    ablating the latents that fire most changes some of them."""
    from lfp_engine.serving import LiveRun

    server = LiveRun(live_app_run)
    try:
        assert server.paired is not None
        key = sorted(server.paired.crosscoders)[0]
        latents = RunStore(live_app_run).query("SELECT feature FROM crosscoder_latents WHERE layer = ? ORDER BY "
                                               "density DESC LIMIT 8", [key.layer])["feature"].tolist()
        prompts = server.heldout_prompts[:4]
        same = server.compare_generations(prompts, Intervention(ablate_crosscoder={key: ()}), 4, 12, seed=1)
        assert (same.samples["unmodified"] == same.samples["modified"]).all()
        changed = server.compare_generations(prompts, Intervention(ablate_crosscoder={key: tuple(latents)}), 4, 12,
                                             seed=1)
        assert (changed.samples["unmodified"] != changed.samples["modified"]).any()
        with pytest.raises(Exception, match="no crosscoder"):
            server.compare_generations(prompts, Intervention(ablate_crosscoder={DictionaryKey(key.layer, 7): (0,)}),
                                       2, 4)
    finally:
        server.close()
