using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Cria.Numerics.Formats;

namespace Cria.Numerics.Kernels;

/// <summary>
/// Dot products of the remaining 32-element legacy formats, reproducing ggml's AVX2 kernels bit for bit:
/// <list type="bullet">
/// <item>Q5_0 · Q8_0 (ggml_vec_dot_q5_0_q8_0): the same arithmetic as Q4_0 (see <see cref="QuantDot"/>),
/// so it reuses those kernels and tiles through <see cref="Q5Weights"/>.</item>
/// <item>Q4_1 · Q8_1 and Q5_1 · Q8_1 (ggml_vec_dot_q4_1_q8_1 / q5_1_q8_1): per block, the eight
/// lane sums (lane k: elements 4k..4k+3) of the unsigned codes times the activation bytes are
/// accumulated with one fused multiply-add by d_w·d_a into an eight-lane float accumulator, and
/// the offset term m_w·s_a (s_a = d_a·Σq_a, stored in the Q8_1 block) goes into a separate scalar
/// sum, also with a fused multiply-add (GCC contracts ggml's <c>summs += m*s</c>). The result is
/// hsum(acc) + summs.</item>
/// </list>
/// The scalar twins compute the same lanes and the same float operations.
/// </summary>
public static unsafe class LegacyDot
{
    /// <summary>Q5_0 weights · Q8_0 activations over <paramref name="blocks"/> blocks.</summary>
    public static float Q5_0Q8_0(byte* w, byte* a, int blocks) => QuantDot.Dot1<Q5Weights>(w, a, blocks);

    /// <summary>Q4_1 weights · Q8_1 activations over <paramref name="blocks"/> blocks.</summary>
    public static float Q4_1Q8_1(byte* w, byte* a, int blocks) => Dot1<Q41Weights>(w, a, blocks);

    /// <summary>Q5_1 weights · Q8_1 activations over <paramref name="blocks"/> blocks.</summary>
    public static float Q5_1Q8_1(byte* w, byte* a, int blocks) => Dot1<Q51Weights>(w, a, blocks);

    internal static float Q4_1Q8_1Scalar(byte* w, byte* a, int blocks) => Dot1Scalar<Q41Weights>(w, a, blocks);
    internal static float Q5_1Q8_1Scalar(byte* w, byte* a, int blocks) => Dot1Scalar<Q51Weights>(w, a, blocks);

    internal static float Dot1<TW>(byte* w, byte* a, int blocks) where TW : struct, IQ81Weights =>
        CpuFeatures.Avx2Fma ? Dot1Avx2<TW>(w, a, blocks) : Dot1Scalar<TW>(w, a, blocks);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Dot1Avx2<TW>(byte* w, byte* a, int blocks) where TW : struct, IQ81Weights
    {
        float* half = Fp16Format.Table;
        Vector256<float> acc = Vector256<float>.Zero;
        float summs = 0;
        for (int i = 0; i < blocks; i++, w += TW.BlockBytes, a += Q8_1Format.BlockBytes)
        {
            summs = MathF.FusedMultiplyAdd(half[((ushort*)w)[1]], half[((ushort*)a)[1]], summs);
            Vector256<sbyte> av = Avx.LoadVector256((sbyte*)(a + 4));
            Vector256<float> p = Avx.ConvertToVector256Single(QuantDot.UnsignedLaneSumsInt(TW.Unpack(w), av));
            acc = Fma.MultiplyAdd(Vector256.Create(half[*(ushort*)w] * half[*(ushort*)a]), p, acc);
        }
        return QuantDot.HorizontalSum(acc) + summs;
    }

    private static float Dot1Scalar<TW>(byte* w, byte* a, int blocks) where TW : struct, IQ81Weights
    {
        float* acc = stackalloc float[8];
        byte* wv = stackalloc byte[32];
        for (int k = 0; k < 8; k++) acc[k] = 0;
        float summs = 0;
        for (int i = 0; i < blocks; i++)
        {
            byte* wb = w + (nint)i * TW.BlockBytes;
            byte* ab = a + (nint)i * Q8_1Format.BlockBytes;
            summs = MathF.FusedMultiplyAdd(QuantDot.Scale(wb + 2), QuantDot.Scale(ab + 2), summs);
            TW.LoadScalar(wb, wv);
            sbyte* av = (sbyte*)(ab + 4);
            float d = QuantDot.Scale(wb) * QuantDot.Scale(ab);
            for (int k = 0; k < 8; k++)
            {
                int j = 4 * k;
                int s = wv[j] * av[j] + wv[j + 1] * av[j + 1] + wv[j + 2] * av[j + 2] + wv[j + 3] * av[j + 3];
                acc[k] = MathF.FusedMultiplyAdd(d, s, acc[k]);
            }
        }
        return QuantDot.HorizontalSum(acc) + summs;
    }

    /// <summary>ggml's bytes_from_bits_32: byte j of the result is 0xFF when bit j of <paramref name="bits"/> is set, else 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<byte> BytesFromBits(uint bits)
    {
        Vector256<byte> spread = Avx2.Shuffle(Vector256.Create(bits).AsByte(),
            Vector256.Create(0x0000000000000000UL, 0x0101010101010101UL, 0x0202020202020202UL, 0x0303030303030303UL).AsByte());
        Vector256<byte> mask = Vector256.Create(0x8040201008040201UL).AsByte();
        return Avx2.CompareEqual(Avx2.And(spread, mask), mask);
    }

