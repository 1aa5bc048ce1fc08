"""Validating the probe (paper 4.2): interventions, ablation (table 6), feature frequency (table 7), and the density-matched controls of both."""
