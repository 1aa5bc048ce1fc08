"""Reading what a dashboard page shows under Streamlit's AppTest (conftest's `open_app` starts it)."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

MAIN = Path(__file__).resolve().parents[1] / "app" / "main.py"


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def texts(at: AppTest) -> str:
    return "\n".join(e.value for e in [*at.markdown, *at.caption, *at.info, *at.warning, *at.error, *at.success])


def chart_data(at: AppTest) -> list[list["object"]]:
    """Each chart's datasets (pandas frames, as the page handed them to Vega-Lite), in page order."""
    import pyarrow as pa

    return [[pa.ipc.open_stream(d.data.data).read_pandas() for d in chart.proto.datasets]
            for chart in at.get("vega_lite_chart")]


def frame_with(at: AppTest, *columns: str):
    """The first table the page shows (`st.dataframe`) that has all of `columns`."""
    return next(d.value for d in at.dataframe if set(columns) <= set(d.value.columns))
