using System.CommandLine;
using System.Globalization;
using Cria.Gguf;
using Cria.Model;
using Cria.Numerics;
using Cria.Tokenizers;

namespace Cria.Cli.Commands;

/// <summary>
/// <c>cria synth</c>: a random-weight GGUF with the exact shape of a real Llama model, the shared
/// input of speed comparisons with llama.cpp.
/// </summary>
internal static class SynthCommand
{
    /// <summary>Shapes of published models (from their config.json files).</summary>
    internal sealed record Preset(string Name, int Embd, int Ff, int Layers, int Heads, int KvHeads, int Vocab, int Context, float Theta, bool Tied);

    internal static readonly Preset[] Presets =
    {
        new("tinyllama-1.1b", 2048, 5632, 22, 32, 4, 32000, 2048, 10000f, false),
        new("llama3.2-1b", 2048, 8192, 16, 32, 8, 128256, 131072, 500000f, true),
        new("llama3.2-3b", 3072, 8192, 28, 24, 8, 128256, 131072, 500000f, true),
        new("llama2-7b", 4096, 11008, 32, 32, 32, 32000, 4096, 10000f, false),
        new("codellama-7b", 4096, 11008, 32, 32, 32, 32016, 16384, 1000000f, false),
        new("llama3-8b", 4096, 14336, 32, 32, 8, 128256, 8192, 500000f, false),
    };

    public static Command Create()
    {
        var preset = new Option<string?>("--preset") { Description = "model shape: " + string.Join(", ", Presets.Select(p => p.Name)) };
        var embd = new Option<int?>("--n-embd") { Description = "embedding length" };
        var ff = new Option<int?>("--n-ff") { Description = "feed-forward length" };
        var layers = new Option<int?>("--n-layer") { Description = "number of blocks" };
        var heads = new Option<int?>("--n-head") { Description = "attention heads" };
        var kvHeads = new Option<int?>("--n-kv-head") { Description = "key/value heads (grouped-query attention when fewer than heads)" };
        var vocabFile = new Option<string?>("--vocab") { Description = "copy the tokenizer from this GGUF (default: a built-in byte-level vocabulary, padded to the preset's size)" };
        var nVocab = new Option<int?>("--n-vocab") { Description = "vocabulary size when no --vocab is given" };
        var theta = new Option<float?>("--rope-theta") { Description = "RoPE frequency base" };
        var ctx = new Option<int?>("--n-ctx") { Description = "training context length written to the metadata" };
        var tied = new Option<bool?>("--tied") { Description = "no output.weight: the output reuses the token embedding" };
        var type = new Option<string>("--type") { Description = "weight type: f32, f16, bf16, q8_0 or q4_0", Required = true };
        var output = new Option<string>("--output", "-o") { Description = "output GGUF file", Required = true };
        var seed = new Option<ulong>("--seed") { Description = "seed of the weights", DefaultValueFactory = _ => 1 };
        var cmd = new Command("synth", "write a random-weight GGUF with the shape of a real Llama model");
        foreach (Option o in new Option[] { preset, embd, ff, layers, heads, kvHeads, vocabFile, nVocab, theta, ctx, tied, type, output, seed })
            cmd.Options.Add(o);
        cmd.SetAction(r => CliErrors.Guard(() =>
        {
            Preset? p = null;
            string? presetName = r.GetValue(preset);
            if (presetName != null)
                p = Presets.FirstOrDefault(x => x.Name.Equals(presetName, StringComparison.OrdinalIgnoreCase))
                    ?? throw new CliException($"unknown preset '{presetName}' (known: {string.Join(", ", Presets.Select(x => x.Name))})");
            int Need(int? value, int? fromPreset, string option) =>
                value ?? fromPreset ?? throw new CliException($"{option} is required without --preset");
            if (!GgmlTypeInfo.TryParse(r.GetValue(type)!, out var weightType)
                || weightType is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.Q8_0 or GgmlType.Q4_0))
                throw new CliException($"--type must be f32, f16, bf16, q8_0 or q4_0, not '{r.GetValue(type)}'");

            var spec = new SyntheticModel.SyntheticModelSpec
            {
                EmbeddingLength = Need(r.GetValue(embd), p?.Embd, "--n-embd"),
                FeedForwardLength = Need(r.GetValue(ff), p?.Ff, "--n-ff"),
                BlockCount = Need(r.GetValue(layers), p?.Layers, "--n-layer"),
                HeadCount = Need(r.GetValue(heads), p?.Heads, "--n-head"),
                KvHeadCount = r.GetValue(kvHeads) ?? p?.KvHeads ?? Need(r.GetValue(heads), p?.Heads, "--n-head"),
                ContextLength = r.GetValue(ctx) ?? p?.Context ?? 2048,
                RopeFreqBase = r.GetValue(theta) ?? p?.Theta ?? 10000f,
                TiedEmbeddings = r.GetValue(tied) ?? p?.Tied ?? false,
                Type = weightType,
                Seed = r.GetValue(seed),
            };
            string outPath = r.GetValue(output)!;
            string? vocabPath = r.GetValue(vocabFile);
            GgufFile? vocabulary = null;
            try
            {
                if (vocabPath != null)
                {
                    vocabulary = GgufFile.Open(CliErrors.RequireModelFile(vocabPath));
                }
                else
                {
                    int size = r.GetValue(nVocab) ?? p?.Vocab ?? ByteLevelVocabulary.Count;
                    vocabulary = PaddedByteLevelVocabulary(size);
                }
                Console.Error.WriteLine($"writing {outPath}: {spec.BlockCount} blocks, embd {spec.EmbeddingLength}, ff {spec.FeedForwardLength}, heads {spec.HeadCount}/{spec.KvHeadCount}, {GgmlTypeInfo.Name(weightType)}");
                SyntheticModel.Write(spec, outPath, vocabulary);
            }
            catch (ArgumentException e)
            {
                throw new CliException(e.Message);
            }
            finally
            {
                vocabulary?.Dispose();
            }
            Console.Error.WriteLine(string.Format(CultureInfo.InvariantCulture, "wrote {0} ({1:F1} MiB)", outPath, new FileInfo(outPath).Length / 1048576.0));
            return 0;
        }));
        return cmd;
    }

    /// <summary>
    /// The built-in byte-level SentencePiece vocabulary, padded with unused tokens to
    /// <paramref name="size"/> entries so the embedding and output have a real model's shape.
    /// </summary>
    internal static GgufFile PaddedByteLevelVocabulary(int size)
    {
        if (size < ByteLevelVocabulary.Count)
            throw new CliException($"--n-vocab must be at least {ByteLevelVocabulary.Count} (the built-in vocabulary), not {size}");
        var w = new GgufWriter();
        ByteLevelVocabulary.WriteTo(w);
        var (tokens, scores, types) = ByteLevelVocabulary.Build();
        int n = tokens.Length;
        Array.Resize(ref tokens, size);
        Array.Resize(ref scores, size);
        Array.Resize(ref types, size);
        for (int i = n; i < size; i++)
        {
            tokens[i] = $"<unused{i - n}>";
            scores[i] = 0;
            types[i] = (int)TokenType.Unused;
        }
        w.Set("tokenizer.ggml.tokens", GgufArray.Of(tokens))
         .Set("tokenizer.ggml.scores", GgufArray.Of(scores))
         .Set("tokenizer.ggml.token_type", GgufArray.Of(types));
        using var ms = new MemoryStream();
        w.WriteTo(ms);
        return GgufFile.FromBytes(ms.ToArray());
    }
}
