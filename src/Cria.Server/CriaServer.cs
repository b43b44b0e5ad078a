using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Cria.Chat;
using Cria.Generation;
using Cria.Model;
using Cria.Sampling;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Cria.Server;

/// <summary>
/// An OpenAI-compatible HTTP server over one loaded model: <c>/v1/models</c>, <c>/v1/completions</c>,
/// <c>/v1/chat/completions</c> (with SSE streaming), <c>/tokenize</c>, <c>/detokenize</c>, <c>/health</c> and
/// <c>/metrics</c>, <c>/v1/embeddings</c>, <c>/infill</c> and a chat page at <c>/</c>. Requests run on
/// <see cref="ServerOptions.Parallel"/> slots, each a <see cref="LlamaSession"/> with its own KV cache; further
/// requests wait in a bounded queue (503 when it is full). The slots generate together: one
/// <see cref="GenerationScheduler"/> thread advances every active request by a token per batched forward pass
/// (continuous batching), and new requests join between passes.
/// </summary>
/// <example>
/// <code>
/// using var model = LlamaModel.Load("model.gguf");
/// await using var server = new CriaServer(model, new ServerOptions { Port = 8080, Parallel = 2 });
/// await server.StartAsync();
/// Console.Error.WriteLine(server.Url);
/// </code>
/// </example>
public sealed class CriaServer : IAsyncDisposable
{
    private static readonly JsonSerializerOptions JsonOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private readonly LlamaModel _model;
    private readonly ServerOptions _options;
    private readonly SlotPool _pool;
    private readonly GenerationScheduler _scheduler;
    private readonly ChatFormatter _chat;
    private readonly byte[]? _apiKey;
    private readonly long _created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
    private readonly CancellationTokenSource _stopping = new();
    private readonly Action<string>? _log;
    private WebApplication? _app;
    private int _disposed;

    /// <param name="model">the model (not disposed by the server)</param>
    /// <param name="options">settings</param>
    /// <param name="log">receives one line per request and unexpected errors (null: silent)</param>
    public CriaServer(LlamaModel model, ServerOptions? options = null, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        options ??= new ServerOptions();
        options.Validate();
        _model = model;
        _options = options;
        _log = log;
        int ctx = options.ContextSize > 0 ? options.ContextSize : Math.Min(model.Config.ContextLength, 4096);
        _chat = ChatFormatter.FromModel(model, options.ChatTemplate);
        _apiKey = string.IsNullOrEmpty(options.ApiKey) ? null : Encoding.UTF8.GetBytes(options.ApiKey);
        ModelName = options.ModelName
            ?? (model.File.Path is { } p ? Path.GetFileName(p) : null)
            ?? model.File.GetString("general.name")
            ?? "model";
        _pool = new SlotPool(model, options.Parallel, new ContextOptions { ContextSize = ctx, KvCacheType = options.KvCacheType }, options.QueueSize);
        _scheduler = new GenerationScheduler(options.Parallel, PromptChunk, Metrics, log);
    }

    /// <summary>Prompt tokens of one request evaluated per scheduling round (others decode in between).</summary>
    private const int PromptChunk = 256;

