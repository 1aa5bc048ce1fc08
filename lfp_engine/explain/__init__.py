"""Explanations of features (paper 3.4, appendix G): prompts, explainers, the LLM client, the quiz."""
