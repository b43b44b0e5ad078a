using Cria.Gguf;
using Cria.Numerics;

namespace Cria.Quantization;

/// <summary>llama.cpp's <c>enum llama_ftype</c> values for the file types <c>cria quantize</c> writes.</summary>
public enum LlamaFileType
{
    AllF32 = 0,
    MostlyF16 = 1,
    MostlyQ4_0 = 2,
    MostlyQ4_1 = 3,
    MostlyQ8_0 = 7,
    MostlyQ5_0 = 8,
    MostlyQ5_1 = 9,
    MostlyQ2_K = 10,
    MostlyQ3_K_S = 11,
    MostlyQ3_K_M = 12,
    MostlyQ3_K_L = 13,
    MostlyQ4_K_S = 14,
    MostlyQ4_K_M = 15,
    MostlyQ5_K_S = 16,
    MostlyQ5_K_M = 17,
    MostlyQ6_K = 18,
    MostlyIQ4_NL = 25,
    MostlyIQ4_XS = 30,
    MostlyBF16 = 32,
}

/// <summary>The file-type names llama-quantize accepts (the subset Cria supports) and their base tensor types.</summary>
public static class LlamaFileTypes
{
    private static readonly (string Name, LlamaFileType Type, GgmlType Base)[] Table =
    [
        ("F16", LlamaFileType.MostlyF16, GgmlType.F16),
        ("BF16", LlamaFileType.MostlyBF16, GgmlType.BF16),
        ("Q8_0", LlamaFileType.MostlyQ8_0, GgmlType.Q8_0),
        ("Q4_0", LlamaFileType.MostlyQ4_0, GgmlType.Q4_0),
        ("Q4_1", LlamaFileType.MostlyQ4_1, GgmlType.Q4_1),
        ("Q5_0", LlamaFileType.MostlyQ5_0, GgmlType.Q5_0),
        ("Q5_1", LlamaFileType.MostlyQ5_1, GgmlType.Q5_1),
        ("Q2_K", LlamaFileType.MostlyQ2_K, GgmlType.Q2_K),
        ("Q3_K_S", LlamaFileType.MostlyQ3_K_S, GgmlType.Q3_K),
        ("Q3_K_M", LlamaFileType.MostlyQ3_K_M, GgmlType.Q3_K),
        ("Q3_K_L", LlamaFileType.MostlyQ3_K_L, GgmlType.Q3_K),
        ("Q4_K_S", LlamaFileType.MostlyQ4_K_S, GgmlType.Q4_K),
        ("Q4_K_M", LlamaFileType.MostlyQ4_K_M, GgmlType.Q4_K),
        ("Q5_K_S", LlamaFileType.MostlyQ5_K_S, GgmlType.Q5_K),
        ("Q5_K_M", LlamaFileType.MostlyQ5_K_M, GgmlType.Q5_K),
        ("Q6_K", LlamaFileType.MostlyQ6_K, GgmlType.Q6_K),
        ("IQ4_NL", LlamaFileType.MostlyIQ4_NL, GgmlType.IQ4_NL),
        ("IQ4_XS", LlamaFileType.MostlyIQ4_XS, GgmlType.IQ4_XS),
    ];

    /// <summary>The accepted names, in llama-quantize's spelling.</summary>
    public static IReadOnlyList<string> Names { get; } = Table.Select(t => t.Name).ToArray();

    /// <summary>Parses a file-type name, ignoring case ("q4_k_m", "Q4_K_M").</summary>
    public static bool TryParse(string? name, out LlamaFileType type)
    {
        foreach (var t in Table)
        {
            if (string.Equals(t.Name, name, StringComparison.OrdinalIgnoreCase))
            {
                type = t.Type;
                return true;
            }
        }
        type = default;
        return false;
    }

    /// <summary>llama-quantize's name of a file type.</summary>
    public static string Name(LlamaFileType type) => Table.First(t => t.Type == type).Name;

    /// <summary>The tensor type most weights get (llama.cpp's default_type for the ftype).</summary>
    public static GgmlType BaseType(LlamaFileType type) => Table.First(t => t.Type == type).Base;
}

