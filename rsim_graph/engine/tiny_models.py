"""Tiny models for an offline world: a character tokenizer and small Llama configs.

The tokenizer is character-level (digits must stay single tokens for arithmetic), except that each
strategy prompt of the default library is one added token, so injected text costs one position.
It is a `PreTrainedTokenizerFast` with a chat template, so `AutoTokenizer.from_pretrained` loads it.
"""

from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, PreTrainedTokenizerFast

from rsim_graph.strategies import StrategyLibrary

SPECIAL = ["<pad>", "<unk>", "<|end|>", "<|user|>", "<|assistant|>"]
CHARS = string.ascii_letters + string.digits + string.punctuation + " \n"
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}"
    "{% if m['role'] == 'assistant' %}<|end|>{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tokenizer(library: StrategyLibrary | None = None) -> PreTrainedTokenizerFast:
    """A character tokenizer with the library's injected prompts as single tokens."""
    library = library or StrategyLibrary.default()
    vocab = {tok: i for i, tok in enumerate(SPECIAL + list(CHARS))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        unk_token="<unk>",
        eos_token="<|end|>",
        additional_special_tokens=["<|user|>", "<|assistant|>"],
    )
    fast.add_tokens([library.render(s.id) for s in library])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_config(vocab_size: int, *, hidden: int = 128, layers: int = 4, heads: int = 4, max_len: int = 1024) -> LlamaConfig:
    """A small Llama, sized to train on 2 CPU cores in minutes.

    Llama rather than Qwen2 because transformers 5 loads a Qwen2 checkpoint's tokenizer as its own
    byte-level BPE class whatever the files say, which would break this character tokenizer.
    """
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 3,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_len,
        tie_word_embeddings=True,
        pad_token_id=0,
        eos_token_id=2,
        bos_token_id=None,
    )
