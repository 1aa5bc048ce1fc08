"""Fine-tuning (paper 3.1) and what it changed: the reward, RLOO/DPO, layer divergence (3.2)."""