/// <summary>A failure of <c>cria quantize</c> with a message meant for the user.</summary>
public sealed class QuantizationException : Exception
{
    public QuantizationException(string message) : base(message) { }
}

/// <summary>What happens to one tensor: copied as it is, or converted to <see cref="Type"/>.</summary>
public sealed record TensorPlan(GgufTensorInfo Source, GgmlType Type, bool Convert, string? Fallback);

/// <summary>
/// The per-tensor type choices of llama-quantize (llama.cpp commit c392e5094, src/llama-quant.cpp:
/// llama_model_quantize_impl and llama_tensor_get_type), for Llama models and the file types of
/// <see cref="LlamaFileType"/>, without an importance matrix:
/// <list type="bullet">
/// <item>Tensors are processed in the model loader's order: by layer number (tensors outside
/// "blk.N." first), then by name (ordinal). The per-kind counters (attn_v, ffn_down) advance in
/// that order.</item>
/// <item>Only 2-D (or higher) tensors whose names end in "weight" are quantized; norms
/// ("_norm.weight"), ffn_gate_inp, position embeddings and token types are copied unchanged.</item>
/// <item>For quantized file types (unless <c>--pure</c>): output.weight (and token_embd.weight when
/// the model has no output.weight) gets Q6_K, or Q8_0 when its rows are not a multiple of 256;
/// attn_v and ffn_down get more bits in the _M/_L mixes as llama.cpp's table says (use_more_bits
/// for Q4_K_M/Q5_K_M, the first layers for Q3_K_M/Q4_K_S/IQ4_*, n_gqa for Q2_K and IQ4_*);
/// attn_output gets Q3_K/Q4_K/Q5_K in Q2_K/Q3_K_M/Q3_K_L.</item>
/// <item>Then a row length that is not a multiple of the block size falls back: Q6_K→Q8_0,
/// Q5_K→Q5_1, Q4_K→Q5_0, Q3_K/Q2_K→Q4_0, IQ4_XS→IQ4_NL, and F16 if even that block does not divide
/// (the llama.cpp of LLamaSharp.Backend.Cpu 0.30.0, the reference; the older llama.cpp that made the
/// shared stories260K files, c392e5094, sent Q3_K/Q2_K to IQ4_NL).
/// The legacy 32-blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) have no fallback: llama-quantize stops
/// with "Unsupported tensor size encountered", and so does this.</item>
/// <item><c>--token-embedding-type</c> / <c>--output-tensor-type</c> override last.</item>
/// </list>
/// </summary>
public sealed class QuantizationPlan
{
    private readonly QuantizationOptions _options;
    private readonly int _nLayer, _nHead, _nHeadKv, _nExpert;
    private readonly bool _is70B;
    private bool _hasOutput;
    private int _nAttentionWv, _iAttentionWv, _iFfnDown;

    /// <summary>Tensors in output order.</summary>
    public IReadOnlyList<TensorPlan> Tensors { get; }

    /// <summary>How many tensors needed a fallback type.</summary>
    public int FallbackCount { get; }

    private QuantizationPlan(GgufFile input, QuantizationOptions options)
    {
        _options = options;
        string? arch = input.GetString("general.architecture");
        if (arch is null) throw new QuantizationException("the input has no general.architecture: not a model file");
        if (arch != "llama") throw new QuantizationException($"only Llama models can be quantized; this file's architecture is '{arch}'");
        _nLayer = (int)(input.GetInt("llama.block_count") ?? throw new QuantizationException("the model has no llama.block_count"));
        _nHead = (int)(input.GetInt("llama.attention.head_count") ?? throw new QuantizationException("the model has no llama.attention.head_count"));
        _nHeadKv = (int)(input.GetInt("llama.attention.head_count_kv") ?? _nHead);
        _nExpert = (int)(input.GetInt("llama.expert_count") ?? 0);
        _is70B = _nLayer == 80 && _nHead != _nHeadKv;

        var ordered = input.Tensors.ToList();
        ordered.Sort(CompareLoaderOrder);
        foreach (var t in ordered)
        {
            if (t.Name.Contains("attn_v.weight", StringComparison.Ordinal) || t.Name.Contains("attn_qkv.weight", StringComparison.Ordinal)
                || t.Name.Contains("attn_kv_b.weight", StringComparison.Ordinal))
                _nAttentionWv++;
            else if (t.Name == "output.weight")
                _hasOutput = true;
        }
        if (_nAttentionWv != 0 && _nAttentionWv != _nLayer)
            throw new QuantizationException($"the model has {_nAttentionWv} attn_v tensors for {_nLayer} layers");

        var plans = new List<TensorPlan>(ordered.Count);
        int fallbacks = 0;
        foreach (var t in ordered)
        {
            var p = PlanTensor(t);
            if (p.Fallback != null) fallbacks++;
            plans.Add(p);
        }
        Tensors = plans;
        FallbackCount = fallbacks;
    }