    public ServerMetrics Metrics { get; } = new();
    internal SlotPool Pool => _pool;
    internal GenerationScheduler Scheduler => _scheduler;
    public string ModelName { get; }
    /// <summary>Context size of each slot.</summary>
    public int ContextSize => _pool.ContextSize;
    /// <summary>The address the server listens on (with the real port), once started.</summary>
    public string? Url { get; private set; }
    /// <summary>Cancelled when the server is stopping (also by the host's own signal handling).</summary>
    public CancellationToken Stopping => _stopping.Token;

    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        if (_app != null) throw new InvalidOperationException("the server is already started");
        IPAddress address = _options.Host.Equals("localhost", StringComparison.OrdinalIgnoreCase)
            ? IPAddress.Loopback
            : IPAddress.TryParse(_options.Host, out var ip) ? ip : throw new ArgumentException($"'{_options.Host}' is not an IP address or localhost");

        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            ApplicationName = typeof(CriaServer).Assembly.GetName().Name,
            ContentRootPath = AppContext.BaseDirectory,
            Args = Array.Empty<string>(),
        });
        builder.Logging.ClearProviders();
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(5));
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.MaxRequestBodySize = RequestJson.DrainLimit(_options.MaxRequestBodyBytes);
            k.Listen(address, _options.Port);
        });
        var app = builder.Build();
        app.Use(OuterAsync);
        app.Use(AuthorizeAsync);
        app.MapGet("/", ChatPage.Serve);
        app.MapGet("/health", Health);
        app.MapGet("/v1/health", Health);
        app.MapGet("/v1/models", Models);
        app.MapGet("/models", Models);
        app.MapGet("/metrics", MetricsAsync);
        app.MapPost("/v1/completions", CompletionsAsync);
        app.MapPost("/completions", CompletionsAsync);
        app.MapPost("/v1/chat/completions", ChatCompletionsAsync);
        app.MapPost("/chat/completions", ChatCompletionsAsync);
        app.MapPost("/v1/embeddings", EmbeddingsAsync);
        app.MapPost("/embeddings", EmbeddingsAsync);
        app.MapPost("/infill", InfillAsync);
        app.MapPost("/tokenize", TokenizeAsync);
        app.MapPost("/detokenize", DetokenizeAsync);
        app.Lifetime.ApplicationStopping.Register(() => _stopping.Cancel());
        await app.StartAsync(cancellationToken).ConfigureAwait(false);
        _app = app;
        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses;
        Url = addresses?.FirstOrDefault() ?? $"http://{_options.Host}:{_options.Port}";
    }

    public async Task StopAsync(CancellationToken cancellationToken = default)
    {
        _stopping.Cancel();
        if (_app != null) await _app.StopAsync(cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        try { await StopAsync().ConfigureAwait(false); }
        finally
        {
            if (_app != null) await _app.DisposeAsync().ConfigureAwait(false);
            _scheduler.Dispose();
            _pool.Dispose();
            _stopping.Dispose();
        }
    }

    // ---- middleware ----

    private async Task OuterAsync(HttpContext ctx, RequestDelegate next)
    {
        Metrics.Request();
        long start = Stopwatch.GetTimestamp();
        try
        {
            await next(ctx).ConfigureAwait(false);
            if (!ctx.Response.HasStarted && ctx.Response.StatusCode is 404 or 405)
            {
                bool wrongMethod = ctx.Response.StatusCode == 405;
                await WriteErrorAsync(ctx, new ApiException(ctx.Response.StatusCode,
                    wrongMethod ? $"method {ctx.Request.Method} is not allowed for {ctx.Request.Path}" : $"no such endpoint: {ctx.Request.Method} {ctx.Request.Path}",
                    code: wrongMethod ? "method_not_allowed" : "not_found")).ConfigureAwait(false);
            }
        }
        catch (ApiException e) when (!ctx.Response.HasStarted)
        {
            await WriteErrorAsync(ctx, e).ConfigureAwait(false);
        }
        catch (BadHttpRequestException e) when (!ctx.Response.HasStarted)
        {
            bool tooLarge = e.StatusCode == StatusCodes.Status413PayloadTooLarge;
            await WriteErrorAsync(ctx, new ApiException(e.StatusCode,
                tooLarge ? $"the request body is larger than {_options.MaxRequestBodyBytes} bytes" : $"bad request: {e.Message}",
                code: tooLarge ? "request_too_large" : null)).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException && ctx.RequestAborted.IsCancellationRequested)
        {
            // The client went away; nothing to answer.
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested && !ctx.Response.HasStarted)
        {
            await WriteErrorAsync(ctx, new ApiException(503, "the server is shutting down", code: "shutting_down")).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            _log?.Invoke($"error: {ctx.Request.Method} {ctx.Request.Path}: {e.GetType().Name}: {e.Message}");
            if (!ctx.Response.HasStarted)
                await WriteErrorAsync(ctx, new ApiException(500, "internal server error", code: "internal_error")).ConfigureAwait(false);
            else
                ctx.Abort();
        }
        finally
        {
            if (ctx.Response.StatusCode >= 400) Metrics.Error();
            _log?.Invoke($"{ctx.Request.Method} {ctx.Request.Path} {ctx.Response.StatusCode} {Stopwatch.GetElapsedTime(start).TotalMilliseconds:F0} ms"
                + (ctx.RequestAborted.IsCancellationRequested ? " (client disconnected)" : ""));
        }
    }

    private Task AuthorizeAsync(HttpContext ctx, RequestDelegate next)
    {
        if (_apiKey is null || ctx.Request.Path.Equals("/") || ctx.Request.Path.Equals("/health") || ctx.Request.Path.Equals("/v1/health")) return next(ctx);
        string header = ctx.Request.Headers.Authorization.ToString();
        const string prefix = "Bearer ";
        bool ok = header.StartsWith(prefix, StringComparison.OrdinalIgnoreCase)
            && CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(header[prefix.Length..].Trim()), _apiKey);
        if (ok) return next(ctx);
        ctx.Response.Headers.WWWAuthenticate = "Bearer";
        throw new ApiException(401, header.Length == 0 ? "missing API key: send 'Authorization: Bearer KEY'" : "invalid API key", code: "invalid_api_key");
    }

    private static Task WriteErrorAsync(HttpContext ctx, ApiException e)
    {
        ctx.Response.Clear();
        if (e.Status == 401) ctx.Response.Headers.WWWAuthenticate = "Bearer";
        return WriteJsonAsync(ctx, e.Body(), e.Status);
    }

    private static Task WriteJsonAsync(HttpContext ctx, JsonNode node, int status = 200)
    {
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json; charset=utf-8";
        return ctx.Response.WriteAsync(node.ToJsonString(JsonOptions), Encoding.UTF8, CancellationToken.None);
    }

    // ---- simple endpoints ----

    private Task Health(HttpContext ctx)
    {
        int active = _pool.Active;
        return WriteJsonAsync(ctx, new JsonObject
        {
            ["status"] = "ok",
            ["slots_idle"] = _pool.Count - active,
            ["slots_processing"] = active,
        });
    }

    private Task Models(HttpContext ctx) => WriteJsonAsync(ctx, new JsonObject
    {
        ["object"] = "list",
        ["data"] = new JsonArray(new JsonObject
        {
            ["id"] = ModelName,
            ["object"] = "model",
            ["created"] = _created,
            ["owned_by"] = "cria",
            ["meta"] = new JsonObject
            {
                ["n_ctx"] = _pool.ContextSize,
                ["n_ctx_train"] = _model.Config.ContextLength,
                ["n_vocab"] = _model.Config.VocabularySize,
                ["n_embd"] = _model.Config.EmbeddingLength,
                ["n_layer"] = _model.Config.BlockCount,
                ["slots"] = _pool.Count,
            },
        }),
    });

    private Task MetricsAsync(HttpContext ctx)
    {
        ctx.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
        return ctx.Response.WriteAsync(Metrics.Render(_pool.QueueDepth, _pool.Active, _pool.Count), CancellationToken.None);
    }

    private async Task TokenizeAsync(HttpContext ctx)
    {
        var body = await RequestJson.ReadObjectAsync(ctx, _options.MaxRequestBodyBytes).ConfigureAwait(false);
        string content = RequestJson.String(body, "content") ?? throw ApiException.BadRequest("'content' is required", "content", "missing_field");
        bool addSpecial = RequestJson.Bool(body, "add_special") ?? false;
        bool parseSpecial = RequestJson.Bool(body, "parse_special") ?? true;
        bool withPieces = RequestJson.Bool(body, "with_pieces") ?? false;
        int[] ids = _model.Tokenizer.Encode(content, addSpecial, parseSpecial);
        var tokens = new JsonArray();
        foreach (int id in ids)
        {
            if (withPieces)
                tokens.Add(new JsonObject { ["id"] = id, ["piece"] = Piece(id) });
            else
                tokens.Add(id);
        }
        await WriteJsonAsync(ctx, new JsonObject { ["tokens"] = tokens }).ConfigureAwait(false);
    }

    private async Task DetokenizeAsync(HttpContext ctx)
    {
        var body = await RequestJson.ReadObjectAsync(ctx, _options.MaxRequestBodyBytes).ConfigureAwait(false);
        int[] ids = RequestJson.Tokens(body, "tokens", _model.Config.VocabularySize) ?? throw ApiException.BadRequest("'tokens' is required", "tokens", "missing_field");
        await WriteJsonAsync(ctx, new JsonObject { ["content"] = _model.Tokenizer.Decode(ids) }).ConfigureAwait(false);
    }

    // ---- completions ----

    private async Task CompletionsAsync(HttpContext ctx)
    {
        var body = await RequestJson.ReadObjectAsync(ctx, _options.MaxRequestBodyBytes).ConfigureAwait(false);
        int[] prompt = ParsePrompt(body);
        var options = ParseOptions(body, defaultMaxTokens: 16, chat: false);
        int logprobs = ParseLogprobs(body, chat: false);
        bool stream = RequestJson.Bool(body, "stream") ?? false;
        await GenerateAsync(ctx, prompt, options, logprobs, stream, ResponseKind.Completion).ConfigureAwait(false);
    }

    private async Task ChatCompletionsAsync(HttpContext ctx)
    {
        var body = await RequestJson.ReadObjectAsync(ctx, _options.MaxRequestBodyBytes).ConfigureAwait(false);
        var messages = ParseMessages(body);
        var options = ParseOptions(body, defaultMaxTokens: -1, chat: true);
        int logprobs = ParseLogprobs(body, chat: true);
        bool stream = RequestJson.Bool(body, "stream") ?? false;
        int[] prompt;
        try
        {
            prompt = _chat.Format(messages);
        }
        catch (ChatTemplateException e)
        {
            throw ApiException.BadRequest($"the chat template cannot render these messages: {e.Message}", "messages", "chat_template_error");
        }
        await GenerateAsync(ctx, prompt, options, logprobs, stream, ResponseKind.Chat).ConfigureAwait(false);
    }

    /// <summary>
    /// <c>POST /infill</c> (Code Llama fill-in-the-middle, as llama.cpp's server): <c>input_prefix</c> and
    /// <c>input_suffix</c>, the middle generated until <c>&lt;EOT&gt;</c>; answered in the completion shape plus
    /// <c>content</c>. 400 when the model's vocabulary has no FIM tokens.
    /// </summary>
    private async Task InfillAsync(HttpContext ctx)
    {
        var body = await RequestJson.ReadObjectAsync(ctx, _options.MaxRequestBodyBytes).ConfigureAwait(false);
        if (!Infill.IsSupported(_model.Vocabulary))
            throw ApiException.BadRequest("this model has no fill-in-the-middle tokens (<PRE>, <SUF>, <MID>); infill needs a Code Llama model", null, "infill_not_supported");
        string prefix = RequestJson.String(body, "input_prefix") ?? "";
        string suffix = RequestJson.String(body, "input_suffix") ?? "";
        if (prefix.Length == 0 && suffix.Length == 0)
            throw ApiException.BadRequest("give 'input_prefix' and/or 'input_suffix'", "input_prefix", "missing_field");
        int[] prompt = Infill.BuildPrompt(_model.Tokenizer, prefix, suffix);
        if (body["n_predict"] != null && body["max_tokens"] == null) body["max_tokens"] = body["n_predict"]!.DeepClone();
        var options = ParseOptions(body, defaultMaxTokens: -1, chat: false);
        int logprobs = ParseLogprobs(body, chat: false);
        bool stream = RequestJson.Bool(body, "stream") ?? false;
        await GenerateAsync(ctx, prompt, options, logprobs, stream, ResponseKind.Infill).ConfigureAwait(false);
    }

    /// <summary>
    /// <c>POST /v1/embeddings</c>: for each input (a string, an array of strings, or token arrays) the mean of
    /// the final hidden states over its tokens, scaled to unit length; <c>encoding_format</c> float or base64.
    /// </summary>
    private async Task EmbeddingsAsync(HttpContext ctx)
    {
        var body = await RequestJson.ReadObjectAsync(ctx, _options.MaxRequestBodyBytes).ConfigureAwait(false);
        var inputs = ParseEmbeddingInputs(body);
        string format = RequestJson.String(body, "encoding_format") ?? "float";
        if (format is not ("float" or "base64"))
            throw ApiException.BadRequest("'encoding_format' must be \"float\" or \"base64\"", "encoding_format", "invalid_value");
        if (RequestJson.Int(body, "dimensions", 1) is { } dims && dims != _model.Config.EmbeddingLength)
            throw ApiException.BadRequest($"this model's embeddings have {_model.Config.EmbeddingLength} dimensions", "dimensions", "invalid_value");
        for (int i = 0; i < inputs.Count; i++)
        {
            if (inputs[i].Length == 0) throw ApiException.BadRequest($"input {i} has no tokens", "input", "invalid_value");
            if (inputs[i].Length > _pool.ContextSize)
                throw ApiException.BadRequest($"input {i} is {inputs[i].Length} tokens long but the context holds {_pool.ContextSize}", "input", "context_length_exceeded");
        }

        Slot slot = await AcquireSlotAsync(Array.Empty<int>(), ctx).ConfigureAwait(false);
        float[][] vectors;
        try
        {
            vectors = await _scheduler.RunAsync(() =>
            {
                var result = new float[inputs.Count][];
                try
                {
                    for (int i = 0; i < inputs.Count; i++) result[i] = SentenceEmbedding.MeanPooledNormalized(slot.Session.Context, inputs[i]);
                }
                finally
                {
                    slot.Session.Reset(); // the cache no longer holds the slot's conversation
                }
                return result;
            }).WaitAsync(ctx.RequestAborted).ConfigureAwait(false);
        }
        finally
        {
            _pool.Release(slot);
        }
        var data = new JsonArray();
        int total = 0;
        for (int i = 0; i < vectors.Length; i++)
        {
            total += inputs[i].Length;
            JsonNode embedding;
            if (format == "base64")
            {
                var bytes = new byte[vectors[i].Length * 4];
                System.Runtime.InteropServices.MemoryMarshal.AsBytes(vectors[i].AsSpan()).CopyTo(bytes);
                embedding = Convert.ToBase64String(bytes);
            }
            else
            {
                var array = new JsonArray();
                foreach (float v in vectors[i]) array.Add(v);
                embedding = array;
            }
            data.Add(new JsonObject { ["object"] = "embedding", ["index"] = i, ["embedding"] = embedding });
        }
        await WriteJsonAsync(ctx, new JsonObject
        {
            ["object"] = "list",
            ["data"] = data,
            ["model"] = ModelName,
            ["usage"] = new JsonObject { ["prompt_tokens"] = total, ["total_tokens"] = total },
        }).ConfigureAwait(false);
    }

    private List<int[]> ParseEmbeddingInputs(JsonObject body)
    {
        var tok = _model.Tokenizer;
        int vocab = _model.Config.VocabularySize;
        int[] Text(string s) => tok.Encode(s, addSpecial: true, parseSpecial: false);
        switch (body["input"])
        {
            case null:
                throw ApiException.BadRequest("'input' is required", "input", "missing_field");
            case JsonValue v when v.GetValueKind() == JsonValueKind.String:
                return new List<int[]> { Text(v.GetValue<string>()) };
            case JsonArray a when a.Count > 0 && a.All(e => e is JsonValue s && s.GetValueKind() == JsonValueKind.String):
                if (a.Count > 256) throw ApiException.BadRequest("at most 256 inputs per request", "input", "invalid_value");
                return a.Select(e => Text(e!.GetValue<string>())).ToList();
            case JsonArray a when a.Count > 0 && a.All(e => e is JsonValue n && n.GetValueKind() == JsonValueKind.Number):
                return new List<int[]> { RequestJson.TokenArray(a, "input", vocab) };
            case JsonArray a when a.Count > 0 && a.All(e => e is JsonArray):
                if (a.Count > 256) throw ApiException.BadRequest("at most 256 inputs per request", "input", "invalid_value");
                return a.Select(e => RequestJson.TokenArray((JsonArray)e!, "input", vocab)).ToList();
            default:
                throw ApiException.BadRequest("'input' must be a string, an array of strings, or token ids", "input", "invalid_type");
        }
    }

    private int[] ParsePrompt(JsonObject body)
    {
        var node = body["prompt"];
        var tok = _model.Tokenizer;
        switch (node)
        {
            case null:
                throw ApiException.BadRequest("'prompt' is required", "prompt", "missing_field");
            case JsonValue v when v.GetValueKind() == JsonValueKind.String:
                return tok.Encode(v.GetValue<string>(), addSpecial: true, parseSpecial: true);
            case JsonArray a when a.Count == 1 && a[0] is JsonValue s && s.GetValueKind() == JsonValueKind.String:
                return tok.Encode(s.GetValue<string>(), addSpecial: true, parseSpecial: true);
            case JsonArray a when a.Count > 0 && a.All(e => e is JsonValue n && n.GetValueKind() == JsonValueKind.Number):
                return RequestJson.TokenArray(a, "prompt", _model.Config.VocabularySize);
            case JsonArray:
                throw ApiException.BadRequest("'prompt' must be a string, an array of one string or an array of token ids (one prompt per request)", "prompt", "invalid_value");
            default:
                throw ApiException.BadRequest("'prompt' must be a string", "prompt", "invalid_type");
        }
    }

    private static List<ChatMessage> ParseMessages(JsonObject body)
    {
        if (body["messages"] is not JsonArray array || array.Count == 0)
            throw ApiException.BadRequest("'messages' must be a non-empty array of messages", "messages", body["messages"] is null ? "missing_field" : "invalid_type");
        var list = new List<ChatMessage>(array.Count);
        for (int i = 0; i < array.Count; i++)
        {
            string param = $"messages[{i}]";
            if (array[i] is not JsonObject m) throw ApiException.BadRequest($"'{param}' must be an object", param, "invalid_type");
            string role = RequestJson.String(m, "role") ?? throw ApiException.BadRequest($"'{param}.role' is required", param + ".role", "missing_field");
            string? content = m["content"] switch
            {
                null => null,
                JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
                JsonArray parts => string.Concat(parts.Select(p =>
                    p is JsonObject o && RequestJson.String(o, "type") == "text" && RequestJson.String(o, "text") is { } text
                        ? text
                        : throw ApiException.BadRequest($"'{param}.content' parts must be {{\"type\": \"text\", \"text\": ...}} (only text is supported)", param + ".content", "invalid_value"))),
                _ => throw ApiException.BadRequest($"'{param}.content' must be a string or an array of text parts", param + ".content", "invalid_type"),
            };
            list.Add(new ChatMessage(role, content) { Name = RequestJson.String(m, "name") });
        }
        return list;
    }

    private enum ResponseKind { Completion, Chat, Infill }

    /// <summary>
    /// How many alternatives per token the request wants (-1: no log-probabilities). Chat: <c>logprobs: true</c>
    /// with optional <c>top_logprobs</c> (0..20); completions: <c>logprobs: N</c> (0..20).
    /// </summary>
    private static int ParseLogprobs(JsonObject b, bool chat)
    {
        if (chat)
        {
            bool wanted = RequestJson.Bool(b, "logprobs") ?? false;
            int? top = RequestJson.Int(b, "top_logprobs", 0, TokenLogprobs.MaxTop);
            if (top != null && !wanted) throw ApiException.BadRequest("'top_logprobs' needs 'logprobs': true", "top_logprobs", "invalid_value");
            return wanted ? top ?? 0 : -1;
        }
        return RequestJson.Int(b, "logprobs", 0, TokenLogprobs.MaxTop) ?? -1;
    }

    private static GenerationOptions ParseOptions(JsonObject b, int defaultMaxTokens, bool chat)
    {
        int? maxTokens = chat ? RequestJson.Int(b, "max_completion_tokens", 0) ?? RequestJson.Int(b, "max_tokens", 0) : RequestJson.Int(b, "max_tokens", 0);
        if (RequestJson.Int(b, "n") is { } n && n != 1)
            throw ApiException.BadRequest("only n = 1 is supported", "n", "invalid_value");
        var d = new SamplerOptions();
        long? seed = RequestJson.Integer(b, "seed");
        var sampling = new SamplerOptions
        {
            Temperature = RequestJson.Float(b, "temperature", 0) ?? d.Temperature,
            TopP = RequestJson.Float(b, "top_p", 0, 1) ?? d.TopP,
            TopK = RequestJson.Int(b, "top_k", 0) ?? d.TopK,
            MinP = RequestJson.Float(b, "min_p", 0, 1) ?? d.MinP,
            RepeatPenalty = RequestJson.Float(b, "repeat_penalty") ?? d.RepeatPenalty,
            PresencePenalty = RequestJson.Float(b, "presence_penalty", -2, 2) ?? d.PresencePenalty,
            FrequencyPenalty = RequestJson.Float(b, "frequency_penalty", -2, 2) ?? d.FrequencyPenalty,
            Seed = seed is >= 0 ? (ulong)seed.Value : null,
        };
        try
        {
            sampling.Validate();
        }
        catch (ArgumentException e)
        {
            string message = e.ParamName is null ? e.Message : e.Message.Replace($" (Parameter '{e.ParamName}')", "");
            string? param = e.ParamName switch
            {
                nameof(SamplerOptions.Temperature) => "temperature",
                nameof(SamplerOptions.TopP) => "top_p",
                nameof(SamplerOptions.MinP) => "min_p",
                nameof(SamplerOptions.RepeatPenalty) => "repeat_penalty",
                nameof(SamplerOptions.PresencePenalty) => "presence_penalty",
                nameof(SamplerOptions.FrequencyPenalty) => "frequency_penalty",
                _ => null,
            };
            throw ApiException.BadRequest(message, param, "invalid_value");
        }
        return new GenerationOptions
        {
            MaxTokens = maxTokens ?? defaultMaxTokens,
            Sampling = sampling,
            StopSequences = RequestJson.Stop(b),
        };
    }

    /// <summary>Runs one generation on a slot through the scheduler and answers with JSON or an SSE stream.</summary>
    private async Task GenerateAsync(HttpContext ctx, int[] prompt, GenerationOptions options, int topLogprobs, bool stream, ResponseKind kind)
    {
        bool chat = kind == ResponseKind.Chat;
        string param = kind switch { ResponseKind.Chat => "messages", ResponseKind.Infill => "input_prefix", _ => "prompt" };
        if (prompt.Length == 0) throw ApiException.BadRequest("the prompt has no tokens", param, "invalid_value");
        if (prompt.Length > _pool.ContextSize)
            throw ApiException.BadRequest($"the prompt is {prompt.Length} tokens long but the context holds {_pool.ContextSize}", param, "context_length_exceeded");

        Slot slot = await AcquireSlotAsync(prompt, ctx).ConfigureAwait(false);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted, _stopping.Token);
        GenerationJob? job = null;
        bool released = false;
        try
        {
            var generator = slot.Session.StartGeneration(prompt, options);
            job = new GenerationJob(generator, new GeneratedText(_model.Tokenizer, options.StopSequences), topLogprobs, cts.Token);
            _scheduler.Submit(job);

            string id = (chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N");
            long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
            var text = new StringBuilder();
            var logprobs = topLogprobs >= 0 ? new List<TokenLogprob>() : null;
            int textOffset = 0;
            if (stream)
            {
                ctx.Response.StatusCode = 200;
                ctx.Response.ContentType = "text/event-stream; charset=utf-8";
                ctx.Response.Headers.CacheControl = "no-cache";
                if (chat)
                    await WriteEventAsync(ctx, Chunk(id, created, chat, new JsonObject { ["role"] = "assistant", ["content"] = "" }, null, null), cts.Token).ConfigureAwait(false);
                else
                    await ctx.Response.Body.FlushAsync(cts.Token).ConfigureAwait(false);
            }
            await foreach (var piece in job.Output.ReadAllAsync(cts.Token).ConfigureAwait(false))
            {
                if (stream)
                {
                    JsonNode? lp = piece.Logprob is { } one ? LogprobsJson(chat, new[] { one }, textOffset) : null;
                    await WriteEventAsync(ctx, Chunk(id, created, chat, chat ? new JsonObject { ["content"] = piece.Text } : piece.Text, null, lp), cts.Token).ConfigureAwait(false);
                    textOffset += piece.Text.Length;
                }
                else
                {
                    text.Append(piece.Text);
                    if (piece.Logprob is { } one) logprobs!.Add(one);
                }
            }
            await job.Done.ConfigureAwait(false);
            cts.Token.ThrowIfCancellationRequested();
            var stats = job.Stats!;
            // The job is done, so the slot is free: release it before the last bytes go out, so that a client that has read
            // the whole response finds the slot free and the completion counted.
            ReleaseAfter(job, slot);
            released = true;
            string finish = stats.StopReason is StopReason.MaxTokens or StopReason.ContextFull ? "length" : "stop";
            var usage = new JsonObject
            {
                ["prompt_tokens"] = stats.PromptTokens,
                ["completion_tokens"] = stats.GeneratedTokens,
                ["total_tokens"] = stats.PromptTokens + stats.GeneratedTokens,
            };
            var timings = new JsonObject
            {
                ["prompt_n"] = stats.PromptTokensEvaluated,
                ["cache_n"] = stats.PromptTokens - stats.PromptTokensEvaluated,
                ["prompt_ms"] = Math.Round(stats.PromptTime.TotalMilliseconds, 3),
                ["predicted_n"] = stats.GeneratedTokens,
                ["predicted_ms"] = Math.Round(stats.GenerationTime.TotalMilliseconds, 3),
            };
            if (stream)
            {
                var last = Chunk(id, created, chat, chat ? new JsonObject() : "", finish, null);
                last["usage"] = usage;
                last["timings"] = timings;
                await WriteEventAsync(ctx, last, cts.Token).ConfigureAwait(false);
                await ctx.Response.WriteAsync("data: [DONE]\n\n", cts.Token).ConfigureAwait(false);
                await ctx.Response.Body.FlushAsync(cts.Token).ConfigureAwait(false);
            }
            else
            {
                JsonNode? lp = logprobs is null ? null : LogprobsJson(chat, logprobs, 0);
                var choice = new JsonObject { ["index"] = 0 };
                if (chat) choice["message"] = new JsonObject { ["role"] = "assistant", ["content"] = text.ToString() };
                else choice["text"] = text.ToString();
                choice["logprobs"] = lp;
                choice["finish_reason"] = finish;
                var response = new JsonObject
                {
                    ["id"] = id,
                    ["object"] = chat ? "chat.completion" : "text_completion",
                    ["created"] = created,
                    ["model"] = ModelName,
                    ["choices"] = new JsonArray(choice),
                    ["usage"] = usage,
                    ["timings"] = timings,
                };
                if (kind == ResponseKind.Infill) response["content"] = text.ToString();
                await WriteJsonAsync(ctx, response).ConfigureAwait(false);
            }
        }
        finally
        {
            cts.Cancel();
            if (!released)
            {
                if (job != null) await job.Done.ConfigureAwait(false); // the slot's context is the scheduler's until the job is done
                ReleaseAfter(job, slot);
            }
        }
    }

    /// <summary>Counts a finished job's completion (when it produced one) and gives its slot back.</summary>
    private void ReleaseAfter(GenerationJob? job, Slot slot)
    {
        if (job?.Stats is { } s) Metrics.Completion(s.PromptTokens, s.GeneratedTokens);
        _pool.Release(slot);
    }

    private async Task<Slot> AcquireSlotAsync(int[] prompt, HttpContext ctx)
    {
        try
        {
            return await _pool.AcquireAsync(prompt, ctx.RequestAborted).ConfigureAwait(false);
        }
        catch (QueueFullException e)
        {
            Metrics.Rejected();
            ctx.Response.Headers.RetryAfter = "1";
            throw new ApiException(503, e.Message, code: "queue_full");
        }
    }

    /// <summary>
    /// Log-probabilities in OpenAI's shape: for chat <c>{"content": [{token, logprob, bytes, top_logprobs}]}</c>,
    /// for completions <c>{tokens, token_logprobs, top_logprobs, text_offset}</c>.
    /// </summary>
    private JsonNode LogprobsJson(bool chat, IReadOnlyList<TokenLogprob> entries, int textOffset)
    {
        if (chat)
        {
            var content = new JsonArray();
            foreach (var e in entries)
            {
                var top = new JsonArray();
                foreach (var (token, logprob) in e.Top) top.Add(TokenJson(token, logprob));
                var entry = TokenJson(e.Token, e.Logprob);
                entry["top_logprobs"] = top;
                content.Add(entry);
            }
            return new JsonObject { ["content"] = content };
        }
        var tokens = new JsonArray();
        var tokenLogprobs = new JsonArray();
        var tops = new JsonArray();
        var offsets = new JsonArray();
        foreach (var e in entries)
        {
            string piece = Piece(e.Token);
            tokens.Add(piece);
            tokenLogprobs.Add(e.Logprob);
            var top = new JsonObject();
            foreach (var (token, logprob) in e.Top) top[Piece(token)] = logprob;
            tops.Add(top);
            offsets.Add(textOffset);
            textOffset += piece.Length;
        }
        return new JsonObject { ["tokens"] = tokens, ["token_logprobs"] = tokenLogprobs, ["top_logprobs"] = tops, ["text_offset"] = offsets };
    }

    private string Piece(int token) => Encoding.UTF8.GetString(_model.Tokenizer.TokenToPiece(token));

    private JsonObject TokenJson(int token, float logprob)
    {
        byte[] bytes = _model.Tokenizer.TokenToPiece(token);
        var array = new JsonArray();
        foreach (byte x in bytes) array.Add((int)x);
        return new JsonObject { ["token"] = Encoding.UTF8.GetString(bytes), ["logprob"] = logprob, ["bytes"] = array };
    }

    private JsonObject Chunk(string id, long created, bool chat, JsonNode delta, string? finish, JsonNode? logprobs)
    {
        var choice = new JsonObject { ["index"] = 0 };
        if (chat) choice["delta"] = delta;
        else choice["text"] = delta;
        choice["logprobs"] = logprobs;
        choice["finish_reason"] = finish;
        return new JsonObject
        {
            ["id"] = id,
            ["object"] = chat ? "chat.completion.chunk" : "text_completion",
            ["created"] = created,
            ["model"] = ModelName,
            ["choices"] = new JsonArray(choice),
        };
    }

    private static async Task WriteEventAsync(HttpContext ctx, JsonNode data, CancellationToken cancellationToken)
    {
        await ctx.Response.WriteAsync("data: " + data.ToJsonString(JsonOptions) + "\n\n", cancellationToken).ConfigureAwait(false);
        await ctx.Response.Body.FlushAsync(cancellationToken).ConfigureAwait(false);
    }
}
