using Cria.Chat.Jinja;
using Cria.Gguf;

namespace Cria.Chat;

/// <summary>
/// A model's chat template (<c>tokenizer.chat_template</c>, a Jinja2 template) rendered the way Hugging
/// Face's <c>apply_chat_template(..., tokenize=False)</c> does: Jinja2 with <c>trim_blocks</c> and
/// <c>lstrip_blocks</c>, the globals <c>raise_exception</c> and <c>strftime_now</c>, and a <c>tojson</c>
/// that keeps key order and non-ASCII text.
/// </summary>
public sealed class ChatTemplate
{
    private readonly JinjaTemplate _template;

    private ChatTemplate(JinjaTemplate template) => _template = template;

    /// <summary>The Jinja source.</summary>
    public string Source => _template.Source;

    /// <summary>Parses a template; throws <see cref="ChatTemplateException"/> (kind Syntax) when it is not valid.</summary>
    public static ChatTemplate Parse(string source)
    {
        ArgumentNullException.ThrowIfNull(source);
        return new ChatTemplate(JinjaTemplate.Parse(source));
    }

    /// <summary>
    /// Renders one conversation. Throws <see cref="ChatTemplateException"/>: kind Raised with the
    /// template's own message when it calls <c>raise_exception</c>, kind Runtime for other errors.
    /// </summary>
    public string Render(ChatTemplateRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        var variables = new List<KeyValuePair<string, object?>>
        {
            new("messages", JsonValues.FromNode(request.Messages)),
            new("tools", JsonValues.FromNode(request.Tools)),
            new("documents", JsonValues.FromNode(request.Documents)),
            new("add_generation_prompt", request.AddGenerationPrompt),
        };
        if (request.BosToken != null) variables.Add(new("bos_token", request.BosToken));
        if (request.EosToken != null) variables.Add(new("eos_token", request.EosToken));
        if (request.ExtraContext != null)
            foreach (var kv in request.ExtraContext) variables.Add(new(kv.Key, JsonValues.FromNode(kv.Value)));

        DateTime now = request.Now ?? DateTime.Now;
        var globals = new KeyValuePair<string, object?>[]
        {
            new("raise_exception", new BuiltinFunction("raise_exception", (_, args) =>
                throw new ChatTemplateException(ChatTemplateErrorKind.Raised, PyRepr.Str(args.Get(0, "message", ""))))),
            new("strftime_now", new BuiltinFunction("strftime_now", (_, args) =>
                Strftime.Format(now, args.Get(0, "format") as string ?? throw ChatTemplateException.Type("strftime_now() argument must be str")))),
        };
        return _template.Render(variables, globals);
    }

    private static readonly Lazy<ChatTemplate> Llama2Template = new(() => Parse(BuiltinChatTemplates.Llama2));
    private static readonly Lazy<ChatTemplate> Llama3Template = new(() => Parse(BuiltinChatTemplates.Llama3));

    /// <summary>
    /// Llama 2 chat format, for files without a template: <c>&lt;s&gt;[INST] &lt;&lt;SYS&gt;&gt;\n{system}\n&lt;&lt;/SYS&gt;&gt;\n\n{user} [/INST] {answer} &lt;/s&gt;</c>,
    /// roles must alternate user/assistant after an optional system message; no generation prompt.
    /// </summary>
    public static ChatTemplate Llama2 => Llama2Template.Value;

    /// <summary>
    /// Llama 3 instruct format, for files without a template: <c>&lt;|start_header_id|&gt;{role}&lt;|end_header_id|&gt;\n\n{content}&lt;|eot_id|&gt;</c>
    /// per message after <c>bos_token</c>, and the assistant header when <c>add_generation_prompt</c>.
    /// </summary>
    public static ChatTemplate Llama3 => Llama3Template.Value;

    /// <summary>The names <see cref="Builtin"/> knows.</summary>
    public static IReadOnlyList<string> BuiltinNames { get; } = ["llama2", "llama3"];

    /// <summary>
    /// The built-in template named <paramref name="name"/>: "llama2" (<see cref="Llama2"/>) or "llama3"
    /// (<see cref="Llama3"/>), case-insensitive, "llama-2" / "llama-3" too; null for any other name.
    /// </summary>
    public static ChatTemplate? Builtin(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return name.Replace("-", "", StringComparison.Ordinal).ToLowerInvariant() switch
        {
            "llama2" => Llama2,
            "llama3" => Llama3,
            _ => null,
        };
    }

    /// <summary>
    /// The file's <c>tokenizer.chat_template</c>; without one, <see cref="Llama3"/> for a byte-level BPE
    /// vocabulary (<c>tokenizer.ggml.model = gpt2</c>) and <see cref="Llama2"/> otherwise.
    /// </summary>
    public static ChatTemplate FromGguf(GgufFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        string? source = file.GetString("tokenizer.chat_template");
        if (source != null) return Parse(source);
        return file.GetString("tokenizer.ggml.model") == "gpt2" ? Llama3 : Llama2;
    }

    /// <summary>The text of the file's BOS and EOS tokens (null where the file has none).</summary>
    public static (string? Bos, string? Eos) SpecialTokensOf(GgufFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        var tokens = file.GetArray("tokenizer.ggml.tokens")?.Items as string[];
        string? Token(string key) =>
            tokens != null && file.GetInt(key) is long id && id >= 0 && id < tokens.Length ? tokens[id] : null;
        return (Token("tokenizer.ggml.bos_token_id"), Token("tokenizer.ggml.eos_token_id"));
    }
}
