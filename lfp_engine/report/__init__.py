"""The answers a run gives: the verdict, the divergence report, what tuning taught the model to write."""
