"""Model diffing (after the paper): a crosscoder over base and tuned, its latents tagged and tied to the reward."""
