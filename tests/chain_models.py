"""Tiny models whose greedy answer is known: a one-layer Llama whose next token depends on the current token only
(attention and MLP outputs zeroed, one-hot embeddings, norms at 1), so its output is the same under transformers and
llama.cpp (Q8_0 keeps the 0/1/10 weights exact) and a test can say in advance what it writes."""

from pathlib import Path


def save_chain_model(folder: Path, tokenizer, pairs: list[tuple[int, int]], *, eos_token_id: int,
                     max_positions: int = 4096) -> Path:
    """A model over `tokenizer` that answers token `current` with token `following` for each pair (at most 64
    pairs), saved with the tokenizer in `folder`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    hidden = 64
    assert len(pairs) <= hidden and len({current for current, _ in pairs}) == len(pairs), pairs
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for norm in (model.model.norm, *(m for layer in model.model.layers
                                         for m in (layer.input_layernorm, layer.post_attention_layernorm))):
            norm.weight.fill_(1.0)
        for k, (current, following) in enumerate(pairs):
            model.model.embed_tokens.weight[current, k] = 1.0
            model.lm_head.weight[following, k] = 10.0
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
