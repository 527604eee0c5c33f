"""A Llama-3-style chat template for tokenizers this project builds itself.

Real Llama 3.2 tokenizers ship their own template; the tiny tokenizers trained here do not, so
the tiny-model builder installs this one (`tokenizer.chat_template = LLAMA3_CHAT_TEMPLATE`).
It uses Llama 3's header tokens, so prompts have the same shape for tiny and real models, and it
marks assistant turns with `{% generation %}` so trainers can put the loss on responses only
(`apply_chat_template(..., return_assistant_tokens_mask=True)`).
"""

from __future__ import annotations

BEGIN_OF_TEXT = "<|begin_of_text|>"
END_OF_TEXT = "<|end_of_text|>"
START_HEADER = "<|start_header_id|>"
END_HEADER = "<|end_header_id|>"
END_OF_TURN = "<|eot_id|>"

# Tokenizers built for the template must have these as special tokens (one id each).
LLAMA3_SPECIAL_TOKENS: tuple[str, ...] = (BEGIN_OF_TEXT, END_OF_TEXT, START_HEADER, END_HEADER, END_OF_TURN)

# One line per Jinja statement, joined without newlines so no stray whitespace reaches the prompt.
LLAMA3_CHAT_TEMPLATE = "".join(
    [
        "{{- bos_token }}",
        "{%- for message in messages %}",
        "{%- if message['role'] == 'assistant' %}",
        "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}",
        "{%- generation %}{{- message['content'] | trim + '<|eot_id|>' }}{%- endgeneration %}",
        "{%- else %}",
        "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}",
        "{%- endif %}",
        "{%- endfor %}",
        "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}",
    ]
)
