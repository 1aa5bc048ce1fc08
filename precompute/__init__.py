"""The `lfp` command and the stages that fill a run's store, each a thin layer over lfp_engine."""
