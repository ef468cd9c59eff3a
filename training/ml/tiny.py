"""A tiny random chat model for tests and CI: builds offline in about a second.

Same shape as the real base model (SmolLM2-135M-Instruct): a Llama causal LM, a byte-level
BPE tokenizer with `<|endoftext|>` (id 0, pad), `<|im_start|>` and `<|im_end|>` (eos), and a
ChatML chat template. The weights are random, so the text it writes is noise; what matters is
that every stage (generate, reward, PPO, evaluate) runs on it exactly as on the real model.

    python -m training.ml.tiny var/models/tiny
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [PAD_TOKEN, IM_START, IM_END]  # ids 0, 1, 2

# SmolLM2's template without its default system prompt (which would make every tiny test
# sequence 20 tokens longer for nothing).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

VOCAB_SIZE = 768

# Plain English that covers the words tests use; byte-level BPE still encodes anything.
_CORPUS = """\
The quick brown fox jumps over the lazy dog.
A good answer is short, clear and correct. A bad answer is long, vague or wrong.
The user asks a question and the assistant gives a helpful answer.
You are a helpful assistant. Please answer the question below.
What is the capital of France? The capital of France is Paris.
How many legs does a cat have? A cat has four legs.
Write a poem about the sea. The sea is blue and deep and wide.
Yes, I can help with that. No, I do not know the answer to that question.
Thank you for your question. Here is a list of steps: first, second, third, and last.
The weather today is sunny with a light wind from the west.
Numbers: one two three four five six seven eight nine ten 0 1 2 3 4 5 6 7 8 9.
Colors: red green blue yellow orange purple black white grey brown pink.
Animals: cat dog bird fish horse cow sheep goat lion tiger bear mouse.
Food: apple banana bread cheese rice soup tea coffee water milk sugar salt.
Please explain why the sky is blue. Light from the sun is scattered by the air.
Summarize the text in one sentence. The text says that practice makes progress.
Translate hello into French. Bonjour means hello.
system user assistant: hello, how are you? I am fine, thanks.
"""


def build_tiny_model(out_dir: str | Path, *, seed: int = 0) -> str:
    """Build (or reuse) the tiny model in `out_dir` and return its path as a string.

    Cache-friendly: if `out_dir` already holds a built model it is returned untouched. The
    model is written to a temporary sibling folder and renamed into place, so a crash or a
    concurrent builder never leaves a half-written folder behind.
    """
    out = Path(out_dir)
    if _is_model_folder(out):
        return str(out)

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    # ---- tokenizer: byte-level BPE trained on the built-in corpus ----
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS.splitlines() * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=IM_END,
        pad_token=PAD_TOKEN,
        bos_token=None,
        unk_token=None,
        additional_special_tokens=[IM_START],
        model_max_length=512,
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    pad_id = tokenizer.convert_tokens_to_ids(PAD_TOKEN)
    eos_id = tokenizer.convert_tokens_to_ids(IM_END)
    assert pad_id == 0, pad_id

    # ---- model: random Llama, 2 layers, hidden 64 ----
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = pad_id
    model.generation_config.eos_token_id = eos_id
    model.generation_config.bos_token_id = None

    # ---- save atomically ----
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if _is_model_folder(out):  # another process finished first
            shutil.rmtree(tmp)
            return str(out)
        if out.exists():
            shutil.rmtree(out)  # an empty or broken folder: replace it
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return str(out)


def _is_model_folder(path: Path) -> bool:
    return (
        (path / "config.json").is_file()
        and (path / "tokenizer.json").is_file()
        and any(path.glob("*.safetensors"))
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="folder to write the model into")
    parser.add_argument("--seed", type=int, default=0, help="seed for the random weights")
    args = parser.parse_args(argv)
    print(build_tiny_model(args.out_dir, seed=args.seed))


if __name__ == "__main__":
    main()
