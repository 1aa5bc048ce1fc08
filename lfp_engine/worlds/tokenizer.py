"""A byte-level BPE tokenizer trained on the offline world's corpus.

Byte-level BPE (GPT-2 / Pythia style) so any text, emoji and control characters included, can
be encoded without an unknown token. Frequent words become single tokens, rarer lexicon words
split into several: the later stages must handle both, as they must for Pythia's tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"
PAD = "<|padding|>"


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train on `texts`; the result is a Hugging Face fast tokenizer with EOS and PAD set.

    `tokenizers`' BPE trainer is deterministic for a fixed input order, so a seeded corpus gives
    the same vocabulary on every run.
    """
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=EOS,
        eos_token=EOS,
        unk_token=EOS,
        pad_token=PAD,
        model_max_length=1_000_000,
    )
