"""The ChatML chat template (Qwen style, with tools) used for training and saved with models.

Training needs ``{% generation %}`` markers so that ``apply_chat_template(...,
return_assistant_tokens_mask=True)`` can tell which tokens the assistant wrote; inference needs
the same text without them. Both are derived from one source so they can never drift apart.

The rendering follows Qwen2.5's format exactly for conversations that start with a system
message (which all of ours do): tools in the system turn inside ``<tools></tools>``, calls as
``<tool_call>{"name": ..., "arguments": ...}</tool_call>`` and tool results grouped into one user
turn as ``<tool_response>`` blocks. Arguments may be a mapping (rendered with ``tojson``, as
Qwen does) or an already-encoded JSON string (written as is, not encoded twice).

The assistant span starts after ``<|im_start|>assistant\\n``, which is the generation prompt at
inference, and ends with ``<|im_end|>``, so the model learns both the answer and when to stop.
"""

from __future__ import annotations

import re

_SOURCE = r"""
{%- macro render_tools_system(system_text) -%}
    {{- '<|im_start|>system\n' }}
    {%- if system_text %}{{- system_text + '\n\n' }}{%- endif %}
    {{- '# Tools\n\nYou may call one or more functions to assist with the user query.\n\n' }}
    {{- 'You are provided with function signatures within <tools></tools> XML tags:\n<tools>' }}
    {%- for tool in tools %}
        {{- '\n' + (tool | tojson) }}
    {%- endfor %}
    {{- '\n</tools>\n\nFor each function call, return a json object with function name and arguments '
        'within <tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, '
        '"arguments": <args-json-object>}\n</tool_call><|im_end|>\n' }}
{%- endmacro -%}
{%- set has_system = messages and messages[0].role == 'system' %}
{%- if tools %}
    {{- render_tools_system(messages[0].content if has_system else '') }}
{%- elif has_system %}
    {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == 'system' and loop.first %}
    {%- elif message.role == 'assistant' %}
        {{- '<|im_start|>assistant\n' }}
        {%- generation %}
        {%- if message.content %}{{- message.content }}{%- endif %}
        {%- for call in (message.tool_calls or []) %}
            {%- set call = call.function if call.function is defined else call %}
            {%- if message.content or not loop.first %}{{- '\n' }}{%- endif %}
            {{- '<tool_call>\n{"name": "' + call.name + '", "arguments": ' }}
            {%- if call.arguments is string %}{{- call.arguments }}{%- else %}{{- call.arguments | tojson }}{%- endif %}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>' }}
        {%- endgeneration %}
        {{- '\n' }}
    {%- elif message.role == 'tool' %}
        {%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}
        {{- '\n<tool_response>\n' + message.content + '\n</tool_response>' }}
        {%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\n' }}{%- endif %}
    {%- else %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
""".strip()

TRAINING_CHAT_TEMPLATE = _SOURCE
CHAT_TEMPLATE = re.sub(r"\{%-?\s*(end)?generation\s*-?%\}\n?\s*", "", _SOURCE)

_GENERATION_MARKER = re.compile(r"\{%-?\s*generation\s*-?%\}")


def has_generation_markers(template: str | None) -> bool:
    return bool(template) and bool(_GENERATION_MARKER.search(template))


def supports_tools(template: str | None) -> bool:
    """Whether a template renders a ``tools`` list (ours and Qwen2.5's do; SmolLM2's does not)."""
    return bool(template) and re.search(r"\btools\b", template) is not None


def template_to_save(original: str | None) -> str:
    """The template a trained model ships with: its own when that one can render tool calls,
    ours (the same text the model was trained on) otherwise."""
    if original and supports_tools(original) and not has_generation_markers(original):
        return original
    return CHAT_TEMPLATE
