"""The run: its settings, presets and tasks, the store and manifest, atomic writes, seeds, errors."""
