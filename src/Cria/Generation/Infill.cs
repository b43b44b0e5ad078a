using Cria.Tokenizers;

namespace Cria.Generation;

/// <summary>How an infill prompt is laid out.</summary>
public sealed record InfillOptions
{
    /// <summary>Start with BOS; null: as the vocabulary asks (<c>tokenizer.ggml.add_bos_token</c>).</summary>
    public bool? AddBos { get; init; }
    /// <summary>
    /// Suffix-prefix-middle order (llama.cpp's <c>--spm-infill</c>): <c>&lt;SUF&gt; suffix &lt;PRE&gt; prefix &lt;MID&gt;</c>
    /// instead of the default prefix-suffix-middle <c>&lt;PRE&gt; prefix &lt;SUF&gt; suffix &lt;MID&gt;</c>.
    /// </summary>
    public bool SuffixFirst { get; init; }
}

/// <summary>The vocabulary has no fill-in-the-middle tokens.</summary>
public sealed class InfillNotSupportedException : NotSupportedException
{
    public InfillNotSupportedException(string message) : base(message) { }
}

/// <summary>
/// Fill-in-the-middle (code infilling, as Code Llama was trained for), built like llama.cpp's
/// <c>examples/infill</c> and the server's <c>format_infill</c>: prefix and suffix are tokenized separately
/// without BOS/EOS (the SentencePiece tokenizer puts its space marker "▁" before each), then
/// <c>[BOS] &lt;PRE&gt; prefix &lt;SUF&gt; suffix &lt;MID&gt;</c>; the model writes the middle and ends it with
/// <c>&lt;EOT&gt;</c>, an end-of-generation token.
/// </summary>
public static class Infill
{
    /// <summary>True when the vocabulary has the prefix, suffix and middle tokens.</summary>
    public static bool IsSupported(Vocabulary vocabulary)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        return vocabulary.FimPrefix >= 0 && vocabulary.FimSuffix >= 0 && vocabulary.FimMiddle >= 0;
    }

    /// <summary>The prompt tokens for filling the gap between <paramref name="prefix"/> and <paramref name="suffix"/>.</summary>
    /// <exception cref="InfillNotSupportedException">the vocabulary has no FIM tokens</exception>
    public static int[] BuildPrompt(ITokenizer tokenizer, string prefix, string suffix, InfillOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(prefix);
        ArgumentNullException.ThrowIfNull(suffix);
        options ??= new InfillOptions();
        var vocab = tokenizer.Vocabulary;
        RequireSupport(vocab);

        int[] pre = tokenizer.Encode(prefix, addSpecial: false, parseSpecial: false);
        int[] suf = tokenizer.Encode(suffix, addSpecial: false, parseSpecial: false);
        var tokens = new List<int>(pre.Length + suf.Length + 4);
        if ((options.AddBos ?? vocab.AddBos) && vocab.Bos >= 0) tokens.Add(vocab.Bos);
        if (options.SuffixFirst)
        {
            tokens.Add(vocab.FimSuffix); tokens.AddRange(suf);
            tokens.Add(vocab.FimPrefix); tokens.AddRange(pre);
        }
        else
        {
            tokens.Add(vocab.FimPrefix); tokens.AddRange(pre);
            tokens.Add(vocab.FimSuffix); tokens.AddRange(suf);
        }
        tokens.Add(vocab.FimMiddle);
        return tokens.ToArray();
    }

    /// <summary>Streams the middle text; generation ends at <c>&lt;EOT&gt;</c> (or another end-of-generation token).</summary>
    public static IEnumerable<string> Generate(LlamaSession session, string prefix, string suffix,
        GenerationOptions? options = null, InfillOptions? infillOptions = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(session);
        int[] tokens = BuildPrompt(session.Model.Tokenizer, prefix, suffix, infillOptions);
        return session.GenerateText(tokens, options ?? new GenerationOptions(), cancellationToken);
    }

    /// <summary>Throws <see cref="InfillNotSupportedException"/> naming the missing tokens.</summary>
    public static void RequireSupport(Vocabulary vocabulary)
    {
        if (IsSupported(vocabulary)) return;
        var missing = new List<string>();
        if (vocabulary.FimPrefix < 0) missing.Add("prefix (<PRE>)");
        if (vocabulary.FimSuffix < 0) missing.Add("suffix (<SUF>)");
        if (vocabulary.FimMiddle < 0) missing.Add("middle (<MID>)");
        throw new InfillNotSupportedException(
            $"the model's vocabulary has no fill-in-the-middle tokens: {string.Join(", ", missing)} missing; " +
            "infill needs a model trained for it, such as Code Llama (7B/13B base or instruct)");
    }
}
