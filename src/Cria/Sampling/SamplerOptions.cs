namespace Cria.Sampling;

/// <summary>
/// Settings of the <see cref="Sampler"/> chain. The defaults are those of llama.cpp's common sampler
/// (<c>common_params_sampling</c>): temperature 0.8, top-k 40, top-p 0.95, min-p 0.05, no penalties,
/// penalty window 64.
/// </summary>
public sealed record SamplerOptions
{
    /// <summary>
    /// Softmax temperature, applied after top-k/top-p/min-p (llama.cpp order). A value &lt;= 0 selects
    /// greedy decoding: the argmax of the penalized logits, ties resolved to the lowest token id.
    /// </summary>
    public float Temperature { get; init; } = 0.8f;

    /// <summary>Keep only the <c>TopK</c> highest logits; &lt;= 0 disables the step.</summary>
    public int TopK { get; init; } = 40;

    /// <summary>
    /// Nucleus sampling: keep the smallest set of most likely tokens whose cumulative probability
    /// (at temperature 1) reaches <c>TopP</c>. Must be in (0, 1]; 1 disables the step.
    /// </summary>
    public float TopP { get; init; } = 0.95f;

    /// <summary>
    /// Drop tokens whose probability (at temperature 1) is below <c>MinP</c> times the probability of the
    /// most likely token. Must be in [0, 1]; 0 disables the step.
    /// </summary>
    public float MinP { get; init; } = 0.05f;

    /// <summary>
    /// Repetition penalty for tokens in the penalty window: positive logits are divided by it, negative
    /// (and zero) logits multiplied. Must be &gt; 0; 1 disables it.
    /// </summary>
    public float RepeatPenalty { get; init; } = 1.0f;

    /// <summary>Subtracted <c>count</c> times from the logit of a token seen <c>count</c> times in the window.</summary>
    public float FrequencyPenalty { get; init; }

    /// <summary>Subtracted once from the logit of every token seen at least once in the window.</summary>
    public float PresencePenalty { get; init; }

    /// <summary>
    /// Number of most recent accepted tokens the penalties look at. -1 means the whole context size
    /// given to the <see cref="Sampler"/>; 0 disables the penalties.
    /// </summary>
    public int PenaltyLastN { get; init; } = 64;

    /// <summary>Seed of the sampler's random generator; null draws a random seed from the OS.</summary>
    public ulong? Seed { get; init; }

    /// <summary>Greedy decoding (temperature 0); the other settings keep their defaults.</summary>
    public static SamplerOptions Greedy { get; } = new() { Temperature = 0f };

    /// <summary>True when <see cref="Temperature"/> &lt;= 0, i.e. sampling is a deterministic argmax.</summary>
    public bool IsGreedy => Temperature <= 0f;

    /// <summary>Throws <see cref="ArgumentException"/> if any setting is out of its valid range.</summary>
    public void Validate()
    {
        if (!float.IsFinite(Temperature))
            throw new ArgumentException(
                $"Temperature must be a finite number (<= 0 selects greedy decoding), got {Temperature}.",
                nameof(Temperature));

        if (float.IsNaN(TopP) || TopP <= 0f || TopP > 1f)
            throw new ArgumentException(
                $"TopP must be in (0, 1] (1 disables top-p), got {TopP}.", nameof(TopP));

        if (float.IsNaN(MinP) || MinP < 0f || MinP > 1f)
            throw new ArgumentException(
                $"MinP must be in [0, 1] (0 disables min-p), got {MinP}.", nameof(MinP));

        if (!float.IsFinite(RepeatPenalty) || RepeatPenalty <= 0f)
            throw new ArgumentException(
                $"RepeatPenalty must be a finite number > 0 (1 disables it), got {RepeatPenalty}.",
                nameof(RepeatPenalty));

        if (!float.IsFinite(FrequencyPenalty))
            throw new ArgumentException(
                $"FrequencyPenalty must be a finite number (0 disables it), got {FrequencyPenalty}.",
                nameof(FrequencyPenalty));

        if (!float.IsFinite(PresencePenalty))
            throw new ArgumentException(
                $"PresencePenalty must be a finite number (0 disables it), got {PresencePenalty}.",
                nameof(PresencePenalty));

        if (PenaltyLastN < -1)
            throw new ArgumentException(
                $"PenaltyLastN must be -1 (whole context), 0 (disabled) or a positive window size, got {PenaltyLastN}.",
                nameof(PenaltyLastN));
    }
}
