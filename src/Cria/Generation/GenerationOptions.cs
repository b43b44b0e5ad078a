using Cria.Sampling;

namespace Cria.Generation;

/// <summary>What to generate and how to pick tokens.</summary>
public sealed record GenerationOptions
{
    /// <summary>Most tokens to generate (-1: until the context is full).</summary>
    public int MaxTokens { get; init; } = 256;
    public SamplerOptions Sampling { get; init; } = new();
    /// <summary>Add BOS (and EOS) to the prompt as the vocabulary asks (llama_tokenize's add_special).</summary>
    public bool AddSpecialTokens { get; init; } = true;
    /// <summary>Parse special-token text such as "&lt;s&gt;" in the prompt into their ids.</summary>
    public bool ParseSpecialTokens { get; init; }
    /// <summary>Stop before any of these strings would be emitted.</summary>
    public IReadOnlyList<string> StopSequences { get; init; } = Array.Empty<string>();

    public void Validate()
    {
        if (MaxTokens < -1) throw new ArgumentOutOfRangeException(nameof(MaxTokens), "MaxTokens must be -1 (no limit) or at least 0");
        Sampling.Validate();
    }
}

/// <summary>Why generation ended.</summary>
public enum StopReason
{
    None,
    EndOfGeneration,
    MaxTokens,
    ContextFull,
    StopSequence,
    Cancelled,
}

/// <summary>Counts and timings of one generation call.</summary>
public sealed record GenerationStats
{
    public int PromptTokens { get; init; }
    /// <summary>Prompt tokens actually evaluated (fewer when a cached prefix was reused).</summary>
    public int PromptTokensEvaluated { get; init; }
    public TimeSpan PromptTime { get; init; }
    public int GeneratedTokens { get; init; }
    public TimeSpan GenerationTime { get; init; }
    public StopReason StopReason { get; init; }

    public double PromptTokensPerSecond => PromptTime.TotalSeconds > 0 ? PromptTokensEvaluated / PromptTime.TotalSeconds : 0;
    /// <summary>Decode speed: tokens fed back one at a time (the first token comes from the prompt pass).</summary>
    public double GenerationTokensPerSecond => GenerationTime.TotalSeconds > 0 ? GeneratedTokens / GenerationTime.TotalSeconds : 0;
}
