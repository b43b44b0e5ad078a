using Cria.Chat;
using Cria.Model;

namespace Cria.Server;

/// <summary>Settings of a <see cref="CriaServer"/>.</summary>
public sealed record ServerOptions
{
    /// <summary>Address to listen on: an IP address or "localhost". Default: 127.0.0.1 (loopback only).</summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>TCP port; 0 picks a free one (see <see cref="CriaServer.Url"/>).</summary>
    public int Port { get; init; } = 8080;

    /// <summary>Number of slots: sequences generated at the same time, each with its own KV cache.</summary>
    public int Parallel { get; init; } = 1;

    /// <summary>Requests that may wait for a free slot; more are refused with 503.</summary>
    public int QueueSize { get; init; } = 16;

    /// <summary>Context size of each slot in tokens; 0 means the model's training context capped at 4096.</summary>
    public int ContextSize { get; init; }

    public KvCacheType KvCacheType { get; init; } = KvCacheType.F16;

    /// <summary>When set, every endpoint except / (the chat page) and /health needs <c>Authorization: Bearer KEY</c>.</summary>
    public string? ApiKey { get; init; }

    /// <summary>The chat template; null for the model's own (or the built-in Llama 2/3 fallback).</summary>
    public ChatTemplate? ChatTemplate { get; init; }

    /// <summary>The model id reported by /v1/models and in responses; null for the file name.</summary>
    public string? ModelName { get; init; }

    /// <summary>Largest request body accepted, in bytes (413 beyond).</summary>
    public long MaxRequestBodyBytes { get; init; } = 1 << 20;

    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(Host)) throw new ArgumentException("the host must not be empty", nameof(Host));
        if (Port is < 0 or > 65535) throw new ArgumentOutOfRangeException(nameof(Port), $"port must be in 0..65535, not {Port}");
        if (Parallel < 1) throw new ArgumentOutOfRangeException(nameof(Parallel), $"parallel must be at least 1, not {Parallel}");
        if (QueueSize < 0) throw new ArgumentOutOfRangeException(nameof(QueueSize), $"queue size must not be negative, not {QueueSize}");
        if (ContextSize < 0) throw new ArgumentOutOfRangeException(nameof(ContextSize), $"context size must not be negative, not {ContextSize}");
        if (MaxRequestBodyBytes < 1) throw new ArgumentOutOfRangeException(nameof(MaxRequestBodyBytes), "the body limit must be positive");
    }
}
