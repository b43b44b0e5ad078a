using System.CommandLine;
using System.Globalization;
using Cria.Evaluation;
using Cria.Model;

namespace Cria.Cli.Commands;

/// <summary><c>cria perplexity</c>: llama-perplexity's measurement over a text file.</summary>
internal static class PerplexityCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var file = new Option<string>("--file", "-f") { Description = "text file (raw UTF-8)", Required = true };
        var ctx = new Option<int>("--ctx-size", "-c") { Description = "tokens per chunk", DefaultValueFactory = _ => 512 };
        var batch = new Option<int>("--batch-size", "-b") { Description = "most tokens per forward pass", DefaultValueFactory = _ => 512 };
        var chunks = new Option<int>("--chunks") { Description = "score at most this many chunks (-1: all)", DefaultValueFactory = _ => -1 };
        var kv = CommonOptions.KvType();
        var threads = CommonOptions.Threads();
        var repack = new RepackOptions();
        var cmd = new Command("perplexity", "measure perplexity over a text the way llama-perplexity does");
        foreach (Option o in new Option[] { model, file, ctx, batch, chunks, kv, threads, repack.NoRepack, repack.Cache }) cmd.Options.Add(o);
        cmd.SetAction((ParseResult r, CancellationToken ct) => Task.FromResult(CliErrors.Guard(() =>
        {
            string text = CliErrors.ReadPromptFile(r.GetValue(file)!);
            int c = r.GetValue(ctx), b = r.GetValue(batch), n = r.GetValue(chunks);
            if (c < 2) throw new CliException($"-c must be at least 2, not {c}");
            if (b < 1) throw new CliException($"-b must be at least 1, not {b}");
            if (n < -1 || n == 0) throw new CliException($"--chunks must be -1 (all) or positive, not {n}");
            var kvType = CliErrors.ParseKvType(r.GetValue(kv));
            int nThreads = CommonOptions.ResolveThreads(r.GetValue(threads));
            string path = CliErrors.RequireModelFile(r.GetValue(model));
            using var llama = RepackOptions.Load(path, repack.ModelOptions(r, nThreads));
            var inv = CultureInfo.InvariantCulture;
            var result = Perplexity.Compute(llama, text, c, b, n, kvType, p =>
            {
                Console.Out.Write(string.Format(inv, "[{0}]{1:F4},", p.Chunk, p.RunningPerplexity));
                Console.Out.Flush();
            }, ct);
            Console.Out.WriteLine();
            Console.Out.WriteLine(string.Format(inv, "Final estimate: PPL = {0:F4} +/- {1:F5}", result.Perplexity, result.StandardError));
            Console.Error.WriteLine(string.Format(inv, "{0} chunks of {1} tokens, {2} tokens scored", result.Chunks, c, result.TokensScored));
            return 0;
        })));
        return cmd;
    }
}
