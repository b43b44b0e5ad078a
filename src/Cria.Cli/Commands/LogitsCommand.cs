using System.CommandLine;
using System.Text.Json;
using Cria.Model;

namespace Cria.Cli.Commands;

/// <summary>
/// <c>cria logits</c>: evaluates a prompt in one batch (as llama.cpp's llama_decode does) and prints
/// {"tokens": [...], "logits": [[...]]} — the last position's logits, or every position's with --all.
/// </summary>
internal static class LogitsCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var prompt = CommonOptions.Prompt();
        var file = CommonOptions.PromptFile();
        var all = new Option<bool>("--all") { Description = "print the logits of every position, not only the last" };
        var noBos = CommonOptions.NoBos();
        var special = CommonOptions.Special();
        var kv = CommonOptions.KvType();
        var ctx = CommonOptions.Context();
        var threads = CommonOptions.Threads();
        var repack = new RepackOptions();
        var cmd = new Command("logits", "print the logits of a prompt as JSON");
        foreach (Option o in new Option[] { model, prompt, file, all, noBos, special, kv, ctx, threads, repack.NoRepack, repack.Cache })
            cmd.Options.Add(o);
        cmd.SetAction(r => CliErrors.Guard(() =>
        {
            string text = CommonOptions.ResolvePrompt(r.GetValue(prompt), r.GetValue(file));
            var kvType = CliErrors.ParseKvType(r.GetValue(kv));
            int nThreads = CommonOptions.ResolveThreads(r.GetValue(threads));
            string path = CliErrors.RequireModelFile(r.GetValue(model));
            using var llama = RepackOptions.Load(path, repack.ModelOptions(r, nThreads));
            int[] tokens = llama.Tokenizer.Encode(text, addSpecial: !r.GetValue(noBos), parseSpecial: r.GetValue(special));
            if (tokens.Length == 0) throw new CliException("the prompt has no tokens (empty text without BOS)");
            int ctxSize = CommonOptions.ResolveContext(r.GetValue(ctx), llama.Config.ContextLength);
            if (tokens.Length > ctxSize)
                throw new CliException($"the prompt is {tokens.Length} tokens long but the context holds {ctxSize} (raise -c)");
            // One batch for the whole prompt, like a single llama_decode call.
            using var context = llama.CreateContext(new ContextOptions { ContextSize = ctxSize, KvCacheType = kvType, BatchSize = Math.Max(tokens.Length, 1) });
            int V = llama.Config.VocabularySize;
            float[] logits;
            logits = r.GetValue(all) ? context.EvaluateAll(tokens) : context.Evaluate(tokens).ToArray();

            using var json = new Utf8JsonWriter(CliErrors.StandardOutput);
            json.WriteStartObject();
            json.WriteStartArray("tokens");
            foreach (int t in tokens) json.WriteNumberValue(t);
            json.WriteEndArray();
            json.WriteStartArray("logits");
            int rows = logits.Length / V;
            for (int i = 0; i < rows; i++)
            {
                json.WriteStartArray();
                for (int j = 0; j < V; j++) json.WriteNumberValue(logits[(long)i * V + j]);
                json.WriteEndArray();
            }
            json.WriteEndArray();
            json.WriteEndObject();
            json.Flush();
            CliErrors.StandardOutput.Write("\n"u8);
            CliErrors.StandardOutput.Flush();
            return 0;
        }));
        return cmd;
    }
}