    /// <summary>
    /// 16 packed bytes → 32 nibbles: low nibbles are elements 0..15, high nibbles 16..31. With GFNI the 16
    /// bytes are loaded into both halves and one affine transform shifts and masks them (two
    /// instructions instead of five, in the inner loop of every 4-bit legacy kernel); the same bytes either way.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<byte> Nibbles(byte* p) => Gfni.V256.IsSupported ? NibblesGfni(p) : NibblesShift(p);

    /// <summary><see cref="Nibbles"/> with one vgf2p8affineqb (callers check <c>Gfni.V256.IsSupported</c>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<byte> NibblesGfni(byte* p) =>
        Gfni.V256.GaloisFieldAffineTransform(Avx2.BroadcastVector128ToVector256(p), NibbleSplit, 0);

    /// <summary>
    /// vgf2p8affineqb's bit matrices taking a byte to its low nibble (lower 128 bits) and to its high nibble
    /// moved down (upper 128 bits). Result bit i of a byte is the parity of (byte AND matrix byte 7-i): matrix
    /// byte 7-i is 1 &lt;&lt; i for the low nibble and 1 &lt;&lt; (i+4) for the high one, i &lt; 4; bytes for i ≥ 4
    /// are zero. A property, not a static field: the JIT folds it to a constant, where a static field's
    /// class-initialisation check cost the kernels' loops their accumulator registers.
    /// </summary>
    private static Vector256<byte> NibbleSplit
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Vector256.Create(0x0102040800000000UL, 0x0102040800000000UL, 0x1020408000000000UL, 0x1020408000000000UL).AsByte();
    }

    /// <summary><see cref="Nibbles"/> with a shift, an insert and a mask (AVX2 without GFNI).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<byte> NibblesShift(byte* p)
    {
        Vector128<byte> packed = Sse2.LoadVector128(p);
        Vector256<byte> nibbles = Vector256.Create(packed, Sse2.ShiftRightLogical(packed.AsUInt16(), 4).AsByte());
        return Avx2.And(nibbles, Vector256.Create((byte)0x0F));
    }
}

/// <summary>A weight format multiplied against Q8_1 activations: unsigned codes, half step d at byte 0, half offset m at byte 2.</summary>
internal unsafe interface IQ81Weights
{
    /// <summary>Bytes per block.</summary>
    static abstract int BlockBytes { get; }

    /// <summary>The 32 unsigned codes in element order.</summary>
    static abstract void LoadScalar(byte* block, byte* codes);

    /// <summary>The 32 unsigned codes in element order (AVX2).</summary>
    static abstract Vector256<byte> Unpack(byte* block);
}

/// <summary>Q4_1 weights: codes 0..15.</summary>
internal unsafe struct Q41Weights : IQ81Weights
{
    public static int BlockBytes => Q4_1Format.BlockBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadScalar(byte* block, byte* codes)
    {
        for (int j = 0; j < 16; j++)
        {
            codes[j] = (byte)(block[4 + j] & 0x0F);
            codes[j + 16] = (byte)(block[4 + j] >> 4);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Unpack(byte* block) => LegacyDot.Nibbles(block + 4);
}

/// <summary>Q5_1 weights: codes 0..31 (low nibble + high bit from qh).</summary>
internal unsafe struct Q51Weights : IQ81Weights
{
    public static int BlockBytes => Q5_1Format.BlockBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadScalar(byte* block, byte* codes)
    {
        uint qh = *(uint*)(block + 4);
        for (int j = 0; j < 16; j++)
        {
            codes[j] = (byte)((uint)(block[8 + j] & 0x0F) | (((qh >> j) & 1) << 4));
            codes[j + 16] = (byte)((uint)(block[8 + j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Unpack(byte* block) =>
        Avx2.Or(LegacyDot.Nibbles(block + 8), Avx2.And(LegacyDot.BytesFromBits(*(uint*)(block + 4)), Vector256.Create((byte)0x10)));
}

/// <summary>
/// Q5_0 weights against Q8_0 activations. Codes c = q + 16 are 0..31, so Σq·a = Σc·a - 16·Σa, the
/// same integers as ggml's signed values with the sign trick (as <see cref="Q4Weights"/> does with 8).
/// </summary>
internal unsafe struct Q5Weights : IQ8Weights
{
    public static int BlockBytes => Q5_0Format.BlockBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadScalar(byte* block, sbyte* values)
    {
        uint qh = *(uint*)(block + 2);
        for (int j = 0; j < 16; j++)
        {
            values[j] = (sbyte)(((block[6 + j] & 0x0F) | (int)(((qh >> j) & 1) << 4)) - 16);
            values[j + 16] = (sbyte)(((block[6 + j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4)) - 16);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Bias(Vector256<sbyte> a) =>
        Avx2.Subtract(Vector256<int>.Zero, QuantDot.UnsignedLaneSumsInt(Vector256.Create((byte)16), a));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Unpack(byte* block) =>
        Avx2.Or(LegacyDot.Nibbles(block + 6), Avx2.And(LegacyDot.BytesFromBits(*(uint*)(block + 2)), Vector256.Create((byte)0x10)));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Products(Vector256<byte> unpacked, Vector256<sbyte> a, Vector256<int> bias) =>
        QuantDot.UnsignedLaneSums(unpacked, a, bias);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Products(byte* block, Vector256<sbyte> a, Vector256<int> bias) => Products(Unpack(block), a, bias);
}
