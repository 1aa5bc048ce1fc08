"""Compare runs: two runs side by side on their headline numbers and on where tuning changed them."""

from pathlib import Path

import pandas as pd
import streamlit as st

from app import charts, ui
from app.data import RunData
from lfp_engine.report.formatting import num, p_number, percent, signed
from app.runs import run_label

# (headline key, label, how to write it): the numbers runs are compared on.
ROWS = [
    ("preset", "Preset", str), ("task", "Task", str), ("seed", "Seed", num),
    ("reward_metric", "Reward measured", str), ("reward_base", "Mean reward, base model", num),
    ("reward_tuned", "Mean reward, tuned model", num), ("reward_difference", "Reward gain from tuning", signed),
    ("reward_p_value", "p-value of the gain", p_number), ("kl_to_base", "Drift from the base model (KL)", num),
    ("chosen_layers", "Layers studied", str),
    ("sae_mean_variance_explained", "SAE variance explained (mean)", num),
    ("sae_mean_l0", "SAE active features per token (mean)", num),
    ("sae_loss_recovered", "SAE loss recovered (mean)", str),
    ("probe_kendall_tau", "Probe Kendall tau on test words", num),
    ("probe_kendall_tau_p_value", "p-value of the Kendall tau", p_number),
    ("probe_accuracy", "Probe accuracy on test pairs", percent),
]

run = ui.current_run()
st.title("Compare runs")
ui.explain("Two runs side by side: the same method under another seed, setting, task or model. A difference "
           "that holds across seeds is a finding; one that does not is noise.")
others = [r for r in ui.available_runs() if r != Path(run.root)]
if not others:
    st.info(f"Only one run found. Make another to compare with, e.g. `lfp run --preset tiny --out "
            f"{ui.run_label_of(run)}-seed1 --set seed=1`.")
    st.stop()
other = RunData(st.selectbox("Compare with", others, format_func=run_label, key="compare_with",
                             persist_state="session"))
runs = {ui.run_label_of(run): run, ui.run_label_of(other): other}
headlines = {name: r.headline() for name, r in runs.items()}
table = pd.DataFrame({name: [show(getattr(h, key)) if getattr(h, key) is not None else "not run"
                             for key, _, show in ROWS]
                      for name, h in headlines.items()}, index=[label for _, label, _ in ROWS])
st.table(table)
ui.explain("'not run': the stage that measures it has not run in that run; `lfp run --out <run>` fills it in. "
           "Rewards are means over held-out completions; SAE figures are means over the tuned model's "
           "dictionaries.")

st.header("Where tuning changed each model")
with_layers = {name: r for name, r in runs.items() if r.has("layer_divergence")}
for name in runs.keys() - with_layers.keys():
    st.info(f"{name}: {ui.how_to_fill(runs[name], 'layer_divergence')}")
if with_layers:
    relative = st.toggle("Relative to the size of the layer's weights", key="compare_relative",
                         persist_state="session")
    column, title = (("relative", "distance / norm of the base weights") if relative
                     else ("divergence", "parameter distance, base to tuned"))
    st.altair_chart(charts.divergence_lines({n: r.layer_divergence() for n, r in with_layers.items()},
                                            column, title))
    ui.explain("Per layer, how far tuning moved the weights, one line per run; squares mark the layers each run chose "
               "to study.")
