using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Cria.Numerics.Formats;

/// <summary>
/// IEEE 754 binary16 ("half", ggml's F16). Storage: each element is one little-endian 16-bit word,
/// bit 15 = sign, bits 14..10 = exponent (bias 15), bits 9..0 = fraction; no blocks. Conversion
/// from float rounds to nearest, ties to even (what ggml gets from F16C's <c>vcvtps2ph</c> with
/// rounding mode 0 and from its software fallback), overflow goes to infinity, and NaN stays a
/// quiet NaN of the same sign. Conversion to float is exact.
/// </summary>
public static unsafe class Fp16Format
{
    /// <summary>Bytes per element.</summary>
    public const int BytesPerElement = 2;

    private const float TwoPow112 = 5.192296858534828e+33f; // 2^112, turns (half bits << 13) into the value

    /// <summary>
    /// 2^112: the factor between a half's value and the float its bits make when moved into float
    /// position (<see cref="ToSingle16Rebiased"/>). Activations multiplied by it once let a dot product
    /// skip the per-element multiply: (w · 2^-112) · (y · 2^112) is the same real product as w · y, so
    /// every fused multiply-add rounds the same. Exact for any |y| &lt; 2^16, i.e. every value an F16
    /// can hold.
    /// </summary>
    public const float RebiasScale = TwoPow112;

    /// <summary>1 / <see cref="RebiasScale"/> (exact: a power of two).</summary>
    public const float RebiasScaleInverse = 1.925929944387236e-34f; // 2^-112

    /// <summary>
    /// All 65536 half values as floats (256 KiB, allocated once and never freed). A lookup beats
    /// the bit manipulation in the kernels' per-block scale conversions, as it does for ggml,
    /// which keeps the same table.
    /// </summary>
    internal static readonly float* Table = CreateTable();

    private static float* CreateTable()
    {
        var t = (float*)NativeMemory.AlignedAlloc(65536 * sizeof(float), 64);
        for (int h = 0; h < 65536; h++) t[h] = ToSingleComputed((ushort)h);
        return t;
    }

    /// <summary>Exact half → float.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToSingle(ushort h) => Table[h];

    /// <summary>Exact half → float without the table (bit manipulation).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float ToSingleComputed(ushort h)
    {
        uint magnitude = (uint)h & 0x7FFF;
        uint sign = ((uint)h & 0x8000) << 16;
        // Shifting exponent+fraction up by 13 lines the fraction up with float's; read as a float
        // that is the value times 2^-112 (half denormals become float denormals), so one exact
        // multiplication by 2^112 finishes the job for every finite half.
        uint bits = BitConverter.SingleToUInt32Bits(BitConverter.UInt32BitsToSingle(magnitude << 13) * TwoPow112);
        if (magnitude >= 0x7C00) bits = (magnitude << 13) | 0x7F800000; // infinity / NaN (payload kept)
        return BitConverter.UInt32BitsToSingle(bits | sign);
    }

    /// <summary>Float → half, round to nearest even.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort FromSingle(float f)
    {
        uint x = BitConverter.SingleToUInt32Bits(f);
        uint sign = (x >> 16) & 0x8000;
        uint ax = x & 0x7FFFFFFF;
        if (ax >= 0x477FF000) // |f| >= 65520 (rounds to infinity), infinity or NaN
        {
            if (ax > 0x7F800000) return (ushort)(sign | 0x7E00 | ((ax >> 13) & 0x3FF)); // quiet NaN
            return (ushort)(sign | 0x7C00);
        }
        if (ax < 0x38800000) // |f| < 2^-14: the result is a half denormal (or zero)
        {
            // Adding 0.5 puts the float's last place at 2^-24, the half-denormal step, so the
            // hardware's own round-to-nearest-even does the rounding; subtracting 0.5's bits leaves
            // the denormal fraction.
            float t = BitConverter.UInt32BitsToSingle(ax) + 0.5f;
            return (ushort)(sign | (BitConverter.SingleToUInt32Bits(t) - 0x3F000000));
        }
        // Normal range: rebias the exponent (127 → 15) and round the 13 dropped bits to nearest,
        // ties to even (the odd bit decides the tie); a carry correctly bumps the exponent.
        uint odd = (ax >> 13) & 1;
        ax += unchecked((uint)((15 - 127) << 23)) + 0xFFF + odd;
        return (ushort)(sign | (ax >> 13));
    }

