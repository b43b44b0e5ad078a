using System.CommandLine;
using Cria.Chat;
using Cria.Model;
using Cria.Server;

namespace Cria.Cli.Commands;

/// <summary>
/// <c>cria serve</c>: an OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions, /v1/models,
/// /tokenize, /detokenize, /health, /metrics). Listens on 127.0.0.1 unless --host says otherwise; Ctrl-C stops it.
/// </summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var host = new Option<string>("--host") { Description = "address to listen on (0.0.0.0: all interfaces)", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "TCP port (0: any free port)", DefaultValueFactory = _ => 8080 };
        var parallel = new Option<int>("--parallel", "-np") { Description = "slots: requests generated at the same time, each with its own KV cache", DefaultValueFactory = _ => 1 };
        var queue = new Option<int>("--queue-size") { Description = "requests that may wait for a slot (more get 503)", DefaultValueFactory = _ => 16 };
        var apiKey = new Option<string?>("--api-key") { Description = "require 'Authorization: Bearer KEY' (default: CRIA_API_KEY, else none)" };
        var template = CommonOptions.ChatTemplate();
        var alias = new Option<string?>("--alias") { Description = "model id reported by /v1/models (default: the file name)" };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "log every request on stderr" };
        var ctx = CommonOptions.Context();
        var threads = CommonOptions.Threads();
        var repack = new RepackOptions();
        var kv = CommonOptions.KvType();

        var cmd = new Command("serve", "serve a model over HTTP with an OpenAI-compatible API");
        foreach (Option o in new Option[] { model, host, port, parallel, queue, ctx, apiKey, template, alias, threads, kv, verbose, repack.NoRepack, repack.Cache })
            cmd.Options.Add(o);
        cmd.SetAction((ParseResult r, CancellationToken ct) => Task.FromResult(CliErrors.Guard(() =>
        {
            int p = r.GetValue(port);
            if (p is < 0 or > 65535) throw new CliException($"--port must be in 0..65535, not {p}");
            int np = r.GetValue(parallel);
            if (np < 1) throw new CliException($"--parallel must be at least 1, not {np}");
            int q = r.GetValue(queue);
            if (q < 0) throw new CliException($"--queue-size must not be negative, not {q}");
            string hostName = r.GetValue(host) ?? "127.0.0.1";
            if (!hostName.Equals("localhost", StringComparison.OrdinalIgnoreCase) && !System.Net.IPAddress.TryParse(hostName, out _))
                throw new CliException($"--host must be an IP address or localhost, not '{hostName}'");
            var kvType = CliErrors.ParseKvType(r.GetValue(kv));
            int nThreads = CommonOptions.ResolveThreads(r.GetValue(threads));
            string? key = r.GetValue(apiKey) ?? Environment.GetEnvironmentVariable("CRIA_API_KEY");
            ChatTemplate? chatTemplate = CommonOptions.ResolveChatTemplate(r.GetValue(template));
            string path = CliErrors.RequireModelFile(r.GetValue(model));

            using var llama = RepackOptions.Load(path, repack.ModelOptions(r, nThreads));
            int ctxSize = CommonOptions.ResolveContext(r.GetValue(ctx), llama.Config.ContextLength);
            var options = new ServerOptions
            {
                Host = hostName,
                Port = p,
                Parallel = np,
                QueueSize = q,
                ContextSize = ctxSize,
                KvCacheType = kvType,
                ApiKey = string.IsNullOrEmpty(key) ? null : key,
                ChatTemplate = chatTemplate,
                ModelName = r.GetValue(alias),
            };
            Action<string>? log = r.GetValue(verbose) ? line => Console.Error.WriteLine("cria serve: " + line) : null;
            var server = new CriaServer(llama, options, log);
            try
            {
                try
                {
                    server.StartAsync(ct).GetAwaiter().GetResult();
                }
                catch (IOException e)
                {
                    throw new CliException($"cannot listen on {hostName}:{p}: {e.Message}");
                }
                Console.Error.WriteLine($"cria serve: {server.ModelName} on {server.Url} | {np} slot(s) × {ctxSize} tokens, queue {q}, {llama.Threads} threads"
                    + (options.ApiKey != null ? ", API key required" : "") + " | Ctrl-C stops");
                if (!hostName.Equals("localhost", StringComparison.OrdinalIgnoreCase) && !System.Net.IPAddress.IsLoopback(System.Net.IPAddress.Parse(hostName)) && options.ApiKey is null)
                    Console.Error.WriteLine("cria serve: warning: listening beyond loopback without --api-key");
                WaitHandle.WaitAny(new[] { ct.WaitHandle, server.Stopping.WaitHandle });
                Console.Error.WriteLine("cria serve: stopping");
            }
            finally
            {
                server.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
            return 0;
        })));
        return cmd;
    }
}
