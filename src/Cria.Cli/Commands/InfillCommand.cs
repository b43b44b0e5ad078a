using System.CommandLine;
using System.Text;
using Cria.Generation;
using Cria.Model;
using Cria.Sampling;

namespace Cria.Cli.Commands;

/// <summary><c>cria infill</c>: fill in the code between a prefix and a suffix (Code Llama); prints only the middle.</summary>
internal static class InfillCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var prefix = new Option<string>("--prefix") { Description = "text before the gap", Required = true };
        var suffix = new Option<string>("--suffix") { Description = "text after the gap", DefaultValueFactory = _ => "" };
        var n = new Option<int>("--n-predict", "-n") { Description = "tokens to generate (-1: until <EOT> or a full context)", DefaultValueFactory = _ => 256 };
        var temp = CommonOptions.Temperature(0f);
        var seed = CommonOptions.Seed();
        var spm = new Option<bool>("--spm-infill") { Description = "suffix/prefix/middle order instead of prefix/suffix/middle" };
        var ctx = CommonOptions.Context();
        var threads = CommonOptions.Threads();
        var repack = new RepackOptions();
        var kv = CommonOptions.KvType();

        var cmd = new Command("infill", "fill in the middle between --prefix and --suffix (Code Llama)");
        foreach (Option o in new Option[] { model, prefix, suffix, n, temp, seed, spm, ctx, threads, kv, repack.NoRepack, repack.Cache })
            cmd.Options.Add(o);
        cmd.SetAction((ParseResult r, CancellationToken ct) => Task.FromResult(CliErrors.Guard(() =>
        {
            int maxTokens = r.GetValue(n);
            if (maxTokens < -1) throw new CliException($"-n must be -1 or more, not {maxTokens}");
            var sampling = new SamplerOptions { Temperature = r.GetValue(temp), Seed = r.GetValue(seed) };
            var kvType = CliErrors.ParseKvType(r.GetValue(kv));
            int nThreads = CommonOptions.ResolveThreads(r.GetValue(threads));
            string path = CliErrors.RequireModelFile(r.GetValue(model));

            using var llama = RepackOptions.Load(path, repack.ModelOptions(r, nThreads));
            Infill.RequireSupport(llama.Vocabulary); // a clear "error:" line when the model has no FIM tokens
            int ctxSize = CommonOptions.ResolveContext(r.GetValue(ctx), llama.Config.ContextLength);
            using var session = new LlamaSession(llama, new ContextOptions { ContextSize = ctxSize, KvCacheType = kvType });
            int[] tokens = Infill.BuildPrompt(llama.Tokenizer, r.GetValue(prefix) ?? "", r.GetValue(suffix) ?? "",
                new InfillOptions { SuffixFirst = r.GetValue(spm) });
            if (tokens.Length > ctxSize)
                throw new CliException($"the infill prompt is {tokens.Length} tokens long but the context holds {ctxSize} (raise -c)");

            var options = new GenerationOptions { MaxTokens = maxTokens, Sampling = sampling };
            var stdout = CliErrors.StandardOutput;
            var encoder = new UTF8Encoding(false);
            foreach (string piece in session.GenerateText(tokens, options, ct))
            {
                stdout.Write(encoder.GetBytes(piece));
                stdout.Flush();
            }
            var s = session.LastStats!;
            Console.Error.WriteLine();
            Console.Error.WriteLine($"cria: prompt {s.PromptTokens} tokens | generated {s.GeneratedTokens} tokens | stop: {s.StopReason}");
            return s.StopReason == StopReason.Cancelled ? 130 : 0;
        })));
        return cmd;
    }
}
