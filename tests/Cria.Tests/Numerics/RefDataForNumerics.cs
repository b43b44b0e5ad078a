using System.Text.Json;
using Xunit;

namespace Cria.Tests.Numerics;

/// <summary>
/// Finds and parses quant/ggml-quant-vectors.json from the shared reference data. The data root is
/// CRIA_REFDATA, or else the first "shared/refdata" found beside a directory on the way up from
/// the test assembly (i.e. ../shared/refdata relative to the project root). Tests call
/// <see cref="RequireQuantVectors"/>, which skips them with a visible reason when the data is absent.
/// </summary>
internal static class RefDataForNumerics
{
    public const string QuantVectorsPath = "quant/ggml-quant-vectors.json";

    private static readonly Lazy<string?> Root = new(FindRoot);
    private static readonly Lazy<QuantVectors?> Vectors = new(LoadVectors);

    public static string? Directory => Root.Value;

    public static QuantVectors RequireQuantVectors()
    {
        Skip.If(Root.Value is null, "reference data not found: set CRIA_REFDATA or put shared/refdata beside the project root");
        Skip.If(Vectors.Value is null, $"reference file missing: {QuantVectorsPath}");
        return Vectors.Value!;
    }

    private static string? FindRoot()
    {
        string? env = Environment.GetEnvironmentVariable("CRIA_REFDATA");
        if (!string.IsNullOrEmpty(env)) return System.IO.Directory.Exists(env) ? Path.GetFullPath(env) : null;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "shared", "refdata");
            if (System.IO.Directory.Exists(candidate)) return candidate;
        }
        return null;
    }

    private static QuantVectors? LoadVectors()
    {
        if (Root.Value is null) return null;
        string path = Path.Combine(Root.Value, QuantVectorsPath);
        if (!File.Exists(path)) return null;
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        var root = doc.RootElement;
        var rows = new List<float[]>();
        var descs = new List<string>();
        foreach (var r in root.GetProperty("rows").EnumerateArray())
        {
            descs.Add(r.GetProperty("desc").GetString() ?? "");
            rows.Add(Floats(r.GetProperty("values")));
        }
        var types = new Dictionary<string, QuantTypeVectors>(StringComparer.Ordinal);
        foreach (var t in root.GetProperty("types").EnumerateArray())
        {
            var tv = new QuantTypeVectors
            {
                Type = t.GetProperty("type").GetString()!,
                TypeId = t.GetProperty("ggml_type_id").GetInt32(),
                BlockSize = t.GetProperty("block_size").GetInt32(),
                TypeSize = t.GetProperty("type_size").GetInt32(),
                RowBytes = t.GetProperty("row_bytes").GetInt32(),
                Quantized = t.GetProperty("quantized_hex").EnumerateArray().Select(e => Convert.FromHexString(e.GetString()!)).ToArray(),
                Dequantized = t.GetProperty("dequantized").EnumerateArray().Select(Floats).ToArray(),
                VecDotType = t.GetProperty("vec_dot_type").GetString()!,
                ActivationQuantized = Convert.FromHexString(t.GetProperty("activation_quantized_hex").GetString()!),
                ActivationDequantized = Floats(t.GetProperty("activation_dequantized")),
                VecDot = Floats(t.GetProperty("vec_dot")),
                DotF64 = t.GetProperty("dot_f64_of_dequantized").EnumerateArray().Select(e => e.GetDouble()).ToArray(),
            };
            types[tv.Type] = tv;
        }
        return new QuantVectors
        {
            NPerRow = root.GetProperty("n_per_row").GetInt32(),
            Rows = rows.ToArray(),
            RowDescriptions = descs.ToArray(),
            Activation = Floats(root.GetProperty("activation")),
            Types = types,
        };
    }

    // Values are printed with %.9g, which round-trips float32 exactly.
    private static float[] Floats(JsonElement array) => array.EnumerateArray().Select(e => e.GetSingle()).ToArray();
}

internal sealed class QuantVectors
{
    public required int NPerRow { get; init; }
    public required float[][] Rows { get; init; }
    public required string[] RowDescriptions { get; init; }
    public required float[] Activation { get; init; }
    public required IReadOnlyDictionary<string, QuantTypeVectors> Types { get; init; }
}

internal sealed class QuantTypeVectors
{
    public required string Type { get; init; }
    public required int TypeId { get; init; }
    public required int BlockSize { get; init; }
    public required int TypeSize { get; init; }
    public required int RowBytes { get; init; }
    public required byte[][] Quantized { get; init; }
    public required float[][] Dequantized { get; init; }
    public required string VecDotType { get; init; }
    public required byte[] ActivationQuantized { get; init; }
    public required float[] ActivationDequantized { get; init; }
    public required float[] VecDot { get; init; }
    public required double[] DotF64 { get; init; }
}