    /// <summary>Rounds a float to the nearest half and back (exactly what F16 storage keeps).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Round(float f) => ToSingle(FromSingle(f));

    /// <summary>
    /// <paramref name="dst"/>[i] = <see cref="Round(float)"/>(<paramref name="src"/>[i]) for n floats (the two may
    /// be the same buffer), eight at a time with AVX2 and without a table: in F16's normal range the
    /// 13 fraction bits a half cannot keep are rounded away in place (to nearest, ties to even), below
    /// it adding and subtracting 0.5 rounds to the half-denormal step 2^-24. Eights holding a value
    /// that rounds to infinity, an infinity or a NaN go through the scalar path.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Round(float* src, float* dst, int n)
    {
        int i = 0;
        if (Avx2.IsSupported)
        {
            Vector256<uint> magnitudeMask = Vector256.Create(0x7FFFFFFFu), one = Vector256.Create(1u);
            Vector256<uint> halfway = Vector256.Create(0xFFFu), keep = Vector256.Create(~0x1FFFu);
            Vector256<int> smallestNormal = Vector256.Create(0x38800000), largestFinite = Vector256.Create(0x477FEFFF); // 2^-14; just below 65520
            Vector256<float> half = Vector256.Create(0.5f);
            for (; i + 8 <= n; i += 8)
            {
                Vector256<uint> x = Avx.LoadVector256(src + i).AsUInt32();
                Vector256<uint> ax = Avx2.And(x, magnitudeMask);
                if (Avx2.MoveMask(Avx2.CompareGreaterThan(ax.AsInt32(), largestFinite).AsByte()) != 0)
                {
                    for (int k = i; k < i + 8; k++) dst[k] = Round(src[k]);
                    continue;
                }
                Vector256<uint> odd = Avx2.And(Avx2.ShiftRightLogical(x, 13), one);
                Vector256<uint> normal = Avx2.And(Avx2.Add(Avx2.Add(x, halfway), odd), keep);
                Vector256<uint> tiny = Avx2.Or(Avx2.Xor(x, ax), Avx.Subtract(Avx.Add(ax.AsSingle(), half), half).AsUInt32());
                Vector256<uint> isTiny = Avx2.CompareGreaterThan(smallestNormal, ax.AsInt32()).AsUInt32();
                Avx.Store(dst + i, Avx2.BlendVariable(normal.AsByte(), tiny.AsByte(), isTiny.AsByte()).AsSingle());
            }
        }
        for (; i < n; i++) dst[i] = Round(src[i]);
    }

