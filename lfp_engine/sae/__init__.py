"""Sparse autoencoders (paper 3.2, 3.4): activations, the SAE and its training, metrics, features."""
