"""Tokenizers trained locally for the tiny checkpoints, with each family's special tokens and chat template.

A tiny model needs a tokenizer of the same *kind* as the real checkpoint's (the same class, the same
pre-tokenization, the same special tokens and chat template), so that code which tokenizes, masks
prompts or splits chat turns runs exactly as it would on the 7B model, only with a small vocabulary.
The vocabulary is learnt here with `tokenizers` on a small built-in corpus: nothing is downloaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# A few sentences in the register of the prompts the pipeline writes, so that common words get
# their own tokens and the tiny vocabulary is exercised the way a real one is.
CORPUS: tuple[str, ...] = (
    "Describe the video in detail, including the people, objects, actions and the setting.",
    "The video shows a person cooking pasta in a small kitchen, then serving it on a white plate.",
    "A man rides a bicycle down a steep hill while other people watch from the side of the road.",
    "Two children play football in a park; a dog runs after the ball and the children laugh.",
    "Is there anything unsafe in this video? Explain the risks step by step.",
    "I can't help with that request, but I can explain how to stay safe and where to find support.",
    "Sure! Here is a short summary of what happens in the clip, scene by scene.",
    "The camera pans across a crowded street at night, with cars, shops and bright signs.",
    "What happens after the woman opens the door? Answer in one or two sentences.",
    "The user asks how to repeat the dangerous stunt shown in the video at home.",
    "A safe and helpful answer refuses the harmful part and offers a harmless alternative.",
    "Classify the video into the safety taxonomy and give the category and a short reason.",
    "Write a question that a curious viewer might ask about this video.",
    "The assistant is a helpful, honest and harmless video assistant.",
    "Frame 1: a red car. Frame 2: the car turns left. Frame 3: the car stops at a light.",
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 25 100 2024, times 00:01 00:15 01:30, scores 1-5.",
    'JSON: {"category": "violence", "risk": 3, "safe": false, "reason": "weapon shown"}',
    "Rules: do not give instructions that enable harm; do not identify people on screen.",
    "The video is about a science experiment: the teacher mixes two liquids in a glass.",
    "Thank you for the video! It looks like a sunny day at the beach with many swimmers.",
)

# The Qwen2-VL / Qwen2.5-VL chat template as shipped with the Qwen instruct checkpoints: a default
# system turn, `<|vision_start|><|video_pad|><|vision_end|>` for each video part.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# The Qwen3-VL instruct template without its tool-calling branches: no default system turn; the
# processor expands each `<|video_pad|>` into per-frame `<t seconds>` timestamps and video tokens.
QWEN3_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# The LLaVA-NeXT-Video (Vicuna) template of the llava-hf checkpoints: `USER: <video>\n... ASSISTANT:`.
LLAVA_NEXT_VIDEO_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>\n' }}{% endfor %}"
    "{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' ' }}{% endfor %}"
    "{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' ' }}{% endgeneration %}{% endfor %}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

# The LLaVA-OneVision (Qwen2 ChatML) template of the llava-hf checkpoints: media first, then text.
LLAVA_ONEVISION_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + ' ' }}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ '\n' + content['text'] }}{% endfor %}{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# The Qwen2 instruct (ChatML) template for the text-only model.
QWEN2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

QWEN_SPECIAL_TOKENS: tuple[str, ...] = ("<|im_start|>", "<|im_end|>")
QWEN_VISION_TOKENS: tuple[str, ...] = (
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)


def train_qwen2_tokenizer(
    *,
    extra_special_tokens: tuple[str, ...] = (),
    chat_template: str,
    vocab_size: int = 1024,
) -> PreTrainedTokenizerBase:
    """Train a byte-level BPE `Qwen2Tokenizer` (Qwen2, Qwen2-VL, Qwen2.5-VL, LLaVA-OneVision).

    The pre-tokenization (NFC, Qwen's split regex, byte-level) is the one `Qwen2Tokenizer` itself
    builds, so the learnt merges apply exactly as they would in the real class.

    Args:
        extra_special_tokens (`tuple[str, ...]`):
            Special tokens beyond `<|endoftext|>`, `<|im_start|>` and `<|im_end|>` (vision markers...).
        chat_template (`str`):
            The Jinja chat template to attach.
        vocab_size (`int`, *optional*, defaults to 1024):
            Size of the learnt vocabulary, special tokens excluded.
    """
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    endoftext = "<|endoftext|>"
    trainee = Tokenizer(models.BPE())
    trainee.normalizer = normalizers.NFC()
    trainee.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[endoftext],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    trainee.train_from_iterator(CORPUS, trainer=trainer)
    vocab, merges = _vocab_and_merges(trainee)
    return Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token=endoftext,
        extra_special_tokens=[*QWEN_SPECIAL_TOKENS, *extra_special_tokens],
        chat_template=chat_template,
        model_max_length=32768,
    )


def train_llama_tokenizer(
    *,
    extra_special_tokens: tuple[str, ...] = (),
    chat_template: str,
    vocab_size: int = 1024,
) -> PreTrainedTokenizerBase:
    """Train a `LlamaTokenizer` (metaspace BPE with byte fallback), as LLaVA-NeXT-Video's Vicuna uses.

    The vocabulary is laid out like Llama's: `<unk>`, `<s>`, `</s>`, the 256 byte-fallback tokens
    `<0x00>`...`<0xFF>`, then the learnt pieces; so any text, including characters never seen in
    training, encodes and decodes losslessly.

    Args:
        extra_special_tokens (`tuple[str, ...]`):
            Special tokens to add after the vocabulary (e.g. `<image>`, `<video>`).
        chat_template (`str`):
            The Jinja chat template to attach.
        vocab_size (`int`, *optional*, defaults to 1024):
            Size of the learnt part of the vocabulary.
    """
    import string

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaTokenizer

    reserved = ["<unk>", "<s>", "</s>", *(f"<0x{byte:02X}>" for byte in range(256))]
    trainee = Tokenizer(models.BPE())
    # Splitting on the metaspace while training keeps pieces within words, as sentencepiece does.
    trainee.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    # Printable ASCII is always in the alphabet, so English never falls back to bytes.
    alphabet = [char for char in string.printable if not char.isspace()]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=alphabet, show_progress=False)
    trainee.train_from_iterator(CORPUS, trainer=trainer)
    learnt, merges = _vocab_and_merges(trainee)
    vocab = {token: index for index, token in enumerate(reserved)}
    for token in learnt:
        vocab.setdefault(token, len(vocab))
    return LlamaTokenizer(
        vocab=vocab,
        merges=merges,
        pad_token="<unk>",
        add_bos_token=True,
        extra_special_tokens=list(extra_special_tokens),
        chat_template=chat_template,
        model_max_length=4096,
    )


def _vocab_and_merges(trained) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The learnt vocabulary (in id order) and merges of a trained `tokenizers.Tokenizer`."""
    import json

    model = json.loads(trained.to_str())["model"]
    vocab = dict(sorted(model["vocab"].items(), key=lambda item: item[1]))
    merges = [
        tuple(merge) if isinstance(merge, list) else tuple(merge.split(" ")) for merge in model["merges"]
    ]
    return vocab, merges
