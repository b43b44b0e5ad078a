using System.Runtime.InteropServices;

namespace Cria.Numerics.Formats;

/// <summary>
/// Encodes float values into any type Cria can write, with ggml's reference routine for that type
/// (what <c>ggml_quantize_chunk</c> runs; no importance matrix). The one place that maps a
/// <see cref="GgmlType"/> to its encoder: converters, the quantizer and the synthetic-model
/// writer all go through it.
/// </summary>
public static class RowEncoder
{
    /// <summary>True for the types <see cref="Encode"/> can produce.</summary>
    public static bool CanEncode(GgmlType type) => type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16
        or GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1 or GgmlType.Q8_0
        or GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K
        or GgmlType.IQ4_NL or GgmlType.IQ4_XS;

    /// <summary>Encodes <paramref name="x"/> (whole rows, a multiple of the block size) into <paramref name="y"/>.</summary>
    /// <exception cref="NotSupportedException">the type cannot be written</exception>
    public static void Encode(GgmlType type, ReadOnlySpan<float> x, Span<byte> y)
    {
        switch (type)
        {
            case GgmlType.F32: MemoryMarshal.AsBytes(x).CopyTo(y); break;
            case GgmlType.F16: Fp16Format.Quantize(x, y); break;
            case GgmlType.BF16: Bf16Format.Quantize(x, y); break;
            case GgmlType.Q4_0: Q4_0Format.Quantize(x, y); break;
            case GgmlType.Q4_1: Q4_1Format.Quantize(x, y); break;
            case GgmlType.Q5_0: Q5_0Format.Quantize(x, y); break;
            case GgmlType.Q5_1: Q5_1Format.Quantize(x, y); break;
            case GgmlType.Q8_0: Q8_0Format.Quantize(x, y); break;
            case GgmlType.Q2_K: Q2_KFormat.Quantize(x, y); break;
            case GgmlType.Q3_K: Q3_KFormat.Quantize(x, y); break;
            case GgmlType.Q4_K: Q4_KFormat.Quantize(x, y); break;
            case GgmlType.Q5_K: Q5_KFormat.Quantize(x, y); break;
            case GgmlType.Q6_K: Q6_KFormat.Quantize(x, y); break;
            case GgmlType.IQ4_NL: IQ4_NLFormat.Quantize(x, y); break;
            case GgmlType.IQ4_XS: IQ4_XSFormat.Quantize(x, y); break;
            default: throw new NotSupportedException($"writing {GgmlTypeInfo.Name(type)} tensors is not supported");
        }
    }

    /// <summary>Encodes whole rows into a new array.</summary>
    public static byte[] Encode(GgmlType type, ReadOnlySpan<float> x, int rowLength)
    {
        var bytes = new byte[GgmlTypeInfo.RowBytes(type, rowLength) * (x.Length / rowLength)];
        Encode(type, x, bytes);
        return bytes;
    }
}
