using System.Globalization;
using System.Text;

namespace Cria.Server;

/// <summary>Counters exported by <c>GET /metrics</c> (Prometheus text format).</summary>
public sealed class ServerMetrics
{
    private long _requests, _completions, _promptTokens, _generatedTokens, _rejected, _errors;

    public long RequestsTotal => Interlocked.Read(ref _requests);
    public long CompletionsTotal => Interlocked.Read(ref _completions);
    public long PromptTokensTotal => Interlocked.Read(ref _promptTokens);
    public long TokensGeneratedTotal => Interlocked.Read(ref _generatedTokens);
    public long RejectedTotal => Interlocked.Read(ref _rejected);
    public long ErrorsTotal => Interlocked.Read(ref _errors);

    internal void Request() => Interlocked.Increment(ref _requests);
    internal void Rejected() => Interlocked.Increment(ref _rejected);
    internal void Error() => Interlocked.Increment(ref _errors);

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
        Metric("cria_queue_depth", "gauge", "Requests waiting for a free slot.", queueDepth);
        Metric("cria_slots_active", "gauge", "Slots generating.", activeSlots);
        Metric("cria_slots_total", "gauge", "Slots (--parallel).", slots);
        return sb.ToString();
    }
}
