using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Cria.Numerics.Formats;

/// <summary>
/// bfloat16 (ggml's BF16). Storage: each element is one little-endian 16-bit word holding the top
/// half of a float32 (sign, 8-bit exponent, 7 fraction bits); no blocks. Widening to float is
/// exact (append 16 zero bits). Narrowing follows ggml_compute_fp32_to_bf16: a NaN keeps its top
/// bits with the quiet bit (0x40) forced on; everything else rounds to nearest, ties to even, on
/// the dropped 16 bits (so large finite values can round up to infinity).
/// </summary>
public static unsafe class Bf16Format
{
    /// <summary>Bytes per element.</summary>
    public const int BytesPerElement = 2;

    /// <summary>Exact bf16 → float.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToSingle(ushort b) => BitConverter.UInt32BitsToSingle((uint)b << 16);

    /// <summary>Float → bf16 exactly as ggml rounds it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort FromSingle(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        if ((u & 0x7FFFFFFF) > 0x7F800000) return (ushort)((u >> 16) | 0x40); // NaN → quiet NaN
        return (ushort)((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
    }

    /// <summary>Rounds a float to bf16 precision and back.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Round(float f) => ToSingle(FromSingle(f));

    /// <summary>Converts <c>src.Length</c> floats to bf16 (2 bytes each) into <paramref name="dst"/>.</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        if (dst.Length < (long)src.Length * 2) throw new ArgumentException("destination too small", nameof(dst));
        fixed (float* s = src)
        fixed (byte* d = dst)
        {
            ushort* o = (ushort*)d;
            for (int i = 0; i < src.Length; i++) o[i] = FromSingle(s[i]);
        }
    }

    /// <summary>Converts <c>dst.Length</c> bf16 values from <paramref name="src"/> to floats.</summary>
    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        if (src.Length < (long)dst.Length * 2) throw new ArgumentException("source too small", nameof(src));
        fixed (byte* s = src)
        fixed (float* d = dst)
            ToSingle((ushort*)s, d, dst.Length);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void ToSingle(ushort* src, float* dst, int n)
    {
        int i = 0;
        if (Avx2.IsSupported)
            for (; i + 8 <= n; i += 8) Avx.Store(dst + i, ToSingle8(src + i));
        for (; i < n; i++) dst[i] = ToSingle(src[i]);
    }

    /// <summary>Eight bf16 values → eight floats (AVX2), exact.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> ToSingle8(ushort* p) =>
        Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(p), 16).AsSingle();
}
