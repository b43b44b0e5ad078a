using Cria.Model;

namespace Cria.Generation;

/// <summary>
/// Continuous batching: advances many generations (each on its own <see cref="LlamaSession"/> of one
/// model) by one token each in a single forward pass, so the weights are read once per step for all
/// of them. Generations can join and leave between steps. Allocates nothing per step.
/// </summary>
/// <example>
/// <code>
/// var batch = new BatchedGeneration(capacity: 4);
/// foreach (var g in generators) g.EvaluatePrompt();
/// while (generators.Any(g => !g.IsFinished))
/// {
///     batch.Step(generators);
///     foreach (var g in generators) if (g.NewToken >= 0) Console.Write(...);
/// }
/// </code>
/// </example>
public sealed class BatchedGeneration
{
    private readonly LlamaContext[] _contexts;
    private readonly TokenGenerator[] _members;
    private readonly int[] _tokens;

    /// <param name="capacity">most generations decoded in one step</param>
    public BatchedGeneration(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _contexts = new LlamaContext[capacity];
        _members = new TokenGenerator[capacity];
        _tokens = new int[capacity];
    }

    public int Capacity => _contexts.Length;

    /// <summary>
    /// Feeds back the pending token of every generator in <see cref="GenerationPhase.Decode"/> (others are
    /// skipped) in one forward pass and samples each one's next token (<see cref="TokenGenerator.NewToken"/>).
    /// Returns how many were advanced.
    /// </summary>
    public int Step(IReadOnlyList<TokenGenerator> generators)
    {
        ArgumentNullException.ThrowIfNull(generators);
        int n = 0;
        for (int i = 0; i < generators.Count; i++)
        {
            var g = generators[i];
            if (g.Phase != GenerationPhase.Decode) continue;
            if (n == Capacity) throw new ArgumentException($"more than {Capacity} generations are ready to decode", nameof(generators));
            _members[n] = g;
            _contexts[n] = g.Session.Context;
            _tokens[n] = g.PendingToken;
            n++;
        }
        try
        {
            if (n == 0) return 0;
            LlamaContext.DecodeBatch(_contexts.AsSpan(0, n), _tokens.AsSpan(0, n));
            for (int i = 0; i < n; i++) _members[i].Decoded();
            return n;
        }
        finally
        {
            Array.Clear(_members, 0, n);
            Array.Clear(_contexts, 0, n);
        }
    }
}
