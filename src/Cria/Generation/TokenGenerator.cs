using System.Diagnostics;
using Cria.Model;
using Cria.Sampling;

namespace Cria.Generation;

/// <summary>Where a <see cref="TokenGenerator"/> is.</summary>
public enum GenerationPhase
{
    /// <summary>Prompt tokens remain to be evaluated.</summary>
    Prompt,
    /// <summary>A sampled token (<see cref="TokenGenerator.PendingToken"/>) waits to be fed back.</summary>
    Decode,
    /// <summary>Generation has ended (<see cref="TokenGenerator.Stats"/> tells why).</summary>
    Finished,
}

/// <summary>
/// One generation on a <see cref="LlamaSession"/>, advanced a step at a time: evaluate the prompt
/// (in pieces if wanted), then repeatedly feed back the sampled token and sample the next. A single
/// generator is driven by <see cref="LlamaSession.GenerateTokens"/>; many are driven together, one
/// decode step of all of them per forward pass, by <see cref="BatchedGeneration"/>.
/// </summary>
public sealed class TokenGenerator
{
    private readonly LlamaSession _session;
    private readonly GenerationOptions _options;
    private readonly Sampler _sampler;
    private readonly int[] _prompt;
    private int _promptDone;
    private readonly Stopwatch _promptClock = new(), _generationClock = new();
    private int _generated;

    internal TokenGenerator(LlamaSession session, int[] promptTokens, GenerationOptions options)
    {
        ArgumentNullException.ThrowIfNull(promptTokens);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var context = session.Context;
        if (promptTokens.Length == 0)
            throw new ArgumentException("the prompt has no tokens (add BOS or give some text)", nameof(promptTokens));
        if (promptTokens.Length > context.ContextSize)
            throw new ContextOverflowException(promptTokens.Length, context.ContextSize);
        int vocab = session.Model.Config.VocabularySize;
        foreach (int t in promptTokens)
            if ((uint)t >= (uint)vocab) throw new ArgumentOutOfRangeException(nameof(promptTokens), $"token id {t} is outside the vocabulary (0..{vocab - 1})");

        _session = session;
        _options = options;
        _prompt = promptTokens;
        _sampler = new Sampler(options.Sampling, vocab, context.ContextSize);
        foreach (int t in promptTokens) _sampler.Accept(t);

        // Reuse the longest cached prefix; at least the last prompt token is evaluated to get logits.
        var cached = session.CachedTokens;
        int common = 0;
        while (common < cached.Count && common < promptTokens.Length - 1 && cached[common] == promptTokens[common]) common++;
        context.Truncate(common);
        cached.RemoveRange(common, cached.Count - common);
        _promptDone = common;
        Stats = new GenerationStats { PromptTokens = promptTokens.Length, PromptTokensEvaluated = promptTokens.Length - common };
    }

    public LlamaSession Session => _session;
    public GenerationPhase Phase { get; private set; } = GenerationPhase.Prompt;
    public bool IsFinished => Phase == GenerationPhase.Finished;
    /// <summary>Prompt tokens not evaluated yet.</summary>
    public int PromptRemaining => _prompt.Length - _promptDone;
    /// <summary>The token sampled by the last step (-1 when that step sampled none); it is part of the output.</summary>
    public int NewToken { get; private set; } = -1;
    /// <summary>The token the next decode step feeds back (valid in <see cref="GenerationPhase.Decode"/>).</summary>
    public int PendingToken => Phase == GenerationPhase.Decode ? _pending[0] : -1;
    /// <summary>Counts and timings so far; final once <see cref="IsFinished"/>.</summary>
    public GenerationStats Stats { get; private set; }

    /// <summary>
    /// Evaluates up to <paramref name="maxTokens"/> more prompt tokens; after the last one, samples the
    /// first generated token (see <see cref="NewToken"/>).
    /// </summary>
    public void EvaluatePrompt(int maxTokens = int.MaxValue)
    {
        if (Phase != GenerationPhase.Prompt) throw new InvalidOperationException("the prompt has already been evaluated");
        if (maxTokens < 1) throw new ArgumentOutOfRangeException(nameof(maxTokens));
        int n = Math.Min(maxTokens, PromptRemaining);
        _promptClock.Start();
        try
        {
            _session.Context.Evaluate(_prompt.AsSpan(_promptDone, n));
            _session.CachedTokens.AddRange(_prompt.AsSpan(_promptDone, n));
            _promptDone += n;
        }
        finally { _promptClock.Stop(); }
        if (PromptRemaining > 0) return;
        Stats = Stats with { PromptTime = _promptClock.Elapsed };
        _generationClock.Start();
        if (_options.MaxTokens == 0) { Finish(StopReason.MaxTokens); return; }
        SampleNext();
    }

    /// <summary>Feeds back <see cref="PendingToken"/> through this session's context alone and samples the next token.</summary>
    public void Decode()
    {
        RequirePhase(GenerationPhase.Decode);
        _session.Context.Evaluate(_pending);
        Decoded();
    }

    private readonly int[] _pending = new int[1]; // the pending token, as the one-token span Decode evaluates

    /// <summary>Called once the context has evaluated <see cref="PendingToken"/> (alone or in a batch).</summary>
    internal void Decoded()
    {
        RequirePhase(GenerationPhase.Decode);
        _session.CachedTokens.Add(_pending[0]);
        SampleNext();
    }

    internal void RequirePhase(GenerationPhase phase)
    {
        if (Phase != phase) throw new InvalidOperationException($"the generation is in phase {Phase}, not {phase}");
    }

    /// <summary>Ends the generation (for example when its consumer cancels or a stop sequence appears).</summary>
    public void Finish(StopReason reason)
    {
        if (IsFinished) return;
        _generationClock.Stop();
        _promptClock.Stop();
        Phase = GenerationPhase.Finished;
        Stats = Stats with
        {
            PromptTime = _promptClock.Elapsed,
            GeneratedTokens = _generated,
            GenerationTime = _generationClock.Elapsed,
            StopReason = reason,
        };
    }

    /// <summary>Samples from the context's last logits; ends at an end-of-generation token, the token limit or a full context.</summary>
    private void SampleNext()
    {
        var context = _session.Context;
        int token = _sampler.Sample(context.LastLogits);
        if (_session.Model.Vocabulary.IsEndOfGeneration(token))
        {
            NewToken = -1;
            Finish(StopReason.EndOfGeneration);
            return;
        }
        _sampler.Accept(token);
        _generated++;
        NewToken = token;
        if (_options.MaxTokens >= 0 && _generated >= _options.MaxTokens) { Finish(StopReason.MaxTokens); return; }
        if (context.Position >= context.ContextSize) { Finish(StopReason.ContextFull); return; }
        _pending[0] = token;
        Phase = GenerationPhase.Decode;
    }
}
