using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Cria.Gguf;
using Cria.Model;
using Cria.Numerics;
using Cria.Numerics.Kernels;
using LLama;
using LLama.Common;
using LLama.Native;

namespace Cria.Bench;

/// <summary>
/// llama-bench's two measurements, for Cria and for llama.cpp (through LLamaSharp's native
/// binaries) on the same GGUF file with the same thread count and an F16 KV cache:
/// <list type="bullet">
/// <item>pp N: a prompt of N random tokens evaluated in one batch from an empty context (tokens/s);</item>
/// <item>tg N: N tokens generated one at a time from an empty context, greedily (tokens/s).</item>
/// </list>
/// After a warm-up (at least 3 runs and 0.5 s of each test and engine), every repetition runs both engines back to back,
/// alternating which goes first, so drifting machine speed affects both alike.
/// </summary>
public static class Program
{
    private sealed record Options(string Model, int Prompt, int Generate, int Threads, int Repetitions, bool FlashAttention, ulong Seed, bool Bandwidth, string? RepackCache);

    public static int Main(string[] args)
    {
        Options o;
        try { o = Parse(args); }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            Console.Error.WriteLine(Usage);
            return 2;
        }
        if (!File.Exists(o.Model))
        {
            Console.Error.WriteLine($"error: no such file: {o.Model}");
            return 2;
        }
        CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
        NativeLogConfig.llama_log_set((level, message) =>
        {
            if (level == LLamaLogLevel.Error) Console.Error.Write("llama.cpp: " + message);
        });

        int ctxSize = o.Prompt + o.Generate;
        using var cria = LlamaModel.Load(o.Model, new ModelOptions { Threads = o.Threads, RepackCacheDirectory = o.RepackCache });
        using var criaCtx = cria.CreateContext(new ContextOptions { ContextSize = ctxSize, BatchSize = Math.Max(1, o.Prompt), KvCacheType = KvCacheType.F16 });

        var p = new ModelParams(o.Model)
        {
            ContextSize = (uint)ctxSize,
            BatchSize = (uint)Math.Max(1, o.Prompt),
            UBatchSize = (uint)Math.Max(1, o.Prompt),
            Threads = o.Threads,
            BatchThreads = o.Threads,
            GpuLayerCount = 0,
            TypeK = GGMLType.GGML_TYPE_F16,
            TypeV = GGMLType.GGML_TYPE_F16,
            FlashAttention = o.FlashAttention,
        };
        long llamaLoadStart = Stopwatch.GetTimestamp();
        using var llamaWeights = LLamaWeights.LoadFromFile(p);
        double llamaLoadMs = Stopwatch.GetElapsedTime(llamaLoadStart).TotalMilliseconds;
        using var llamaCtx = llamaWeights.CreateContext(p);

        int vocab = cria.Config.VocabularySize;
        if (llamaWeights.Vocab.Count != vocab)
            Console.Error.WriteLine($"warning: llama.cpp sees {llamaWeights.Vocab.Count} tokens, Cria {vocab}");
        int bos = cria.Vocabulary.Bos >= 0 ? cria.Vocabulary.Bos : 0;
        var rng = new Random((int)o.Seed);
        int[] prompt = new int[o.Prompt];
        for (int i = 0; i < prompt.Length; i++) prompt[i] = i == 0 && cria.Vocabulary.AddBos ? bos : rng.Next(vocab);

        var file = new FileInfo(o.Model);
        string types = string.Join(", ", cria.File.Tensors.GroupBy(t => t.Type).OrderByDescending(g => g.Count()).Select(g => $"{g.Count()} {GgmlTypeInfo.Name(g.Key)}"));
        Console.WriteLine($"model:      {o.Model} ({file.Length / 1048576.0:F2} MiB; tensors: {types})");
        Console.WriteLine($"shape:      embd {cria.Config.EmbeddingLength}, ff {cria.Config.FeedForwardLength}, {cria.Config.BlockCount} blocks, {cria.Config.HeadCount}/{cria.Config.KvHeadCount} heads, vocab {vocab}");
        Console.WriteLine($"settings:   -p {o.Prompt} -n {o.Generate} -t {o.Threads} -r {o.Repetitions}; KV cache F16 on both; llama.cpp flash attention {(o.FlashAttention ? "on" : "off")}; context {ctxSize}");
        Console.WriteLine($"Cria:       kernels {CpuFeatures.Describe()}, {Environment.ProcessorCount} logical CPUs, .NET {Environment.Version}");
        Console.WriteLine($"llama.cpp:  LLamaSharp 0.30.0 native; {Marshal.PtrToStringAnsi(NativeApi.llama_print_system_info())?.Trim()}");
        string cache = cria.Weights.RepackCacheState switch
        {
            RepackCacheState.Loaded => ", mapped from the repack cache",
            RepackCacheState.Written => ", repacked and the repack cache written",
            RepackCacheState.Failed => ", repacked (the repack cache could not be written)",
            _ => cria.Weights.RepackedBytes > 0 ? ", repacked in memory" : "",
        };
        Console.WriteLine($"load:       Cria {cria.LoadTime.TotalMilliseconds:F0} ms ({cria.Weights.RepackedBytes / 1048576.0:F1} MiB in eight-row groups{cache}), " +
                          $"llama.cpp {llamaLoadMs:F0} ms (weights only; loaded second, after Cria)");
        Console.WriteLine();

