using System.Runtime.CompilerServices;
using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Cria.Sampling;

/// <summary>
/// Token sampler reproducing llama.cpp's default sampler chain (common/sampling.cpp):
/// penalties → top-k → top-p → min-p → temperature → draw from the softmax with a seeded RNG.
/// With <see cref="SamplerOptions.Temperature"/> &lt;= 0 the result is the argmax of the penalized
/// logits (lowest id on ties).
/// <para>
/// Like llama.cpp's common sampler, <see cref="Sample"/> does not record the token it returns: the
/// caller passes every prompt token and every generated token to <see cref="Accept"/> (or uses
/// <see cref="SampleAndAccept"/>) so the penalties see them.
/// </para>
/// <para>
/// All buffers are allocated by the constructor; <see cref="Sample"/> and <see cref="Accept"/> allocate
/// nothing. An instance is not thread-safe.
/// </para>
/// </summary>
public sealed class Sampler
{
    /// <summary>Size of the first partial sort when top-p runs on an unsorted candidate list.</summary>
    private const int TopPInitialSort = 256;

    private readonly TokenCandidate[] _candidates;
    private int _count;        // live candidates: _candidates[0.._count)
    private int _sortedCount;  // _candidates[0.._sortedCount) is sorted best first and beats every later entry

    private readonly bool _penalize;
    private readonly int[] _window;      // ring buffer of the last PenaltyWindow accepted tokens
    private readonly int[] _tokenCounts; // occurrences of each token id inside the window
    private int _windowStart;
    private int _windowSize;

    private Xoshiro256StarStar _rng;

    /// <summary>Creates a sampler for a vocabulary of <paramref name="vocabSize"/> tokens.</summary>
    /// <param name="options">Chain settings; validated with <see cref="SamplerOptions.Validate"/>.</param>
    /// <param name="vocabSize">Number of logits passed to <see cref="Sample"/>.</param>
    /// <param name="contextSize">Context length of the model run; the penalty window when <c>PenaltyLastN</c> is -1.</param>
    public Sampler(SamplerOptions options, int vocabSize, int contextSize)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (vocabSize <= 0)
            throw new ArgumentOutOfRangeException(nameof(vocabSize), vocabSize, "Vocabulary size must be positive.");
        if (contextSize <= 0)
            throw new ArgumentOutOfRangeException(nameof(contextSize), contextSize, "Context size must be positive.");

        Options = options;
        VocabSize = vocabSize;
        ContextSize = contextSize;
        PenaltyWindow = options.PenaltyLastN == -1 ? contextSize : options.PenaltyLastN;

        _candidates = new TokenCandidate[vocabSize];

        _penalize = PenaltyWindow > 0 &&
                    (options.RepeatPenalty != 1f || options.FrequencyPenalty != 0f || options.PresencePenalty != 0f);
        _window = _penalize ? new int[PenaltyWindow] : [];
        _tokenCounts = _penalize ? new int[vocabSize] : [];

