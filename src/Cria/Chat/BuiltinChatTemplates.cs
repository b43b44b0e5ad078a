namespace Cria.Chat;

/// <summary>
/// Jinja sources of the built-in templates, written for this project; for ordinary conversations they
/// render exactly what Meta's Llama 2 chat and Llama 3 instruct templates render.
/// </summary>
internal static class BuiltinChatTemplates
{
    public const string Llama2 = """
        {#- Llama 2 chat: an optional system prompt folded into the first user turn. -#}
        {%- if messages and messages[0]['role'] == 'system' -%}
            {%- set system_text = messages[0]['content'] -%}
            {%- set turns = messages[1:] -%}
        {%- else -%}
            {%- set system_text = none -%}
            {%- set turns = messages -%}
        {%- endif -%}
        {%- for turn in turns -%}
            {%- if (turn['role'] == 'user') != (loop.index0 is even) -%}
                {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') -}}
            {%- endif -%}
            {%- set text = turn['content'] -%}
            {%- if loop.first and system_text is not none -%}
                {%- set text = '<<SYS>>\n' ~ system_text ~ '\n<</SYS>>\n\n' ~ text -%}
            {%- endif -%}
            {%- if turn['role'] == 'user' -%}
                {{- bos_token ~ '[INST] ' ~ (text | trim) ~ ' [/INST]' -}}
            {%- elif turn['role'] == 'assistant' -%}
                {{- ' ' ~ (text | trim) ~ ' ' ~ eos_token -}}
            {%- endif -%}
        {%- endfor -%}
        """;

    public const string Llama3 = """
        {#- Llama 3 instruct: one header-delimited block per message. -#}
        {%- for message in messages -%}
            {%- if loop.first -%}
                {{- bos_token -}}
            {%- endif -%}
            {{- '<|start_header_id|>' ~ message['role'] ~ '<|end_header_id|>\n\n' ~ (message['content'] | trim) ~ '<|eot_id|>' -}}
        {%- endfor -%}
        {%- if add_generation_prompt -%}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
        {%- endif -%}
        """;
}
