using System.Diagnostics;
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
        var detok = new StreamingDetokenizer(Model.Tokenizer, continuation: true);
        var stops = options.StopSequences.Where(s => s.Length > 0).ToArray();
        var pending = new System.Text.StringBuilder();
        int longestStop = stops.Length == 0 ? 0 : stops.Max(s => s.Length);
        string? beforeStop = null;
        foreach (int token in GenerateTokens(promptTokens, options, cancellationToken))
        {
            string text = detok.Append(token);
            if (stops.Length == 0)
            {
                if (text.Length > 0) yield return text;
                continue;
            }
            pending.Append(text);
            string buffered = pending.ToString();
            int hit = FirstStop(buffered, stops);
            if (hit >= 0)
            {
                beforeStop = buffered[..hit];
                break; // ends the token stream, which records its statistics
            }
            // Hold back the tail that could still begin a stop sequence.
            int keep = Math.Min(buffered.Length, longestStop - 1);
            int emit = buffered.Length - keep;
            if (emit > 0)
            {
                yield return buffered[..emit];
                pending.Remove(0, emit);
            }
        }
        if (beforeStop != null)
        {
            LastStats = LastStats! with { StopReason = StopReason.StopSequence };
            if (beforeStop.Length > 0) yield return beforeStop;
            yield break;
        }
        string rest = pending.ToString() + detok.Flush();
        if (stops.Length > 0)
        {
            int hit = FirstStop(rest, stops);
            if (hit >= 0) { rest = rest[..hit]; LastStats = LastStats! with { StopReason = StopReason.StopSequence }; }
        }
        if (rest.Length > 0) yield return rest;
    }

    private static int FirstStop(string text, string[] stops)
    {
        int best = -1;
        foreach (var s in stops)
        {
            int i = text.IndexOf(s, StringComparison.Ordinal);
            if (i >= 0 && (best < 0 || i < best)) best = i;
        }
        return best;
    }

    /// <summary>
    /// Evaluates the prompt (reusing any cached prefix) and yields generated token ids until an
    /// end-of-generation token, the token limit, a full context or cancellation. The EOG token
    /// itself is not yielded. Statistics are in <see cref="LastStats"/> once enumeration ends.
    /// </summary>
    public IEnumerable<int> GenerateTokens(int[] promptTokens, GenerationOptions options, CancellationToken cancellationToken = default)
    {
        options.Validate();
        if (promptTokens.Length == 0)
            throw new ArgumentException("the prompt has no tokens (add BOS or give some text)", nameof(promptTokens));
        if (promptTokens.Length > Context.ContextSize)
            throw new ContextOverflowException(promptTokens.Length, Context.ContextSize);

        var sampler = new Sampler(options.Sampling, Model.Config.VocabularySize, Context.ContextSize);
        foreach (int t in promptTokens) sampler.Accept(t);

        // Reuse the longest cached prefix; at least the last prompt token is evaluated to get logits.
        int common = 0;
        while (common < _tokens.Count && common < promptTokens.Length - 1 && _tokens[common] == promptTokens[common]) common++;
        Context.Truncate(common);
        _tokens.RemoveRange(common, _tokens.Count - common);

        var sw = Stopwatch.StartNew();
        var stats = new GenerationStats { PromptTokens = promptTokens.Length, PromptTokensEvaluated = promptTokens.Length - common };
        LastStats = stats;
        cancellationToken.ThrowIfCancellationRequested();
        Context.Evaluate(promptTokens.AsSpan(common));
        _tokens.AddRange(promptTokens.AsSpan(common));
        stats = stats with { PromptTime = sw.Elapsed };
        LastStats = stats;

        sw.Restart();
        int generated = 0;
        // Stays Cancelled when the consumer stops enumerating early; every other exit sets it.
        var reason = StopReason.Cancelled;
        var vocab = Model.Vocabulary;
        int previous = -1;
        try
        {
            while (true)
            {
                if (cancellationToken.IsCancellationRequested) { reason = StopReason.Cancelled; break; }
                if (options.MaxTokens >= 0 && generated >= options.MaxTokens) { reason = StopReason.MaxTokens; break; }
                if (previous >= 0)
                {
                    // Feed the last generated token back to get the next logits.
                    if (Context.Position >= Context.ContextSize) { reason = StopReason.ContextFull; break; }
                    _one[0] = previous;
                    Context.Evaluate(_one);
                    _tokens.Add(previous);
                }
                int token = sampler.Sample(Context.LastLogits);
                if (vocab.IsEndOfGeneration(token)) { reason = StopReason.EndOfGeneration; break; }
                sampler.Accept(token);
                generated++;
                yield return token;
                previous = token;
            }
        }
        finally
        {
            // Recorded once, when the stream ends for any reason: nothing is allocated per token.
            LastStats = stats with { GeneratedTokens = generated, GenerationTime = sw.Elapsed, StopReason = reason };
        }
    }

    private readonly int[] _one = new int[1];

    /// <summary>Forgets the conversation (the KV cache is cleared).</summary>
    public void Reset()
    {
        Context.Reset();
        _tokens.Clear();
    }

    public void Dispose() => Context.Dispose();
}
