using System.Text.Json;

namespace Cria.Tests.Model;

/// <summary>One prompt of llama.cpp's golden outputs (refdata/stories260K/golden-*.json).</summary>
public sealed class GoldenCase
{
    public required string Name { get; init; }
    public required string PromptHex { get; init; }
    public required int[] Tokens { get; init; }
    public required float[][] PromptLogits { get; init; }
    public required int[] GeneratedTokens { get; init; }
    /// <summary>Full logit rows (F32 files) or null (top-10 files).</summary>
    public float[][]? GenerationLogits { get; init; }
    /// <summary>Top-10 ids and logits per generation step (F16/Q8_0/Q4_0 files).</summary>
    public (int[] Ids, float[] Logits)[]? GenerationTop { get; init; }

    public string Prompt => System.Text.Encoding.UTF8.GetString(Convert.FromHexString(PromptHex));
}

public static class GoldenData
{
    private static readonly Dictionary<string, GoldenCase[]> Cache = new();

    public static GoldenCase[] Load(string path)
    {
        lock (Cache)
        {
            if (Cache.TryGetValue(path, out var cached)) return cached;
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            var cases = new List<GoldenCase>();
            foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
            {
                float[][]? full = null;
                (int[], float[])[]? top = null;
                var gen = c.GetProperty("generation_logits");
                if (gen.GetArrayLength() > 0 && gen[0].ValueKind == JsonValueKind.Array)
                    full = gen.EnumerateArray().Select(Floats).ToArray();
                else
                    top = gen.EnumerateArray().Select(e => (Ints(e.GetProperty("top_ids")), Floats(e.GetProperty("top_logits")))).ToArray();
                cases.Add(new GoldenCase
                {
                    Name = c.GetProperty("name").GetString()!,
                    PromptHex = c.GetProperty("prompt_hex").GetString()!,
                    Tokens = Ints(c.GetProperty("tokens")),
                    PromptLogits = c.GetProperty("prompt_logits").EnumerateArray().Select(Floats).ToArray(),
                    GeneratedTokens = Ints(c.GetProperty("generated_tokens")),
                    GenerationLogits = full,
                    GenerationTop = top,
                });
            }
            var result = cases.ToArray();
            Cache[path] = result;
            return result;
        }
    }

    private static int[] Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();
    private static float[] Floats(JsonElement e) => e.EnumerateArray().Select(x => x.GetSingle()).ToArray();

    /// <summary>Index of the first generation step whose golden top-2 margin is below the threshold (else the length).</summary>
    public static int FirstNearTie(GoldenCase c, float margin)
    {
        for (int k = 0; k < c.GeneratedTokens.Length; k++)
        {
            float first, second;
            if (c.GenerationLogits != null)
            {
                var row = c.GenerationLogits[k];
                first = row.Max();
                int arg = Array.IndexOf(row, first);
                second = row.Where((_, i) => i != arg).Max();
            }
            else
            {
                first = c.GenerationTop![k].Logits[0];
                second = c.GenerationTop![k].Logits[1];
            }
            if (first - second < margin) return k;
        }
        return c.GeneratedTokens.Length;
    }
}
