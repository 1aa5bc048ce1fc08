"""The LFP Explorer dashboard (Streamlit): layout, widgets and charts over a run's store.

Entry point `app/main.py`; the store is read through `app.data` only. Importing this package
(or any module of it) starts nothing: Streamlit runs only under `streamlit run` / `lfp app`.
"""
