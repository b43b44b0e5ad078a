using System.Runtime.CompilerServices;
using Cria.Model;
using Cria.Sampling;
using Cria.Tokenizers;

namespace Cria.Generation;

/// <summary>
/// A conversation with a model: one context (KV cache), the tokens it holds, and generation that
/// streams text. A new prompt that starts with tokens already in the cache reuses them.
/// </summary>
/// <example>
/// <code>
/// using var model = LlamaModel.Load("stories260K.gguf");
/// using var session = new LlamaSession(model);
/// await foreach (string piece in session.GenerateAsync("Once upon a time", new() { MaxTokens = 64 }))
///     Console.Write(piece);
/// </code>
/// </example>
public sealed class LlamaSession : IDisposable
{
    private readonly List<int> _tokens;

    /// <summary>The cached tokens, kept in step with the context by <see cref="TokenGenerator"/>.</summary>
    internal List<int> CachedTokens => _tokens;

    public LlamaSession(LlamaModel model, ContextOptions? options = null)
    {
        Model = model;
        Context = model.CreateContext(options);
        _tokens = new List<int>(Context.ContextSize); // never grows while generating
    }

    public LlamaModel Model { get; }
    public LlamaContext Context { get; }
    /// <summary>The tokens whose keys and values the context holds, in order.</summary>
    public IReadOnlyList<int> Tokens => _tokens;
    public GenerationStats? LastStats { get; private set; }

    /// <summary>Tokenizes text the way generation does.</summary>
    public int[] Tokenize(string text, bool addSpecial = true, bool parseSpecial = false) =>
        Model.Tokenizer.Encode(text, addSpecial, parseSpecial);

    /// <summary>Streams the text generated after <paramref name="prompt"/>.</summary>
    public async IAsyncEnumerable<string> GenerateAsync(string prompt, GenerationOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        options ??= new GenerationOptions();
        int[] tokens = Tokenize(prompt, options.AddSpecialTokens, options.ParseSpecialTokens);
        await Task.Yield();
        foreach (var piece in GenerateText(tokens, options, cancellationToken))
        {
            yield return piece;
        }
    }

    /// <summary>Streams generated text synchronously (the prompt given as token ids).</summary>
    public IEnumerable<string> GenerateText(int[] promptTokens, GenerationOptions options, CancellationToken cancellationToken = default)
    {
        var text = new GeneratedText(Model.Tokenizer, options.StopSequences);
        foreach (int token in GenerateTokens(promptTokens, options, cancellationToken))
        {
            string piece = text.Append(token);
            if (piece.Length > 0) yield return piece;
            if (text.Stopped) break; // ends the token stream, which records its statistics
        }
        string rest = text.Flush();
        if (text.Stopped) LastStats = LastStats! with { StopReason = StopReason.StopSequence };
        if (rest.Length > 0) yield return rest;
    }

    /// <summary>
    /// Starts a generation to be advanced step by step (for running several sessions together with
    /// <see cref="BatchedGeneration"/>). The cached prefix the prompt shares with <see cref="Tokens"/> is
    /// kept; the rest of the cache is dropped.
    /// </summary>
    public TokenGenerator StartGeneration(int[] promptTokens, GenerationOptions options) => new(this, promptTokens, options);

    /// <summary>
    /// Evaluates the prompt (reusing any cached prefix) and yields generated token ids until an
    /// end-of-generation token, the token limit, a full context or cancellation. The EOG token
    /// itself is not yielded. Statistics are in <see cref="LastStats"/> once enumeration ends.
    /// </summary>
    public IEnumerable<int> GenerateTokens(int[] promptTokens, GenerationOptions options, CancellationToken cancellationToken = default)
    {
        var generator = StartGeneration(promptTokens, options);
        LastStats = generator.Stats;
        cancellationToken.ThrowIfCancellationRequested();
        try
        {
            generator.EvaluatePrompt();
            while (true)
            {
                if (generator.NewToken >= 0) yield return generator.NewToken;
                if (generator.IsFinished) break;
                if (cancellationToken.IsCancellationRequested) break;
                generator.Decode();
            }
        }
        finally
        {
            // Recorded once, when the stream ends for any reason (Cancelled also when the consumer stops
            // early): nothing is allocated per token.
            generator.Finish(StopReason.Cancelled);
            LastStats = generator.Stats;
        }
    }

    /// <summary>Forgets the conversation (the KV cache is cleared).</summary>
    public void Reset()
    {
        Context.Reset();
        _tokens.Clear();
    }

    public void Dispose() => Context.Dispose();
}
