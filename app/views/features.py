"""Feature browser: every feature of one dictionary, with what it is said to mean and how
trustworthy it looks; search, filter and sort happen in SQL, one page of rows at a time."""

import math
from dataclasses import replace

import streamlit as st

from app import ui
from app.data import FEATURE_SORTS, RELEVANCE, FeatureQuery
from lfp_engine.sae.keys import FeatureKey
from lfp_engine.report.formatting import num

PAGE_SIZE = 50

run = ui.current_run()
st.title("Feature browser")
ui.explain("Each row is one feature of a sparse autoencoder: a direction in the layer's activations that fires "
           "on some pattern in the text. Pick a row to open the feature.")
if not ui.needs(run, "features", what="The feature browser"):
    st.stop()

model = ui.model_picker(run.feature_models(), key="browser_model", persist_state="session")
dictionaries = run.dictionaries(model)
labels = {(int(r.layer), int(r.dict_size)): f"layer {r.layer}, {r.dict_size} features ({r.n_explained} explained)"
          for r in dictionaries.itertuples()}
layer, dict_size = st.selectbox("Dictionary", list(labels), format_func=labels.get, key="browser_dictionary",
                                persist_state="session")

search_col, relevance_col, source_col, shared_col = st.columns([3, 2, 2, 1.2], vertical_alignment="bottom")
search = search_col.text_input("Search explanations", key="browser_search", persist_state="session",
                               placeholder="e.g. positive adjectives")
relevance = relevance_col.selectbox("Relevance to the task", RELEVANCE, key="browser_relevance",
                                    persist_state="session")
sources = run.explanation_sources(model, layer, dict_size)
source = source_col.selectbox("Explainer", [None, *sources], key="browser_source", persist_state="session",
                              format_func=lambda s: "any" if s is None else s)
shared_only = shared_col.checkbox("Shared only", key="browser_shared", persist_state="session",
                                  help="Only features with a close twin in the other dictionary of this layer")
sort_col, order_col, page_col = st.columns([3, 2, 2], vertical_alignment="bottom")
sort = sort_col.selectbox("Sort by", list(FEATURE_SORTS), key="browser_sort", persist_state="session")
descending = order_col.toggle("Highest first", value=True, key="browser_descending", persist_state="session")

query = FeatureQuery(model=model, layer=layer, dict_size=dict_size, search=search, relevance=relevance,
                     shared_only=shared_only, source=source, sort=sort, descending=descending, limit=PAGE_SIZE)
total = run.count_features(query)
n_pages = max(1, math.ceil(total / PAGE_SIZE))
# A new search or filter starts again at page 1: the page widget's key names the view it pages through.
page = page_col.number_input(f"Page (of {n_pages})", min_value=1, max_value=n_pages, value=1, step=1,
                             key=f"browser_page_{hash(query)}")
query = replace(query, offset=(int(page) - 1) * PAGE_SIZE)
rows = run.browse_features(query)

if dictionaries.loc[(dictionaries["layer"] == layer) & (dictionaries["dict_size"] == dict_size),
                    "n_explained"].iloc[0] == 0:
    st.info(f"No feature of this dictionary is explained yet. {ui.how_to_fill(run, 'feature_explanations')}")
st.markdown(f"**{num(total)}** features match" + (f"; rows {num(query.offset + 1)} to "
                                                   f"{num(query.offset + len(rows))}" if total else "."))
event = st.dataframe(
    rows, hide_index=True, on_select="rerun", selection_mode="single-row", key="browser_table", height=600,
    column_config={
        "feature": st.column_config.NumberColumn("feature", format="%d"),
        "explanation": st.column_config.TextColumn("explanation", width="large"),
        "explanation_source": "explainer",
        "relevance": st.column_config.CheckboxColumn("relevant"),
        "simulation_score": st.column_config.NumberColumn("simulation score", format="%.2f"),
        "detection_score": st.column_config.NumberColumn("detection score", format="%.2f"),
        "twin_feature": st.column_config.NumberColumn("twin", format="%d"),
        "twin_cosine": st.column_config.NumberColumn("twin similarity", format="%.3f"),
        "is_shared": st.column_config.CheckboxColumn("shared"),
        "density": st.column_config.NumberColumn("density", format="percent"),
        "max_activation": st.column_config.NumberColumn("max activation", format="%.3f"),
        "n_firing": st.column_config.NumberColumn("tokens fired on", format="%d"),
    })
ui.explain("Relevant: related to the tuning task, as an LLM judged it or, for explainer `offline`, as the lexicon "
           "says: the feature's activation follows the lexicon value of the tokens it fires on (no LLM involved). "
           "Offline explanations name the word class, polarity and context of the top tokens, so searches such as "
           "'positive adjectives' or 'numbers' find them. Simulation score: how "
           "well activations predicted from the explanation alone match the real ones (correlation). Twin "
           "similarity: cosine between this feature and its closest feature in the other dictionary. Density: "
           "share of held-out tokens the feature fires on.")
if event.selection.rows:
    picked = rows.iloc[event.selection.rows[0]]
    ui.open_feature(FeatureKey(model, layer, dict_size, int(picked["feature"])))