        Seed = options.Seed ?? RandomSeed();
        _rng = new Xoshiro256StarStar(Seed);
    }

    public SamplerOptions Options { get; }
    public int VocabSize { get; }
    public int ContextSize { get; }

    /// <summary>Effective penalty window: <c>PenaltyLastN</c>, or <see cref="ContextSize"/> when it is -1.</summary>
    public int PenaltyWindow { get; }

    /// <summary>The seed actually in use (the configured one, or the one drawn from the OS).</summary>
    public ulong Seed { get; private set; }

    /// <summary>
    /// Candidates left after the last <see cref="Sample"/> call: their logits after penalties and
    /// temperature, and their final probabilities. For greedy sampling only the chosen token is left.
    /// </summary>
    internal ReadOnlySpan<TokenCandidate> Candidates => _candidates.AsSpan(0, _count);

    /// <summary>Picks the next token from raw <paramref name="logits"/> (length <see cref="VocabSize"/>).</summary>
    public int Sample(ReadOnlySpan<float> logits)
    {
        if (logits.Length != VocabSize)
            throw new ArgumentException(
                $"Expected {VocabSize} logits (the vocabulary size), got {logits.Length}.", nameof(logits));

        SamplerOptions o = Options;
        if (o.Temperature <= 0f)
            return Greedy(logits);

        LoadAndPenalize(logits);

        if (o.TopK > 0) ApplyTopK(o.TopK);
        if (o.TopP < 1f) ApplyTopP(o.TopP);
        if (o.MinP > 0f) ApplyMinP(o.MinP);
        if (o.Temperature != 1f) ApplyTemperature(o.Temperature);
        return Draw();
    }

    /// <summary><see cref="Sample"/> followed by <see cref="Accept"/> of the returned token.</summary>
    public int SampleAndAccept(ReadOnlySpan<float> logits)
    {
        int token = Sample(logits);
        Accept(token);
        return token;
    }

    /// <summary>
    /// Records <paramref name="token"/> (a prompt token or a generated one) in the penalty window; the
    /// oldest token leaves the window once it holds <see cref="PenaltyWindow"/> tokens.
    /// </summary>
    public void Accept(int token)
    {
        if ((uint)token >= (uint)VocabSize)
            throw new ArgumentOutOfRangeException(nameof(token), token, $"Token id must be in [0, {VocabSize}).");
        if (!_penalize) return;

        int capacity = _window.Length;
        if (_windowSize == capacity)
        {
            _tokenCounts[_window[_windowStart]]--;
            _window[_windowStart] = token;
            _windowStart = _windowStart + 1 == capacity ? 0 : _windowStart + 1;
        }
        else
        {
            int pos = _windowStart + _windowSize;
            if (pos >= capacity) pos -= capacity;
            _window[pos] = token;
            _windowSize++;
        }
        _tokenCounts[token]++;
    }

    /// <summary>
    /// Forgets the accepted tokens and re-seeds the generator: with a configured seed the same sequence
    /// starts over; without one a new seed is drawn from the OS (as llama.cpp's reset does).
    /// </summary>
    public void Reset()
    {
        _windowStart = 0;
        _windowSize = 0;
        Array.Clear(_tokenCounts);
        _count = 0;
        _sortedCount = 0;
        Seed = Options.Seed ?? RandomSeed();
        _rng = new Xoshiro256StarStar(Seed);
    }

    private static ulong RandomSeed()
    {
        Span<byte> bytes = stackalloc byte[8];
        RandomNumberGenerator.Fill(bytes);
        return BinaryPrimitives.ReadUInt64LittleEndian(bytes);
    }

    // Copies the logits into the candidate list (in id order) and applies the repetition, frequency and
    // presence penalties to the tokens inside the window. NaN logits become -inf.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void LoadAndPenalize(ReadOnlySpan<float> logits)
    {
        TokenCandidate[] c = _candidates;
        if (_penalize && _windowSize > 0)
        {
            float repeat = Options.RepeatPenalty;
            float frequency = Options.FrequencyPenalty;
            float presence = Options.PresencePenalty;
            int[] counts = _tokenCounts;
            for (int i = 0; i < c.Length; i++)
            {
                float l = logits[i];
                if (float.IsNaN(l)) l = float.NegativeInfinity;
                int n = counts[i];
                if (n > 0) l = Penalize(l, n, repeat, frequency, presence);
                c[i] = new TokenCandidate(i, l, 0f);
            }
        }
        else
        {
            for (int i = 0; i < c.Length; i++)
            {
                float l = logits[i];
                if (float.IsNaN(l)) l = float.NegativeInfinity;
                c[i] = new TokenCandidate(i, l, 0f);
            }
        }

        _count = c.Length;
        _sortedCount = 0;
    }

    private static float Penalize(float logit, int count, float repeat, float frequency, float presence)
    {
        // Dividing a negative logit would raise its probability, so those are multiplied instead.
        logit = logit <= 0f ? logit * repeat : logit / repeat;
        return logit - (count * frequency + presence);
    }

    // Argmax of the penalized logits straight from the input (no candidate list needed); the lowest id
    // wins ties, NaN counts as -inf.
    private int Greedy(ReadOnlySpan<float> logits)
    {
        bool penalize = _penalize && _windowSize > 0;
        float repeat = Options.RepeatPenalty;
        float frequency = Options.FrequencyPenalty;
        float presence = Options.PresencePenalty;
        int[] counts = _tokenCounts;

        int best = 0;
        float bestLogit = float.NegativeInfinity;
        for (int i = 0; i < logits.Length; i++)
        {
            float l = logits[i];
            if (penalize)
            {
                int n = counts[i];
                if (n > 0) l = Penalize(l, n, repeat, frequency, presence);
            }
            if (l > bestLogit)
            {
                best = i;
                bestLogit = l;
            }
        }

        _candidates[0] = new TokenCandidate(best, bestLogit, 1f);
        _count = 1;
        _sortedCount = 1;
        return best;
    }

    // Ensures the first m live candidates are the m best, sorted best first.
    private void SortPrefix(int m)
    {
        if (m > _count) m = _count;
        if (m <= _sortedCount) return;
        CandidateSelection.SelectTop(_candidates.AsSpan(_sortedCount, _count - _sortedCount), m - _sortedCount);
        _sortedCount = m;
    }

    private void ApplyTopK(int k)
    {
        if (k > _count) k = _count;
        SortPrefix(k);
        _count = k;
    }

    private float MaxLogit()
    {
        TokenCandidate[] c = _candidates;
        if (_sortedCount > 0) return c[0].Logit;
        float max = c[0].Logit;
        for (int i = 1; i < _count; i++)
            if (c[i].Logit > max) max = c[i].Logit;
        return max;
    }

    // Writes the normalized softmax of the live logits into P.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void ComputeProbabilities()
    {
        TokenCandidate[] c = _candidates;
        float max = MaxLogit();
        double sum = 0;
        for (int i = 0; i < _count; i++)
        {
            float w = Softmax.Weight(c[i].Logit, max);
            c[i].P = w;
            sum += w;
        }
        for (int i = 0; i < _count; i++)
            c[i].P = (float)(c[i].P / sum);
    }

    // Keeps the smallest set of best candidates whose cumulative probability reaches p. An already
    // sorted list (after top-k) is scanned; otherwise the best 256 are partially sorted first, which is
    // enough for peaked distributions, and only if they fall short is the remainder split by a
    // mass-steered quickselect (expected O(n)) instead of being sorted.
    private void ApplyTopP(float p)
    {
        if (_count <= 1) return;
        ComputeProbabilities();

        TokenCandidate[] c = _candidates;
        if (_sortedCount < _count)
            SortPrefix(TopPInitialSort);

        double cumulative = 0;
        for (int i = 0; i < _sortedCount; i++)
        {
            cumulative += c[i].P;
            if (cumulative >= p)
            {
                _count = i + 1;
                _sortedCount = _count;
                return;
            }
        }

        if (_sortedCount < _count)
        {
            Span<TokenCandidate> rest = c.AsSpan(_sortedCount, _count - _sortedCount);
            _count = _sortedCount + CandidateSelection.SelectByMass(rest, cumulative, p);
        }
    }

    // Keeps tokens with p_i >= minP * p_max, i.e. logit_i >= max_logit + ln(minP).
    private void ApplyMinP(float minP)
    {
        if (_count <= 1) return;
        TokenCandidate[] c = _candidates;
        float threshold = MaxLogit() + MathF.Log(minP);

        if (_sortedCount == _count)
        {
            int i = 1; // the best token always stays
            while (i < _count && c[i].Logit >= threshold) i++;
            _count = i;
            _sortedCount = i;
            return;
        }

        // Order-preserving compaction. Every sorted-prefix entry beats every later one, so the kept
        // entries of the prefix stay a sorted prefix.
        int kept = 0;
        for (int i = 0; i < _count; i++)
        {
            if (c[i].Logit >= threshold)
                c[kept++] = c[i];
        }
        _count = kept;
        if (_sortedCount > kept) _sortedCount = kept;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void ApplyTemperature(float temperature)
    {
        TokenCandidate[] c = _candidates;
        for (int i = 0; i < _count; i++)
            c[i].Logit /= temperature;
    }

    // Draws from softmax(logits) over the live candidates: one uniform u in [0, 1), then the first
    // candidate whose running weight exceeds u * total. Also leaves normalized probabilities in P.
    private int Draw()
    {
        TokenCandidate[] c = _candidates;
        if (_count == 1)
        {
            c[0].P = 1f;
            return c[0].Id;
        }

        float max = MaxLogit();
        double sum = 0;
        for (int i = 0; i < _count; i++)
        {
            float w = Softmax.Weight(c[i].Logit, max);
            c[i].P = w;
            sum += w;
        }

        double target = _rng.NextDouble() * sum;
        double running = 0;
        int selected = -1;
        int lastPositive = 0;
        for (int i = 0; i < _count; i++)
        {
            float w = c[i].P;
            if (w > 0f) lastPositive = i;
            running += w;
            if (selected < 0 && running > target) selected = i;
            c[i].P = (float)(w / sum);
        }

        // Only reachable through rounding when u * total rounds up to total.
        if (selected < 0) selected = lastPositive;
        return c[selected].Id;
    }
}
