"""LFP Explorer's engine: the science of "Interpreting Learned Feedback Patterns in LLMs".

One module per concept of the method (reward, rlhf, divergence, ...). Functions take and
return tensors and frames; nothing here prints, prompts, or downloads behind the caller's back.
"""

__version__ = "0.1.0"