    /// <summary>Converts <c>src.Length</c> floats to halves (2 bytes each) into <paramref name="dst"/>.</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        if (dst.Length < (long)src.Length * 2) throw new ArgumentException("destination too small", nameof(dst));
        fixed (float* s = src)
        fixed (byte* d = dst)
            FromSingle(s, (ushort*)d, src.Length);
    }

    /// <summary>Converts <c>dst.Length</c> halves from <paramref name="src"/> to floats.</summary>
    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        if (src.Length < (long)dst.Length * 2) throw new ArgumentException("source too small", nameof(src));
        fixed (byte* s = src)
        fixed (float* d = dst)
            ToSingle((ushort*)s, d, dst.Length);
    }

    internal static void FromSingle(float* src, ushort* dst, int n)
    {
        for (int i = 0; i < n; i++) dst[i] = FromSingle(src[i]);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void ToSingle(ushort* src, float* dst, int n)
    {
        int i = 0;
        if (Avx2.IsSupported)
        {
            for (; i + 8 <= n; i += 8)
            {
                if (AnySpecial8(src + i)) break; // infinity/NaN: let the scalar loop do the rest
                Avx.Store(dst + i, ToSingle8Normalised(src + i));
            }
        }
        for (; i < n; i++) dst[i] = ToSingle(src[i]);
    }

    /// <summary>True when any of the eight halves at <paramref name="p"/> is infinity or NaN (the check of <see cref="TrackMagnitudes(ref Vector128{ushort}, ushort*)"/> on one vector).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool AnySpecial8(ushort* p)
    {
        Vector128<ushort> max = Vector128<ushort>.Zero;
        TrackMagnitudes(ref max, p);
        return SawSpecialHalf(max);
    }

    /// <summary>
    /// Sixteen halves → their values × 2^-112 (AVX-512), exactly, with no multiply: the half's bits moved
    /// into float position. Multiply by <see cref="RebiasScale"/> (or fold it into the other factor) for
    /// the value. No infinity/NaN check.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> ToSingle16Rebiased(ushort* p)
    {
        Vector512<int> w = Avx512F.ShiftLeftLogical(Avx512BW.ConvertToVector512Int32(Avx.LoadVector256((short*)p)), 13);
        return Avx512F.And(w, Vector512.Create(SignAndMagnitude)).AsSingle();
    }

    /// <summary>
    /// Sixteen halves → floats (AVX-512), exactly, without ever forming a subnormal float: normal halves get
    /// their exponent rebiased in the integer domain, subnormal halves (and zeros) are built as
    /// 2^-14 + m·2^-24 and have 2^-14 subtracted (exact), then the sign is put back. An FMA or multiply with a
    /// subnormal operand takes a microcode assist on this CPU (about 130 cycles, measured: 22 subnormal
    /// halves in 8192 made <see cref="ToSingle16Rebiased"/>'s dot three times slower), so the kernels use this
    /// form where their weights hold subnormal halves. No infinity/NaN check.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> ToSingle16Normalised(ushort* p)
    {
        Vector512<int> u = Avx512F.ShiftLeftLogical(Avx512BW.ConvertToVector512Int32(Avx.LoadVector256((short*)p)), 13);
        Vector512<int> a = Avx512F.And(u, Vector512.Create(MagnitudeBits));
        Vector512<float> normal = Avx512F.Add(a, Vector512.Create(112 << 23)).AsSingle();
        Vector512<float> small = Avx512F.Subtract(Avx512F.Add(a, Vector512.Create(113 << 23)).AsSingle(), Vector512.Create(TwoPowMinus14));
        Vector512<int> exponentZero = Vector512.Equals(Avx512F.And(a, Vector512.Create(ExponentBits)), Vector512<int>.Zero);
        Vector512<float> magnitude = Vector512.ConditionalSelect(exponentZero.AsSingle(), small, normal);
        return Avx512F.Or(magnitude.AsInt32(), Avx512F.And(u, Vector512.Create(int.MinValue))).AsSingle();
    }

    /// <summary>
    /// Eight halves → floats (AVX2) as <see cref="ToSingle16Normalised"/>: exact for every finite half, no
    /// subnormal float formed, no infinity/NaN check (callers check the halves with <see cref="AnySpecial8"/>
    /// or <see cref="TrackMagnitudes(ref Vector128{ushort}, ushort*)"/> or its wider forms).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> ToSingle8Normalised(ushort* p)
    {
        Vector256<int> u = Shifted8(p);
        Vector256<int> a = Avx2.And(u, Vector256.Create(MagnitudeBits));
        Vector256<float> normal = Avx2.Add(a, Vector256.Create(112 << 23)).AsSingle();
        Vector256<float> small = Avx.Subtract(Avx2.Add(a, Vector256.Create(113 << 23)).AsSingle(), Vector256.Create(TwoPowMinus14));
        Vector256<int> exponentZero = Avx2.CompareEqual(Avx2.And(a, Vector256.Create(ExponentBits)), Vector256<int>.Zero);
        Vector256<float> magnitude = Avx.BlendVariable(normal, small, exponentZero.AsSingle());
        return Avx2.Or(magnitude.AsInt32(), Avx2.And(u, Vector256.Create(int.MinValue))).AsSingle();
    }

    private const int MagnitudeBits = 0x0FFFE000; // a half's exponent and fraction after the shift by 13
    private const int ExponentBits = 0x0F800000;  // its exponent
    private const float TwoPowMinus14 = 6.103515625e-05f;

    /// <summary>
    /// True when any of the 32 + 32 halves (two vectors of magnitudes) whose magnitudes (bits &amp; 0x7FFF) are given is subnormal
    /// (1 ≤ magnitude ≤ 0x3FF; zeros do not count): magnitude − 1 wraps zeros to 0xFFFF, so one unsigned
    /// minimum and one compare decide.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool AnySubnormal(Vector512<ushort> magnitudes0, Vector512<ushort> magnitudes1)
    {
        Vector512<ushort> one = Vector512.Create((ushort)1);
        return Vector512.LessThanAny(Avx512BW.Min(Avx512BW.Subtract(magnitudes0, one), Avx512BW.Subtract(magnitudes1, one)), Vector512.Create((ushort)0x3FF));
    }

    /// <summary>As <see cref="AnySubnormal(Vector512{ushort}, Vector512{ushort})"/> for 16 + 16 halves (AVX2).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool AnySubnormal(Vector256<ushort> magnitudes0, Vector256<ushort> magnitudes1)
    {
        Vector256<ushort> one = Vector256.Create((ushort)1);
        return Vector256.LessThanAny(Avx2.Min(Avx2.Subtract(magnitudes0, one), Avx2.Subtract(magnitudes1, one)), Vector256.Create((ushort)0x3FF));
    }

    /// <summary>Eight halves → their values × 2^-112 (AVX2), as <see cref="ToSingle16Rebiased"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> ToSingle8Rebiased(ushort* p) => Avx2.And(Shifted8(p), Vector256.Create(SignAndMagnitude)).AsSingle();

    // Sign-extend to 32 bits and shift by 13: the half's exponent+fraction land in bits 27..13, copies
    // of the sign fill bits 31..28; masking with SignAndMagnitude leaves sign | (magnitude << 13): the
    // value × 2^-112 (a subnormal float for a subnormal half, see ToSingle16Normalised).
    private const int SignAndMagnitude = unchecked((int)0x8FFFE000);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Shifted8(ushort* p) => Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32((short*)p), 13);

    /// <summary>
    /// Folds eight halves' magnitudes (sign cleared) into a running unsigned 16-bit max; afterwards
    /// <see cref="SawSpecialHalf(Vector128{ushort})"/> tells whether any was infinity or NaN (magnitude ≥ 0x7C00).
    /// Two 16-bit operations per vector of halves, no shifts, so the check costs less than the conversion's own.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void TrackMagnitudes(ref Vector128<ushort> max, ushort* p) =>
        max = Sse41.Max(max, Sse2.And(Sse2.LoadVector128(p), Vector128.Create((ushort)0x7FFF)));

    /// <summary>As <see cref="TrackMagnitudes(ref Vector128{ushort}, ushort*)"/> for sixteen halves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void TrackMagnitudes(ref Vector256<ushort> max, ushort* p) =>
        max = Avx2.Max(max, Avx2.And(Avx.LoadVector256(p), Vector256.Create((ushort)0x7FFF)));

    /// <summary>As <see cref="TrackMagnitudes(ref Vector128{ushort}, ushort*)"/> for thirty-two halves (AVX-512).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void TrackMagnitudes(ref Vector512<ushort> max, ushort* p) =>
        max = Avx512BW.Max(max, Avx512F.And(Avx512F.LoadVector512(p), Vector512.Create((ushort)0x7FFF)));

    /// <summary>True when a running max from <see cref="TrackMagnitudes(ref Vector512{ushort}, ushort*)"/> saw an infinity or NaN.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool SawSpecialHalf(Vector512<ushort> max) => SawSpecialHalf(Avx2.Max(max.GetLower(), max.GetUpper()));

    /// <summary>True when a running max from <see cref="TrackMagnitudes(ref Vector256{ushort}, ushort*)"/> saw an infinity or NaN.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool SawSpecialHalf(Vector256<ushort> max) => SawSpecialHalf(Sse41.Max(max.GetLower(), max.GetUpper()));

    /// <summary>True when a running max from <see cref="TrackMagnitudes(ref Vector128{ushort}, ushort*)"/> saw an infinity or NaN.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool SawSpecialHalf(Vector128<ushort> max) =>
        !Sse41.TestZ(Sse2.CompareEqual(Sse41.Max(max, Vector128.Create((ushort)0x7C00)), max), Vector128<ushort>.AllBitsSet);
}
