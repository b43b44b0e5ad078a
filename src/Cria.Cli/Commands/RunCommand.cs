using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Cria.Generation;
using Cria.Model;
using Cria.Numerics.Kernels;
using Cria.Sampling;

namespace Cria.Cli.Commands;

/// <summary><c>cria run</c>: generate text from a prompt, streamed to stdout; a summary on stderr.</summary>
internal static class RunCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var prompt = CommonOptions.Prompt();
        var file = CommonOptions.PromptFile();
        var n = new Option<int>("--n-predict", "-n") { Description = "tokens to generate (-1: until end of text or a full context)", DefaultValueFactory = _ => 256 };
        var temp = CommonOptions.Temperature(0.8f);
        var topK = new Option<int>("--top-k") { Description = "keep the K most likely tokens (0: off)", DefaultValueFactory = _ => 40 };
        var topP = new Option<float>("--top-p") { Description = "nucleus sampling threshold (1: off)", DefaultValueFactory = _ => 0.95f };
        var minP = new Option<float>("--min-p") { Description = "drop tokens below P times the top probability (0: off)", DefaultValueFactory = _ => 0.05f };
        var repeat = new Option<float>("--repeat-penalty") { Description = "penalty for repeated tokens (1: off)", DefaultValueFactory = _ => 1.0f };
        var repeatLastN = new Option<int>("--repeat-last-n") { Description = "window of recent tokens the penalties look at", DefaultValueFactory = _ => 64 };
        var freq = new Option<float>("--frequency-penalty") { Description = "subtract count × this from a token's logit", DefaultValueFactory = _ => 0f };
        var presence = new Option<float>("--presence-penalty") { Description = "subtract this from the logit of any token already seen", DefaultValueFactory = _ => 0f };
        var seed = CommonOptions.Seed();
        var ctx = CommonOptions.Context();
        var threads = CommonOptions.Threads();
        var repack = new RepackOptions();
        var kv = CommonOptions.KvType();
        var noBos = CommonOptions.NoBos();
        var special = CommonOptions.Special();

        var cmd = new Command("run", "generate text from a prompt");
        foreach (Option o in new Option[] { model, prompt, file, n, temp, topK, topP, minP, repeat, repeatLastN, freq, presence, seed, ctx, threads, kv, noBos, special, repack.NoRepack, repack.Cache })
            cmd.Options.Add(o);
        cmd.SetAction((ParseResult r, CancellationToken ct) => Task.FromResult(CliErrors.Guard(() =>
        {
            string text = CommonOptions.ResolvePrompt(r.GetValue(prompt), r.GetValue(file));
            int maxTokens = r.GetValue(n);
            if (maxTokens < -1) throw new CliException($"-n must be -1 or more, not {maxTokens}");
            var sampling = new SamplerOptions
            {
                Temperature = r.GetValue(temp),
                TopK = r.GetValue(topK),
                TopP = r.GetValue(topP),
                MinP = r.GetValue(minP),
                RepeatPenalty = r.GetValue(repeat),
                PenaltyLastN = r.GetValue(repeatLastN),
                FrequencyPenalty = r.GetValue(freq),
                PresencePenalty = r.GetValue(presence),
                Seed = r.GetValue(seed),
            };
            ValidateSampling(sampling);
            var kvType = CliErrors.ParseKvType(r.GetValue(kv));
            int nThreads = CommonOptions.ResolveThreads(r.GetValue(threads));
            string path = CliErrors.RequireModelFile(r.GetValue(model));

            using var llama = RepackOptions.Load(path, repack.ModelOptions(r, nThreads));
            int ctxSize = CommonOptions.ResolveContext(r.GetValue(ctx), llama.Config.ContextLength);
            using var session = new LlamaSession(llama, new ContextOptions { ContextSize = ctxSize, KvCacheType = kvType });
            var options = new GenerationOptions
            {
                MaxTokens = maxTokens,
                Sampling = sampling,
                AddSpecialTokens = !r.GetValue(noBos),
                ParseSpecialTokens = r.GetValue(special),
            };
            int[] tokens = session.Tokenize(text, options.AddSpecialTokens, options.ParseSpecialTokens);
            if (tokens.Length > ctxSize)
                throw new CliException($"the prompt is {tokens.Length} tokens long but the context holds {ctxSize} (raise -c)");
            if (tokens.Length == 0)
                throw new CliException("the prompt is empty and no BOS token is added: nothing to start from");

            var stdout = CliErrors.StandardOutput;
            var encoder = new UTF8Encoding(false);
            foreach (string piece in session.GenerateText(tokens, options, ct))
            {
                byte[] bytes = encoder.GetBytes(piece);
                stdout.Write(bytes);
                stdout.Flush();
            }
            var s = session.LastStats!;
            var inv = CultureInfo.InvariantCulture;
            Console.Error.WriteLine();
            Console.Error.WriteLine(string.Format(inv,
                "cria: load {0:F0} ms | prompt {1} tokens, {2:F1} tok/s | generated {3} tokens, {4:F1} tok/s | stop: {5} | {6} threads, {7}, KV {8}",
                llama.LoadTime.TotalMilliseconds, s.PromptTokens, s.PromptTokensPerSecond, s.GeneratedTokens,
                s.GenerationTokensPerSecond, StopText(s.StopReason), llama.Threads, CpuFeatures.Describe(), kvType.ToString().ToLowerInvariant()));
            return s.StopReason == StopReason.Cancelled ? 130 : 0;
        })));
        return cmd;
    }

    private static readonly (string Property, string Option)[] OptionNames =
    {
        ("Temperature", "--temp"), ("TopK", "--top-k"), ("TopP", "--top-p"), ("MinP", "--min-p"),
        ("RepeatPenalty", "--repeat-penalty"), ("FrequencyPenalty", "--frequency-penalty"),
        ("PresencePenalty", "--presence-penalty"), ("PenaltyLastN", "--repeat-last-n"),
    };

    /// <summary>Validates sampler settings, naming the command-line options in the message.</summary>
    private static void ValidateSampling(SamplerOptions sampling)
    {
        try
        {
            sampling.Validate();
        }
        catch (ArgumentException e)
        {
            string message = e.ParamName is null ? e.Message : e.Message.Replace($" (Parameter '{e.ParamName}')", "");
            foreach (var (property, option) in OptionNames)
                if (message.StartsWith(property + " ", StringComparison.Ordinal))
                    message = option + message[property.Length..];
            throw new CliException(message);
        }
    }

    private static string StopText(StopReason r) => r switch
    {
        StopReason.EndOfGeneration => "end of text",
        StopReason.MaxTokens => "token limit",
        StopReason.ContextFull => "context full",
        StopReason.StopSequence => "stop sequence",
        StopReason.Cancelled => "cancelled",
        _ => r.ToString(),
    };
}
