using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Cria.Model;
using Cria.Numerics.Kernels;

namespace Cria.Cli.Commands;

/// <summary>
/// <c>cria bench</c>: llama-bench's yardsticks. pp = prompt processing of -p random tokens in
/// batches (one batch up to 512), tg = generation of -n tokens one at a time from an empty
/// context; each repeated -r times after a warm-up run, reported as mean ± standard deviation.
/// </summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var pp = new Option<int>("--n-prompt", "-p") { Description = "prompt tokens for the pp test (0: skip)", DefaultValueFactory = _ => 512 };
        var tg = new Option<int>("--n-gen", "-n") { Description = "tokens for the tg test (0: skip)", DefaultValueFactory = _ => 128 };
        var threads = CommonOptions.Threads();
        var reps = new Option<int>("--repetitions", "-r") { Description = "measured repetitions of each test", DefaultValueFactory = _ => 5 };
        var kv = CommonOptions.KvType();
        var batch = new Option<int>("--batch-size", "-b") { Description = "most tokens per forward pass in pp", DefaultValueFactory = _ => 512 };
        var repack = new RepackOptions();
        var json = new Option<bool>("--json") { Description = "print one JSON object (pp and tg are mean tokens per second)" };
        var cmd = new Command("bench", "measure prompt processing (pp) and generation (tg) speed like llama-bench");
        foreach (Option o in new Option[] { model, pp, tg, threads, reps, kv, batch, repack.NoRepack, repack.Cache, json }) cmd.Options.Add(o);
        cmd.SetAction((ParseResult r, CancellationToken ct) => Task.FromResult(CliErrors.Guard(() =>
        {
            int nPrompt = r.GetValue(pp), nGen = r.GetValue(tg), nReps = r.GetValue(reps), nBatch = r.GetValue(batch);
            if (nPrompt < 0) throw new CliException($"-p must be 0 or more, not {nPrompt}");
            if (nGen < 0) throw new CliException($"-n must be 0 or more, not {nGen}");
            if (nPrompt == 0 && nGen == 0) throw new CliException("nothing to measure: -p and -n are both 0");
            if (nReps < 1) throw new CliException($"-r must be at least 1, not {nReps}");
            if (nBatch < 1) throw new CliException($"-b must be at least 1, not {nBatch}");
            var kvType = CliErrors.ParseKvType(r.GetValue(kv));
            int nThreads = CommonOptions.ResolveThreads(r.GetValue(threads));
            string path = CliErrors.RequireModelFile(r.GetValue(model));

            using var llama = RepackOptions.Load(path, repack.ModelOptions(r, nThreads));
            int ctxSize = Math.Max(nPrompt, nGen);
            if (ctxSize > llama.Config.ContextLength)
                Console.Error.WriteLine($"note: the test needs {ctxSize} positions, more than the model's training context {llama.Config.ContextLength}");
            using var context = llama.CreateContext(new ContextOptions { ContextSize = ctxSize, BatchSize = Math.Min(nBatch, ctxSize), KvCacheType = kvType });
            var rng = new Random(1234);
            int vocab = llama.Config.VocabularySize;
            int[] prompt = new int[nPrompt];
            for (int i = 0; i < nPrompt; i++) prompt[i] = rng.Next(vocab);
            int[] one = new int[1];

            double RunPp()
            {
                context.Reset();
                long t0 = Stopwatch.GetTimestamp();
                context.Evaluate(prompt);
                return Stopwatch.GetElapsedTime(t0).TotalSeconds;
            }
            double RunTg()
            {
                context.Reset();
                long t0 = Stopwatch.GetTimestamp();
                for (int i = 0; i < nGen; i++)
                {
                    ct.ThrowIfCancellationRequested();
                    one[0] = (i * 7919 + 1) % vocab;
                    context.Evaluate(one);
                }
                return Stopwatch.GetElapsedTime(t0).TotalSeconds;
            }

            var ppRates = new List<double>();
            var tgRates = new List<double>();
            if (nPrompt > 0) RunPp(); // warm-up
            if (nGen > 0) RunTg();
            for (int rep = 0; rep < nReps; rep++)
            {
                ct.ThrowIfCancellationRequested();
                if (nPrompt > 0) ppRates.Add(nPrompt / RunPp());
                if (nGen > 0) tgRates.Add(nGen / RunTg());
            }

            var inv = CultureInfo.InvariantCulture;
            var (ppMean, ppStd) = Stats(ppRates);
            var (tgMean, tgStd) = Stats(tgRates);
            string modelName = Path.GetFileName(path);
            double sizeMiB = new FileInfo(path).Length / 1048576.0;
            if (r.GetValue(json))
            {
                var o = new Dictionary<string, object?>
                {
                    ["model"] = modelName,
                    ["size_mib"] = Math.Round(sizeMiB, 2),
                    ["threads"] = nThreads,
                    ["kernel_path"] = CpuFeatures.Describe(),
                    ["kv_type"] = kvType.ToString().ToLowerInvariant(),
                    ["n_prompt"] = nPrompt,
                    ["n_gen"] = nGen,
                    ["repetitions"] = nReps,
                    ["pp"] = nPrompt > 0 ? ppMean : null,
                    ["pp_stddev"] = nPrompt > 0 ? ppStd : null,
                    ["tg"] = nGen > 0 ? tgMean : null,
                    ["tg_stddev"] = nGen > 0 ? tgStd : null,
                    ["load_ms"] = llama.LoadTime.TotalMilliseconds,
                    ["repacked_mib"] = Math.Round(llama.Weights.RepackedBytes / 1048576.0, 2),
                    ["repack_cache"] = llama.Weights.RepackCacheState.ToString().ToLowerInvariant(),
                };
                Console.Out.WriteLine(JsonSerializer.Serialize(o, new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));
            }
            else
            {
                Console.Out.WriteLine(string.Format(inv, "model {0} ({1:F1} MiB), {2} threads, kernels {3}, KV {4}, {5} repetitions",
                    modelName, sizeMiB, nThreads, CpuFeatures.Describe(), kvType.ToString().ToLowerInvariant(), nReps));
                Console.Out.WriteLine(string.Format(inv, "loaded in {0:F0} ms, {1:F1} MiB of Q4_0/Q8_0/Q4_K/Q6_K weights in eight-row groups{2}",
                    llama.LoadTime.TotalMilliseconds, llama.Weights.RepackedBytes / 1048576.0,
                    llama.Weights.RepackCacheState == RepackCacheState.Loaded ? " (mapped from the repack cache)" : ""));
                if (nPrompt > 0) Console.Out.WriteLine(string.Format(inv, "pp{0,-5} {1,10:F2} ± {2:F2} tok/s", nPrompt, ppMean, ppStd));
                if (nGen > 0) Console.Out.WriteLine(string.Format(inv, "tg{0,-5} {1,10:F2} ± {2:F2} tok/s", nGen, tgMean, tgStd));
            }
            return 0;
        })));
        return cmd;
    }

    private static (double Mean, double Std) Stats(List<double> xs)
    {
        if (xs.Count == 0) return (0, 0);
        double mean = xs.Average();
        double var = xs.Count > 1 ? xs.Sum(x => (x - mean) * (x - mean)) / (xs.Count - 1) : 0;
        return (mean, Math.Sqrt(var));
    }
}
