using Cria.Model;
using Cria.Tokenizers;

namespace Cria.Chat;

/// <summary>
/// Turns a conversation into prompt tokens: renders it with a chat template (given the model's BOS and
/// EOS texts) and tokenizes the result with special-token parsing, adding BOS only when the rendered
/// text does not already start with it (so it is never doubled).
/// </summary>
public sealed class ChatFormatter
{
    public ChatFormatter(ChatTemplate template, ITokenizer tokenizer, string? bosToken, string? eosToken)
    {
        ArgumentNullException.ThrowIfNull(template);
        ArgumentNullException.ThrowIfNull(tokenizer);
        Template = template;
        Tokenizer = tokenizer;
        BosToken = bosToken;
        EosToken = eosToken;
    }

    /// <summary>The model's own template (or the built-in fallback) and its BOS/EOS texts.</summary>
    public static ChatFormatter FromModel(LlamaModel model, ChatTemplate? template = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var (bos, eos) = ChatTemplate.SpecialTokensOf(model.File);
        return new ChatFormatter(template ?? ChatTemplate.FromGguf(model.File), model.Tokenizer, bos, eos);
    }

    public ChatTemplate Template { get; }
    public ITokenizer Tokenizer { get; }
    public string? BosToken { get; }
    public string? EosToken { get; }

    /// <summary>Renders the messages (Hugging Face's <c>apply_chat_template(tokenize=False)</c>).</summary>
    public string Render(IEnumerable<ChatMessage> messages, bool addGenerationPrompt = true) =>
        Template.Render(new ChatTemplateRequest(messages)
        {
            AddGenerationPrompt = addGenerationPrompt,
            BosToken = BosToken ?? "",
            EosToken = EosToken ?? "",
        });

    /// <summary>
    /// Tokenizes rendered template output: special-token texts become their ids, and BOS is added (when the
    /// vocabulary asks for it) only if the text does not already begin with the BOS text.
    /// </summary>
    public int[] Tokenize(string rendered)
    {
        ArgumentNullException.ThrowIfNull(rendered);
        bool hasBos = !string.IsNullOrEmpty(BosToken) && rendered.StartsWith(BosToken, StringComparison.Ordinal);
        return Tokenizer.Encode(rendered, addSpecial: !hasBos, parseSpecial: true);
    }

    /// <summary>Renders and tokenizes in one step.</summary>
    public int[] Format(IEnumerable<ChatMessage> messages, bool addGenerationPrompt = true) =>
        Tokenize(Render(messages, addGenerationPrompt));
}