        var tests = new List<(string Name, Func<double> Cria, Func<double> Llama)>();
        if (o.Prompt > 0)
            tests.Add(($"pp{o.Prompt}", () => CriaPrompt(criaCtx, prompt), () => LlamaPrompt(llamaCtx, prompt)));
        if (o.Generate > 0)
            tests.Add(($"tg{o.Generate}", () => CriaGenerate(criaCtx, bos, o.Generate, out _), () => LlamaGenerate(llamaCtx, bos, o.Generate, vocab, out _)));

        // Greedy continuations of BOS, to show both engines compute the same model.
        CriaGenerate(criaCtx, bos, Math.Min(o.Generate, 16), out int[] criaTokens);
        LlamaGenerate(llamaCtx, bos, Math.Min(o.Generate, 16), vocab, out int[] llamaTokens);
        int agree = criaTokens.Zip(llamaTokens).TakeWhile(z => z.First == z.Second).Count();
        Console.WriteLine($"greedy from BOS, first {criaTokens.Length} tokens: {(agree == criaTokens.Length ? "identical" : $"agree for {agree}, then differ")} " +
                          $"({cria.Tokenizer.Decode(criaTokens).ReplaceLineEndings("\\n")})");
        Console.WriteLine();

        // With --bandwidth, one pass streaming the model's mapped weights (the pages decode reads, with their
        // page sizes, and nothing but loads) between the engines' runs of every tg repetition gives the read bandwidth
        // under the same conditions as the runs (the machine is shared: it moves by ±20 % within minutes).
        // Weights small enough to sit in a last-level cache (260 MiB here; the threshold is about twice that) say
        // nothing about memory: no weights probe then.
        long weightBytes = WeightsExtent(cria, out _);
        using var probe = o.Bandwidth && weightBytes >= MinProbeBytes ? WeightsProbe(cria, o.Threads) : null;
        var inRun = new List<double>();
        var results = new List<(string Test, double[] Cria, double[] Llama)>();
        foreach (var (name, runCria, runLlama) in tests)
        {
            // Warm-up: at least 3 runs and half a second per engine, so the JIT has tiered Cria's hot
            // methods up and both engines' buffers and caches are warm.
            foreach (var run in new[] { runCria, runLlama })
            {
                var warm = Stopwatch.StartNew();
                for (int k = 0; k < 3 || warm.Elapsed.TotalSeconds < 0.5; k++) run();
            }
            var c = new double[o.Repetitions];
            var l = new double[o.Repetitions];
            // the bandwidth pass between the two engines' runs of each tg repetition
            Action between = name.StartsWith("tg", StringComparison.Ordinal) && probe != null ? () => inRun.Add(Settled(probe.Pass)) : () => { };
            for (int r = 0; r < o.Repetitions; r++)
            {
                if (r % 2 == 0) { c[r] = Settled(runCria); between(); l[r] = Settled(runLlama); }
                else { l[r] = Settled(runLlama); between(); c[r] = Settled(runCria); }
            }
            results.Add((name, c, l));
            if (Environment.GetEnvironmentVariable("CRIA_BENCH_VERBOSE") == "1")
                Console.WriteLine($"{name}: Cria [{string.Join(", ", c.Select(v => v.ToString("F0")))}] llama.cpp [{string.Join(", ", l.Select(v => v.ToString("F0")))}]" +
                                  (inRun.Count > 0 ? $" bandwidth passes [{string.Join(", ", inRun.Select(v => (v / 1e9).ToString("F1")))}] GB/s" : ""));
        }

        double bandwidth = 0, inRunBandwidth = 0, weightsBest = 0;
        if (probe != null)
        {
            weightsBest = Enumerable.Range(0, 5).Max(_ => probe.Pass());
            if (inRun.Count > 0) inRunBandwidth = Median(inRun.ToArray());
        }
        if (o.Bandwidth)
        {
            using var buffer = new BandwidthProbe(o.Threads);
            bandwidth = Enumerable.Range(0, 5).Max(_ => buffer.Pass());
        }

