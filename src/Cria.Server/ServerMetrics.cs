using System.Globalization;
using System.Text;

namespace Cria.Server;

/// <summary>Counters exported by <c>GET /metrics</c> (Prometheus text format).</summary>
public sealed class ServerMetrics
{
    private long _requests, _completions, _promptTokens, _generatedTokens, _rejected, _errors;
    private long _decodeSteps, _decodedTokens, _largestBatch;
    private readonly TokenRate _rate = new();

    public long RequestsTotal => Interlocked.Read(ref _requests);
    public long CompletionsTotal => Interlocked.Read(ref _completions);
    public long PromptTokensTotal => Interlocked.Read(ref _promptTokens);
    public long TokensGeneratedTotal => Interlocked.Read(ref _generatedTokens);
    public long RejectedTotal => Interlocked.Read(ref _rejected);
    public long ErrorsTotal => Interlocked.Read(ref _errors);
    /// <summary>Batched forward passes of the decode loop.</summary>
    public long DecodeStepsTotal => Interlocked.Read(ref _decodeSteps);
    /// <summary>Tokens decoded by those passes (their sum of batch sizes).</summary>
    public long DecodedTokensTotal => Interlocked.Read(ref _decodedTokens);
    /// <summary>Most sequences decoded in one pass so far.</summary>
    public long LargestBatch => Interlocked.Read(ref _largestBatch);
    /// <summary>Tokens generated per second over the last <see cref="TokenRate.WindowSeconds"/> seconds.</summary>
    public double TokensPerSecond => _rate.PerSecond();

    internal void Request() => Interlocked.Increment(ref _requests);
    internal void Rejected() => Interlocked.Increment(ref _rejected);
    internal void Error() => Interlocked.Increment(ref _errors);

    internal void DecodeStep(int batch)
    {
        Interlocked.Increment(ref _decodeSteps);
        Interlocked.Add(ref _decodedTokens, batch);
        long seen;
        while (batch > (seen = Interlocked.Read(ref _largestBatch)) && Interlocked.CompareExchange(ref _largestBatch, batch, seen) != seen) { }
    }

    internal void TokensGenerated(int count) => _rate.Add(count);

    internal void Completion(int promptTokens, int generatedTokens)
    {
        Interlocked.Increment(ref _completions);
        Interlocked.Add(ref _promptTokens, promptTokens);
        Interlocked.Add(ref _generatedTokens, generatedTokens);
    }

    internal string Render(int queueDepth, int activeSlots, int slots)
    {
        var sb = new StringBuilder();
        void Metric(string name, string type, string help, long value)
        {
            sb.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
            sb.Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');
            sb.Append(name).Append(' ').Append(value.ToString(CultureInfo.InvariantCulture)).Append('\n');
        }
        Metric("cria_requests_total", "counter", "HTTP requests received.", RequestsTotal);
        Metric("cria_completions_total", "counter", "Completions and chat completions generated (including cancelled ones).", CompletionsTotal);
        Metric("cria_prompt_tokens_total", "counter", "Prompt tokens of completed generations.", PromptTokensTotal);
        Metric("cria_tokens_generated_total", "counter", "Tokens generated.", TokensGeneratedTotal);
        Metric("cria_requests_rejected_total", "counter", "Requests refused with 503 because the queue was full.", RejectedTotal);
        Metric("cria_request_errors_total", "counter", "Requests answered with an error status.", ErrorsTotal);
        Metric("cria_decode_steps_total", "counter", "Batched decode passes (one token of every generating request each).", DecodeStepsTotal);
        Metric("cria_decode_batch_tokens_total", "counter", "Tokens decoded by those passes (divide by the passes for the mean batch size).", DecodedTokensTotal);
        sb.Append("# HELP cria_tokens_per_second Tokens generated per second over the last ").Append(TokenRate.WindowSeconds).Append(" seconds.\n");
        sb.Append("# TYPE cria_tokens_per_second gauge\n");
        sb.Append("cria_tokens_per_second ").Append(TokensPerSecond.ToString("F2", CultureInfo.InvariantCulture)).Append('\n');
        Metric("cria_queue_depth", "gauge", "Requests waiting for a free slot.", queueDepth);
        Metric("cria_slots_active", "gauge", "Slots generating.", activeSlots);
        Metric("cria_slots_total", "gauge", "Slots (--parallel).", slots);
        return sb.ToString();
    }
}

/// <summary>A sliding count of events per second over the last few seconds (one bucket per second).</summary>
internal sealed class TokenRate
{
    public const int WindowSeconds = 10;
    private readonly long[] _buckets = new long[WindowSeconds + 1];
    private readonly long[] _bucketSecond = new long[WindowSeconds + 1];
    private readonly object _gate = new();

    private static long NowSecond => Environment.TickCount64 / 1000;

    public void Add(int count)
    {
        long now = NowSecond;
        int i = (int)(now % _buckets.Length);
        lock (_gate)
        {
            if (_bucketSecond[i] != now) { _bucketSecond[i] = now; _buckets[i] = 0; }
            _buckets[i] += count;
        }
    }

    /// <summary>Events in the last <see cref="WindowSeconds"/> complete seconds, per second.</summary>
    public double PerSecond()
    {
        long now = NowSecond, total = 0;
        lock (_gate)
        {
            for (int i = 0; i < _buckets.Length; i++)
                if (_bucketSecond[i] < now && _bucketSecond[i] >= now - WindowSeconds) total += _buckets[i];
        }
        return total / (double)WindowSeconds;
    }
}
