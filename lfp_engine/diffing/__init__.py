"""Model diffing (after the paper: Lindsey et al. 2024, Minder et al. 2025): a crosscoder over the base and tuned models, its latents tagged by what tuning did to them, and tied to the reward."""
