"""The probe on the implicit reward (paper 3.3, 4.1): contrastive triples, encoding, fit, measures."""
