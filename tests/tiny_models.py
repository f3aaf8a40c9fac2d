"""Test doubles of the LLM: a tiny random Llama-architecture causal LM (SmolLM2's) and a
word-level tokenizer, built in code (nothing downloads), and the same model saved as a local model
directory, which is how the smoke configs' LLM reaches ``ilm.lm.load_llm``.

Not Qwen2: for a directory whose config says ``qwen2``, transformers' ``AutoTokenizer`` rebuilds
the Qwen2 BPE pipeline from the vocabulary instead of loading the saved word-level tokenizer.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ilm.lm import freeze

TINY_WORDS = ("a an the and or but not of to in on with for from by is it this that i you me my "
              "like love hate watch watched seen movie movies film films funny scary sad dark "
              "action comedy drama horror romance thriller sci-fi animation documentary war "
              "western crime fantasy adventure family musical mystery old new classic recent "
              "more less something suggest recommend please thanks yes no because alien space "
              "ship robot love story about 1990 2000 , . ! ?").split()


def tiny_tokenizer(extra_words: tuple[str, ...] = ()):
    """A word-level tokenizer: lower-cased, split on whitespace and punctuation, with <unk>, <pad>,
    <s>, </s> and a hundred-odd movie-chat words."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<pad>", "<s>", "</s>"]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(specials + list(TINY_WORDS) + list(extra_words)))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Punctuation()])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                   bos_token="<s>", eos_token="</s>")


def tiny_lm(vocab_size: int | None = None, hidden: int = 32, layers: int = 2, heads: int = 4,
            seed: int = 0):
    """A random, frozen Llama causal LM and ``tiny_tokenizer()``.

    Args:
        vocab_size: embedding rows; default: the tokenizer's size.
    Returns:
        (model, tokenizer)
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=vocab_size or len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=256, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    return freeze(model), tokenizer


def varied_tiny_lm(scale: float = 0.5, seed: int = 0):
    """``tiny_lm()`` with larger random weights, so that its greedy output depends on the prompt
    (with the default initialisation it writes the same token whatever it reads)."""
    model, tokenizer = tiny_lm()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) * scale)
    return model, tokenizer


def save_tiny_lm(path: str | Path, **kwargs) -> str:
    """``tiny_lm(**kwargs)`` saved (model + tokenizer) as a local model directory; returns its path."""
    model, tokenizer = tiny_lm(**kwargs)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)