        Console.WriteLine("| test | Cria t/s | llama.cpp t/s | Cria / llama.cpp | (medians: Cria, llama.cpp, ratio) |");
        Console.WriteLine("|---|---:|---:|---:|---:|");
        foreach (var (test, c, l) in results)
        {
            var (cm, cs) = MeanStd(c);
            var (lm, ls) = MeanStd(l);
            double cmed = Median(c), lmed = Median(l);
            Console.WriteLine($"| {test} | {cm:F1} ± {cs:F1} | {lm:F1} ± {ls:F1} | {cm / lm:F2} | {cmed:F1}, {lmed:F1}, {cmed / lmed:F2} |");
        }
        if (o.Bandwidth)
        {
            // A generated token reads every weight tensor once, except the token embeddings (one row),
            // unless the output projection is tied to them.
            bool tied = !cria.File.Tensors.Any(t => t.Name == "output.weight");
            long perToken = cria.File.Tensors.Where(t => tied || t.Name != "token_embd.weight").Sum(t => t.ByteSize);
            Console.WriteLine();
            Console.WriteLine($"read bandwidth: {bandwidth / 1e9:F2} GB/s ({BandwidthProbe.Describe(o.Threads)}, best of 5 passes, measured after the runs)");
            if (probe == null)
                Console.WriteLine($"mapped weights ({weightBytes / 1e6:F1} MB) not streamed: under {MinProbeBytes >> 20} MiB they may fit in a cache");
            else
                Console.WriteLine($"read bandwidth of the mapped weights ({weightBytes / 1e6:F1} MB): {weightsBest / 1e9:F2} GB/s best of 5 passes after the runs" +
                                  (inRunBandwidth > 0 ? $", {inRunBandwidth / 1e9:F2} GB/s median of {inRun.Count} passes between the tg runs (one per repetition, between the two engines)" : ""));
            Console.WriteLine($"weights read per generated token: {perToken / 1e6:F1} MB");
            foreach (var (test, c, l) in results.Where(x => x.Test.StartsWith("tg", StringComparison.Ordinal)))
            {
                double cmed = Median(c), lmed = Median(l);
                Console.WriteLine($"{test} (medians): Cria {cmed * perToken / 1e9:F2} GB/s = {100 * cmed * perToken / bandwidth:F0} % of bandwidth; " +
                                  $"llama.cpp {lmed * perToken / 1e9:F2} GB/s = {100 * lmed * perToken / bandwidth:F0} %");
                if (probe == null) continue;
                Console.WriteLine($"{test} (medians) against the mapped weights' best pass: Cria {100 * cmed * perToken / weightsBest:F0} %; llama.cpp {100 * lmed * perToken / weightsBest:F0} %");
                if (inRun.Count == c.Length)
                {
                    // Each repetition against the pass taken next to it (the two engines' runs flank it), then the median.
                    double cShare = Median(c.Select((v, r) => v * perToken / inRun[r]).ToArray());
                    double lShare = Median(l.Select((v, r) => v * perToken / inRun[r]).ToArray());
                    Console.WriteLine($"{test} against the pass between the two engines' runs of the same repetition (median over repetitions): Cria {100 * cShare:F0} %; llama.cpp {100 * lShare:F0} %");
                }
            }
        }
        return 0;
    }

    private const string Usage =
        "usage: cria-bench -m FILE [-p 512] [-n 128] [-t threads] [-r 5] [--fa] [--seed 1] [--bandwidth] [--repack-cache DIR]\n" +
        "  -p N   prompt tokens evaluated in one batch (pp test; 0 skips it)\n" +
        "  -n N   tokens generated one at a time, greedily (tg test; 0 skips it)\n" +
        "  -t N   threads for both engines (default: physical cores as Cria counts them)\n" +
        "  -r N   timed repetitions per test and engine, after one warm-up\n" +
        "  --fa   turn llama.cpp's flash attention on (default off, as llama-bench; Cria has none)\n" +
        "  --repack-cache DIR  Cria maps its repacked weights from a cache in DIR (written there on the first load)\n" +
        "  --bandwidth  also measure read bandwidth (-t threads streaming with prefetch) and report tg as a\n" +
        "               share of it (weight bytes read per token × tokens/s ÷ bandwidth), against: a 1 GiB buffer\n" +
        "               and the model's mapped weights (best of 5 passes each, after the runs), and per tg\n" +
        "               repetition the pass over the weights between the two engines' runs (median)";

    private static Options Parse(string[] args)
    {
        string? model = null;
        int p = 512, n = 128, t = Cria.Numerics.Threading.WorkerPool.DefaultThreadCount, r = 5;
        bool fa = false, bandwidth = false;
        ulong seed = 1;
        string? repackCache = null;
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            int Int(int min) => int.TryParse(Next(), NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) && v >= min
                ? v : throw new ArgumentException($"{args[i - 1]} needs an integer ≥ {min}");
            switch (args[i])
            {
                case "-m" or "--model": model = Next(); break;
                case "-p" or "--n-prompt": p = Int(0); break;
                case "-n" or "--n-gen": n = Int(0); break;
                case "-t" or "--threads": t = Int(1); break;
                case "-r" or "--repetitions": r = Int(1); break;
                case "--fa": fa = true; break;
                case "--bandwidth": bandwidth = true; break;
                case "--seed": seed = (ulong)Int(0); break;
                case "--repack-cache": repackCache = Next(); break;
                case "-h" or "--help": throw new ArgumentException("help requested");
                default: throw new ArgumentException($"unknown argument '{args[i]}'");
            }
        }
        if (model is null) throw new ArgumentException("-m FILE is required");
        if (p + n == 0) throw new ArgumentException("nothing to measure: -p and -n are both 0");
        return new Options(model, p, n, t, r, fa, seed, bandwidth, repackCache);
    }

    // ---------------------------------------------------------------- Cria

    private static double CriaPrompt(LlamaContext ctx, int[] prompt)
    {
        ctx.Reset();
        var sw = Stopwatch.StartNew();
        ctx.Evaluate(prompt);
        return prompt.Length / sw.Elapsed.TotalSeconds;
    }

    private static double CriaGenerate(LlamaContext ctx, int bos, int n, out int[] tokens)
    {
        ctx.Reset();
        tokens = new int[n];
        int token = bos;
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < n; i++)
        {
            token = Argmax(ctx.Evaluate([token]));
            tokens[i] = token;
        }
        return n / sw.Elapsed.TotalSeconds;
    }

    // ---------------------------------------------------------------- llama.cpp

    private static double LlamaPrompt(LLamaContext ctx, int[] prompt)
    {
        ctx.NativeHandle.MemoryClear(true);
        var batch = new LLamaBatch();
        for (int i = 0; i < prompt.Length; i++)
            batch.Add((LLamaToken)prompt[i], (LLamaPos)i, (LLamaSeqId)0, logits: i == prompt.Length - 1);
        var sw = Stopwatch.StartNew();
        Check(ctx.Decode(batch));
        ctx.NativeHandle.Synchronize();
        return prompt.Length / sw.Elapsed.TotalSeconds;
    }

    private static double LlamaGenerate(LLamaContext ctx, int bos, int n, int vocab, out int[] tokens)
    {
        ctx.NativeHandle.MemoryClear(true);
        tokens = new int[n];
        var batch = new LLamaBatch();
        int token = bos;
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < n; i++)
        {
            batch.Clear();
            batch.Add((LLamaToken)token, (LLamaPos)i, (LLamaSeqId)0, logits: true);
            Check(ctx.Decode(batch));
            token = Argmax(ctx.NativeHandle.GetLogitsIth(0)[..vocab]);
            tokens[i] = token;
        }
        return n / sw.Elapsed.TotalSeconds;
    }

    private static void Check(DecodeResult r)
    {
        if (r != DecodeResult.Ok) throw new InvalidOperationException($"llama_decode failed: {r}");
    }

    // ---------------------------------------------------------------- helpers

    private const long MinProbeBytes = 512L << 20;

    /// <summary>Bytes from the model's first tensor to the end of its last; <paramref name="first"/> is the first tensor.</summary>
    private static long WeightsExtent(LlamaModel model, out GgufTensorInfo first)
    {
        var tensors = model.File.Tensors;
        first = tensors.MinBy(t => t.Offset)!;
        var last = tensors.MaxBy(t => t.Offset + (ulong)t.ByteSize)!;
        return (long)(last.Offset + (ulong)last.ByteSize - first.Offset);
    }

    /// <summary>A probe over the model's tensor data as Cria mapped it (<see cref="WeightsExtent"/>).</summary>
    private static unsafe BandwidthProbe WeightsProbe(LlamaModel model, int threads)
    {
        long length = WeightsExtent(model, out GgufTensorInfo first);
        return new BandwidthProbe(threads, model.File.GetTensorData(first), length);
    }

    private static int Argmax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }

    /// <summary>
    /// Runs a measurement after a pause. Both engines' worker threads spin for a while after a
    /// run before they block (llama.cpp's OpenMP threads for up to milliseconds); without the
    /// pause, whichever engine runs second shares its cores with the other's spinning threads.
    /// </summary>
    private static double Settled(Func<double> run)
    {
        Thread.Sleep(50);
        return run();
    }

    private static double Median(double[] x)
    {
        var s = x.Order().ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
    }

    private static (double Mean, double Std) MeanStd(double[] x)
    {
        double mean = x.Average();
        double var = x.Length > 1 ? x.Sum(v => (v - mean) * (v - mean)) / (x.Length - 1) : 0;
        return (mean, Math.Sqrt(var));
    }
}