    /// <summary>Decides every tensor's type; throws <see cref="QuantizationException"/> where llama-quantize fails.</summary>
    public static QuantizationPlan Create(GgufFile input, QuantizationOptions options)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(options);
        return new QuantizationPlan(input, options);
    }

    /// <summary>llama_model_loader's weight_name_comparer: layer number first (-1 outside blocks), then name.</summary>
    internal static int CompareLoaderOrder(GgufTensorInfo a, GgufTensorInfo b)
    {
        int la = LayerOf(a.Name), lb = LayerOf(b.Name);
        if (la != lb) return la.CompareTo(lb);
        return string.CompareOrdinal(a.Name, b.Name);
    }

    /// <summary>N of a "blk.N." prefix (sscanf "%d" semantics for the usual names), else -1.</summary>
    internal static int LayerOf(string name)
    {
        if (!name.StartsWith("blk.", StringComparison.Ordinal)) return -1;
        int i = 4, sign = 1;
        if (i < name.Length && (name[i] == '-' || name[i] == '+')) { if (name[i] == '-') sign = -1; i++; }
        int start = i;
        long v = 0;
        while (i < name.Length && char.IsAsciiDigit(name[i]) && v < int.MaxValue) v = v * 10 + (name[i++] - '0');
        if (i == start) return -1;
        return (int)(sign * Math.Min(v, int.MaxValue));
    }

    /// <summary>ggml_n_dims: the number of dimensions up to the last one larger than 1 (at least 1).</summary>
    internal static int NDims(long[] dims)
    {
        for (int i = dims.Length - 1; i >= 1; i--) if (dims[i] > 1) return i + 1;
        return 1;
    }

    internal static bool IsQuantized(GgmlType t) =>
        t is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.F64 or GgmlType.I8 or GgmlType.I16 or GgmlType.I32 or GgmlType.I64);

    private static bool AllowsQuantization(GgufTensorInfo t)
    {
        string name = t.Name;
        bool q = name.EndsWith("weight", StringComparison.Ordinal);
        q &= NDims(t.Dimensions) >= 2;
        q &= !name.Contains("_norm.weight", StringComparison.Ordinal);
        q &= !name.Contains("ffn_gate_inp.weight", StringComparison.Ordinal);
        q &= name != "position_embd.weight" && name != "token_types.weight";
        foreach (var s in SmallTensors) q &= !name.Contains(s, StringComparison.Ordinal);
        return q;
    }

    private static readonly string[] SmallTensors =
    [
        "ssm_conv1d.weight", "ssm_x.weight", "ssm_dt.weight",
        "time_mix_first.weight", "time_mix_w1.weight", "time_mix_w2.weight", "time_mix_decay_w1.weight",
        "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight", "attn_rel_b.weight",
    ];

    private TensorPlan PlanTensor(GgufTensorInfo t)
    {
        if (!AllowsQuantization(t)) return new TensorPlan(t, t.Type, false, null);
        var o = _options;
        GgmlType baseType = LlamaFileTypes.BaseType(o.FileType);
        GgmlType type = baseType;
        string? fallback = null;
        if (!o.Pure && IsQuantized(baseType)) type = TensorType(t, baseType, out fallback);
        if (o.TokenEmbeddingType is { } te && t.Name == "token_embd.weight") { type = te; fallback = null; }
        if (o.OutputTensorType is { } ot && t.Name == "output.weight") { type = ot; fallback = null; }
        if (type == t.Type) return new TensorPlan(t, t.Type, false, null);
        if (!Cria.Numerics.Formats.RowEncoder.CanEncode(type))
            throw new QuantizationException($"tensor {t.Name}: converting to {GgmlTypeInfo.Name(type)} is not supported");

        long cols = t.Dimensions[0];
        if (cols % GgmlTypeInfo.BlockSize(type) != 0)
            throw new QuantizationException(
                $"tensor {t.Name}: rows of {cols} values are not a whole number of {GgmlTypeInfo.Name(type)} blocks of {GgmlTypeInfo.BlockSize(type)}");
        if (IsQuantized(t.Type) && !o.AllowRequantize)
            throw new QuantizationException(
                $"tensor {t.Name} is already quantized ({GgmlTypeInfo.Name(t.Type)}); quantize from an F32, F16 or BF16 model (requantizing loses precision)");
        if (!IsQuantized(t.Type) && t.Type is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16))
            throw new QuantizationException($"tensor {t.Name}: cannot convert {GgmlTypeInfo.Name(t.Type)} tensors");
        if (IsQuantized(t.Type) && !GgmlTypeInfo.CanCompute(t.Type))
            throw new QuantizationException($"tensor {t.Name}: cannot dequantize {GgmlTypeInfo.Name(t.Type)}");
        return new TensorPlan(t, type, true, fallback);
    }

    private static bool UseMoreBits(int iLayer, int nLayers) =>
        iLayer < nLayers / 8 || iLayer >= 7 * nLayers / 8 || (iLayer - nLayers / 8) % 3 == 2;

    /// <summary>llama_tensor_get_type for the supported file types.</summary>
    private GgmlType TensorType(GgufTensorInfo t, GgmlType type, out string? fallback)
    {
        string name = t.Name;
        var ftype = _options.FileType;
        int nGqa = _nHeadKv > 0 ? _nHead / _nHeadKv : 0;
        fallback = null;

        if (name == "output.weight" || (!_hasOutput && name == "token_embd.weight"))
        {
            if (_options.OutputTensorType is { } ot) type = ot;
            else if (t.Dimensions[0] % 256 != 0) type = GgmlType.Q8_0;
            else if (type != GgmlType.Q8_0) type = GgmlType.Q6_K;
        }
        else if (name == "token_embd.weight")
        {
            if (_options.TokenEmbeddingType is { } te) type = te;
        }
        else if (name.Contains("attn_v.weight", StringComparison.Ordinal))
        {
            if (ftype == LlamaFileType.MostlyQ2_K) type = nGqa >= 4 ? GgmlType.Q4_K : GgmlType.Q3_K;
            else if (ftype == LlamaFileType.MostlyQ3_K_M) type = _iAttentionWv < 2 ? GgmlType.Q5_K : GgmlType.Q4_K;
            else if (ftype == LlamaFileType.MostlyQ3_K_L) type = GgmlType.Q5_K;
            else if (ftype is LlamaFileType.MostlyIQ4_NL or LlamaFileType.MostlyIQ4_XS && nGqa >= 4) type = GgmlType.Q5_K;
            else if (ftype is LlamaFileType.MostlyQ4_K_M or LlamaFileType.MostlyQ5_K_M && UseMoreBits(_iAttentionWv, _nAttentionWv)) type = GgmlType.Q6_K;
            else if (ftype == LlamaFileType.MostlyQ4_K_S && _iAttentionWv < 4) type = GgmlType.Q5_K;
            if (_is70B && type is GgmlType.Q3_K or GgmlType.Q4_K) type = GgmlType.Q5_K;
            if (_nExpert == 8) type = GgmlType.Q8_0;
            _iAttentionWv++;
        }
        else if (name.Contains("attn_k.weight", StringComparison.Ordinal))
        {
            if (_nExpert == 8) type = GgmlType.Q8_0;
        }
        else if (name.Contains("ffn_down", StringComparison.Ordinal))
        {
            int iLayer = _iFfnDown, nLayer = _nLayer;
            if (_nExpert > 1)
            {
                iLayer = LayerOf(name);
                if (iLayer < 0 || iLayer >= nLayer) throw new QuantizationException($"cannot determine the layer of tensor {name}");
            }
            if (ftype == LlamaFileType.MostlyQ2_K) type = GgmlType.Q3_K;
            else if (ftype == LlamaFileType.MostlyQ3_K_M)
                type = iLayer < nLayer / 16 ? GgmlType.Q5_K : GgmlType.Q4_K; // (arch != FALCON) always holds for llama
            else if (ftype == LlamaFileType.MostlyQ3_K_L) type = GgmlType.Q5_K;
            else if (ftype == LlamaFileType.MostlyQ4_K_M) { if (UseMoreBits(iLayer, nLayer)) type = GgmlType.Q6_K; }
            else if (iLayer < nLayer / 8 && ftype is LlamaFileType.MostlyIQ4_NL or LlamaFileType.MostlyIQ4_XS) type = GgmlType.Q5_K;
            else if (ftype == LlamaFileType.MostlyQ5_K_M && UseMoreBits(iLayer, nLayer)) type = GgmlType.Q6_K;
            else if (ftype == LlamaFileType.MostlyQ4_K_S && iLayer < nLayer / 8) type = GgmlType.Q5_K;
            _iFfnDown++;
        }
        else if (name.Contains("attn_output.weight", StringComparison.Ordinal))
        {
            if (_nExpert == 8)
            {
                if (ftype is LlamaFileType.MostlyQ2_K or LlamaFileType.MostlyQ3_K_S or LlamaFileType.MostlyQ3_K_M or LlamaFileType.MostlyIQ4_NL
                    or LlamaFileType.MostlyQ4_K_S or LlamaFileType.MostlyQ4_K_M or LlamaFileType.MostlyIQ4_XS)
                    type = GgmlType.Q5_K;
            }
            else
            {
                if (ftype == LlamaFileType.MostlyQ2_K) type = GgmlType.Q3_K;
                else if (ftype == LlamaFileType.MostlyQ3_K_M) type = GgmlType.Q4_K;
                else if (ftype == LlamaFileType.MostlyQ3_K_L) type = GgmlType.Q5_K;
            }
        }
        else if (name.Contains("attn_qkv.weight", StringComparison.Ordinal))
        {
            if (ftype is LlamaFileType.MostlyQ3_K_M or LlamaFileType.MostlyQ3_K_L) type = GgmlType.Q4_K;
            else if (ftype == LlamaFileType.MostlyQ4_K_M) type = GgmlType.Q5_K;
            else if (ftype == LlamaFileType.MostlyQ5_K_M) type = GgmlType.Q6_K;
        }

        // Rows that are not whole blocks of the chosen type.
        long cols = t.Dimensions[0];
        int block = GgmlTypeInfo.BlockSize(type);
        if (cols % block != 0)
        {
            GgmlType chosen = type;
            type = type switch
            {
                GgmlType.Q2_K or GgmlType.Q3_K => GgmlType.Q4_0,
                GgmlType.IQ4_XS => GgmlType.IQ4_NL,
                GgmlType.Q4_K => GgmlType.Q5_0,
                GgmlType.Q5_K => GgmlType.Q5_1,
                GgmlType.Q6_K => GgmlType.Q8_0,
                _ => throw new QuantizationException(
                    $"tensor {name}: rows of {cols} values (shape {string.Join(" x ", t.Dimensions)}) are not divisible by {block}, "
                    + $"required for {GgmlTypeInfo.Name(chosen)}, and {GgmlTypeInfo.Name(chosen)} has no fallback type "
                    + "(llama-quantize fails the same way: \"Unsupported tensor size encountered\")"),
            };
            if (cols % GgmlTypeInfo.BlockSize(type) != 0) type = GgmlType.F16;
            fallback = $"{GgmlTypeInfo.Name(chosen)} needs rows divisible by {block}, {name} has {cols}: using {GgmlTypeInfo.Name(type)}";
        }
        return type;
    }
}
