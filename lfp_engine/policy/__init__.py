"""The policy lens: what tuning taught the model to prefer to write (docs/method.md, "The policy lens").

The paper's probe (sections 3.3, 4.1) reads how the tuned model *represents* a word it reads. What
KL-regularised RL and DPO change first is what the model *prefers to write*, and that has a closed
form: their optimum is pi*(y|x) = pi_base(y|x) exp(r(x,y)/beta) / Z(x), so beta log pi/pi_base is
the reward the policy implicitly learned, up to a term of the prompt alone (Rafailov et al. 2023;
per token, Rafailov et al. 2024). It needs no probe, no SAE and no lexicon: the two models alone,
in the reward's units. `log_ratio.py` reads it per token, `text.py` per word and text of any text,
`triples.py` on the contrastive triples (element minus neutral, where the prompt's term cancels),
`word_values.py` per word, with its intervals and its measures against the lexicon.
"""
