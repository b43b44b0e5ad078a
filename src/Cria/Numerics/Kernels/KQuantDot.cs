using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Cria.Numerics.Formats;

namespace Cria.Numerics.Kernels;

/// <summary>
/// Dot products of K-quant weight rows with Q8_K activation rows, reproducing ggml's AVX2
/// ggml_vec_dot_q6_K_q8_K / q4_K_q8_K / q5_K_q8_K bit for bit.
/// <para>Per 256-value super-block the kernels form eight int32 lane sums: lane k collects, over
/// the eight 32-element chunks c of the block, scale(element)·code(element)·activation(element)
/// for the elements 32c+4k .. 32c+4k+3 (that is how vpmaddubsw + vpmaddwd with the broadcast
/// scales group them). The lanes are converted to float and accumulated with one fused
/// multiply-add by d = d_a·d_w into an eight-lane float accumulator, reduced at the end with
/// ggml's hsum order.</para>
/// <para>The min terms of Q4_K and Q5_K (dmin·Σ min_j·Σ_{sub-block j} a) come from the activation
/// block sums: Q4_K keeps them in a four-lane accumulator (lane l: sub-blocks 2l and 2l+1, fused
/// multiply-add by -d_a·dmin), folded as (l0+l2)+(l1+l3) and added after the main sum; Q5_K sums
/// them to one integer per block and accumulates -d_a·dmin times it into a scalar with a fused
/// multiply-add. Q6_K has no min term (codes are centred by subtracting 32).</para>
/// The scalar twins build the same integer lanes from the decoded codes and repeat the float steps.
/// </summary>
public static unsafe class KQuantDot
{
    /// <summary>Q6_K weights · Q8_K activations over <paramref name="blocks"/> super-blocks.</summary>
    public static float Q6_KQ8_K(byte* w, byte* a, int blocks) => CpuFeatures.Avx2Fma ? Q6Avx2(w, a, blocks, 0) : Q6_KQ8_KScalar(w, a, blocks);

    /// <summary>
    /// <see cref="Q6_KQ8_K"/> that also software-prefetches the bytes <paramref name="ahead"/> past each weight
    /// block it reads (decode: a later row), spread over the loop instead of issued in one burst. Same result.
    /// </summary>
    internal static float Q6_KQ8_KPrefetch(byte* w, byte* a, int blocks, nint ahead) => CpuFeatures.Avx2Fma ? Q6Avx2(w, a, blocks, ahead) : Q6_KQ8_KScalar(w, a, blocks);

    /// <summary><see cref="Q4_KQ8_K"/> with prefetching, as <see cref="Q6_KQ8_KPrefetch"/>.</summary>
    internal static float Q4_KQ8_KPrefetch(byte* w, byte* a, int blocks, nint ahead) => CpuFeatures.Avx2Fma ? Q4Avx2(w, a, blocks, ahead) : Q4_KQ8_KScalar(w, a, blocks);

    /// <summary>Q4_K weights · Q8_K activations over <paramref name="blocks"/> super-blocks.</summary>
    public static float Q4_KQ8_K(byte* w, byte* a, int blocks) => CpuFeatures.Avx2Fma ? Q4Avx2(w, a, blocks, 0) : Q4_KQ8_KScalar(w, a, blocks);

    /// <summary>Q5_K weights · Q8_K activations over <paramref name="blocks"/> super-blocks.</summary>
    public static float Q5_KQ8_K(byte* w, byte* a, int blocks) => CpuFeatures.Avx2Fma ? Q5Avx2(w, a, blocks) : Q5_KQ8_KScalar(w, a, blocks);

    /// <summary>Q3_K weights · Q8_K activations over <paramref name="blocks"/> super-blocks.</summary>
    public static float Q3_KQ8_K(byte* w, byte* a, int blocks) => Small(w, a, blocks, false, CpuFeatures.Avx2Fma);

    /// <summary>Q2_K weights · Q8_K activations over <paramref name="blocks"/> super-blocks.</summary>
    public static float Q2_KQ8_K(byte* w, byte* a, int blocks) => Small(w, a, blocks, true, CpuFeatures.Avx2Fma);

    internal static float Q3_KQ8_KScalar(byte* w, byte* a, int blocks) => Small(w, a, blocks, false, false);
    internal static float Q2_KQ8_KScalar(byte* w, byte* a, int blocks) => Small(w, a, blocks, true, false);

    private const int ABytes = Q8_KFormat.BlockBytes;

    /// <summary>
    /// Q2_K and Q3_K (ggml_vec_dot_q2_K_q8_K / q3_K_q8_K). Both have a scale per 16 elements; the
    /// codes are decoded to an unsigned part u (0..3) and, for Q3_K, a subtracted part h (4 when the
    /// high bit is clear), so each lane is Σ scale·(u·a - h·a), the same integers as ggml's
    /// vpmaddubsw/vpsubw/vpmaddwd sequence. Q2_K's min term is a second set of eight int lanes
    /// (lane k: min_{2k}·bsum_{2k} + min_{2k+1}·bsum_{2k+1}) accumulated into the same float
    /// accumulator, with a fused multiply-add by -d_a·dmin, before the block's main term.
    /// The codes are unpacked with scalar code on both paths; only the products are vectorised.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Small(byte* w, byte* a, int blocks, bool q2, bool avx)
    {
        byte* u = stackalloc byte[256];
        byte* h = stackalloc byte[256];
        int* sc = stackalloc int[16];
        int* mn = stackalloc int[16];
        int* v = stackalloc int[256];
        int* s = stackalloc int[256];
        int* lanes = stackalloc int[8];
        float* acc = stackalloc float[8];
        for (int k = 0; k < 8; k++) acc[k] = 0;
        Vector256<float> vacc = Vector256<float>.Zero;
        int bb = q2 ? Q2_KFormat.BlockBytes : Q3_KFormat.BlockBytes;
        for (int i = 0; i < blocks; i++)
        {
            byte* wb = w + (nint)i * bb;
            byte* ab = a + (nint)i * ABytes;
            sbyte* q8 = (sbyte*)(ab + 4);
            float da = *(float*)ab;
            float d, dmin = 0;
            if (q2)
            {
                d = da * Fp16Format.ToSingle(*(ushort*)(wb + 80));
                dmin = -da * Fp16Format.ToSingle(*(ushort*)(wb + 82));
                for (int j = 0; j < 16; j++) { sc[j] = wb[j] & 0xF; mn[j] = wb[j] >> 4; }
                for (int e = 0; e < 256; e++) { u[e] = (byte)Q2_KFormat.Code(wb, e); h[e] = 0; }
            }
            else
            {
                d = da * Fp16Format.ToSingle(*(ushort*)(wb + 108));
                for (int j = 0; j < 16; j++) sc[j] = Q3_KFormat.Scale(wb + 96, j);
                for (int e = 0; e < 256; e++)
                {
                    u[e] = (byte)((wb[32 + 32 * (e / 128) + e % 32] >> (2 * ((e / 32) % 4))) & 3);
                    h[e] = (byte)(((wb[e % 32] >> (e / 32)) & 1) != 0 ? 0 : 4);
                }
            }
            short* bsums = (short*)(ab + 260);
            if (avx)
            {
                if (q2)
                {
                    Vector256<int> ml = Vector256.Create(
                        mn[0] * bsums[0] + mn[1] * bsums[1], mn[2] * bsums[2] + mn[3] * bsums[3],
                        mn[4] * bsums[4] + mn[5] * bsums[5], mn[6] * bsums[6] + mn[7] * bsums[7],
                        mn[8] * bsums[8] + mn[9] * bsums[9], mn[10] * bsums[10] + mn[11] * bsums[11],
                        mn[12] * bsums[12] + mn[13] * bsums[13], mn[14] * bsums[14] + mn[15] * bsums[15]);
                    vacc = Fma.MultiplyAdd(Vector256.Create(dmin), Avx.ConvertToVector256Single(ml), vacc);
                }
                Vector256<int> sumi = Vector256<int>.Zero;
                for (int c = 0; c < 8; c++)
                {
                    Vector256<sbyte> av = Avx.LoadVector256(q8 + 32 * c);
                    Vector256<short> p16 = Avx2.Subtract(Avx2.MultiplyAddAdjacent(Avx.LoadVector256(u + 32 * c), av),
                                                         Avx2.MultiplyAddAdjacent(Avx.LoadVector256(h + 32 * c), av));
                    Vector256<short> scales = Vector256.Create(Vector128.Create((short)sc[2 * c]), Vector128.Create((short)sc[2 * c + 1]));
                    sumi = Avx2.Add(sumi, Avx2.MultiplyAddAdjacent(p16, scales));
                }
                vacc = Fma.MultiplyAdd(Vector256.Create(d), Avx.ConvertToVector256Single(sumi), vacc);
            }
            else
            {
                if (q2)
                    for (int k = 0; k < 8; k++)
                        acc[k] = MathF.FusedMultiplyAdd(dmin, mn[2 * k] * bsums[2 * k] + mn[2 * k + 1] * bsums[2 * k + 1], acc[k]);
                for (int e = 0; e < 256; e++) { v[e] = u[e] - h[e]; s[e] = sc[e / 16]; }
                Lanes(v, s, q8, lanes);
                for (int k = 0; k < 8; k++) acc[k] = MathF.FusedMultiplyAdd(d, lanes[k], acc[k]);
            }
        }
        return avx ? QuantDot.HorizontalSum(vacc) : QuantDot.HorizontalSum(acc);
    }

    // ------------------------------------------------------------------ AVX2

    /// <summary>scale · (lane sums of u·a): vpmaddubsw then vpmaddwd by the 16-bit scales.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> ScaledLanes(Vector256<byte> u, Vector256<sbyte> a, Vector256<short> scales) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, a), scales);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q6Avx2(byte* w, byte* a, int blocks, nint ahead)
    {
        Vector256<byte> c32 = Vector256.Create((byte)32);
        Vector256<float> acc = Vector256<float>.Zero;
        for (int i = 0; i < blocks; i++, w += Q6_KFormat.BlockBytes, a += ABytes)
        {
            if (ahead != 0)
            {
                Sse.Prefetch0(w + ahead); Sse.Prefetch0(w + ahead + 64); Sse.Prefetch0(w + ahead + 128); Sse.Prefetch0(w + ahead + 192);
            }
            float d = *(float*)a * Fp16Format.ToSingle(*(ushort*)(w + 208));
            sbyte* sc = (sbyte*)(w + 192);
            sbyte* q8 = (sbyte*)(a + 4);
            // The two half-blocks in two accumulators (two dependency chains of four chunks instead of
            // one of eight); their sum is the same integers as one running sum.
            Vector256<int> sum0 = Q6Half(w, sc, q8, c32, 0), sum1 = Q6Half(w, sc, q8, c32, 1);
            acc = Fma.MultiplyAdd(Vector256.Create(d), Avx.ConvertToVector256Single(Avx2.Add(sum0, sum1)), acc);
        }
        return QuantDot.HorizontalSum(acc);
    }

    /// <summary>Half-block <paramref name="h"/> (chunks 4h..4h+3) of a Q6_K super-block: Σ scale · (codes·a − 32·a) per lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Q6Half(byte* w, sbyte* sc, sbyte* q8, Vector256<byte> c32, int h)
    {
        Vector256<byte> ql0 = Avx.LoadVector256(w + 64 * h), ql1 = Avx.LoadVector256(w + 64 * h + 32);
        Vector256<byte> qh = Avx.LoadVector256(w + 128 + 32 * h);
        Vector256<int> sum = Vector256<int>.Zero;
        sum = Q6Lanes(sum, Q6Codes(ql0, ql1, qh, 0), c32, Avx.LoadVector256(q8 + 128 * h), Q6Scales(sc, 4 * h));
        sum = Q6Lanes(sum, Q6Codes(ql0, ql1, qh, 1), c32, Avx.LoadVector256(q8 + 128 * h + 32), Q6Scales(sc, 4 * h + 1));
        sum = Q6Lanes(sum, Q6Codes(ql0, ql1, qh, 2), c32, Avx.LoadVector256(q8 + 128 * h + 64), Q6Scales(sc, 4 * h + 2));
        return Q6Lanes(sum, Q6Codes(ql0, ql1, qh, 3), c32, Avx.LoadVector256(q8 + 128 * h + 96), Q6Scales(sc, 4 * h + 3));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q4Avx2(byte* w, byte* a, int blocks, nint ahead)
    {
        Vector256<byte> m4 = Vector256.Create((byte)0x0F);
        Vector256<float> acc = Vector256<float>.Zero;
        Vector128<float> accM = Vector128<float>.Zero;
        for (int i = 0; i < blocks; i++, w += Q4_KFormat.BlockBytes, a += ABytes)
        {
            if (ahead != 0)
            {
                Sse.Prefetch0(w + ahead); Sse.Prefetch0(w + ahead + 64); Sse.Prefetch0(w + ahead + 128);
            }
            float da = *(float*)a;
            float d = da * Fp16Format.ToSingle(*(ushort*)w);
            float dmin = -da * Fp16Format.ToSingle(*(ushort*)(w + 2));
            Vector128<short> mins = ScalesMinsK4(w + 4, out Vector256<byte> scales);
            accM = Fma.MultiplyAdd(Vector128.Create(dmin), Sse2.ConvertToVector128Single(MinLanes(mins, (short*)(a + 260))), accM);
            sbyte* q8 = (sbyte*)(a + 4);
            // Low and high nibbles in two accumulators (two dependency chains of four instead of one of
            // eight); their sum is the same integers as one running sum.
            Vector256<int> sumHi = Vector256<int>.Zero;
            Vector256<int> sumLo = Q4Group(Vector256<int>.Zero, w + 16, q8, m4, scales, 0, ref sumHi);
            sumLo = Q4Group(sumLo, w + 48, q8 + 64, m4, scales, 1, ref sumHi);
            sumLo = Q4Group(sumLo, w + 80, q8 + 128, m4, scales, 2, ref sumHi);
            sumLo = Q4Group(sumLo, w + 112, q8 + 192, m4, scales, 3, ref sumHi);
            Vector256<int> sumi = Avx2.Add(sumLo, sumHi);
            acc = Fma.MultiplyAdd(Vector256.Create(d), Avx.ConvertToVector256Single(sumi), acc);
        }
        return QuantDot.HorizontalSum(acc) + ((accM.GetElement(0) + accM.GetElement(2)) + (accM.GetElement(1) + accM.GetElement(3)));
    }

    /// <summary>
    /// Group <paramref name="g"/> of a Q4_K super-block (32 bytes of nibbles at <paramref name="bits"/>, 64
    /// activations at <paramref name="q8"/>): returns <paramref name="sumLo"/> + scale_2g · (low nibbles · a),
    /// and adds scale_2g+1 · (high nibbles · a) to <paramref name="sumHi"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Q4Group(Vector256<int> sumLo, byte* bits, sbyte* q8, Vector256<byte> m4, Vector256<byte> scales, int g, ref Vector256<int> sumHi)
    {
        Vector256<byte> v = Avx.LoadVector256(bits);
        Vector256<byte> lo = Avx2.And(v, m4);
        Vector256<byte> hi = Avx2.And(Avx2.ShiftRightLogical(v.AsUInt16(), 4).AsByte(), m4);
        sumHi = AddScaled(sumHi, Avx2.MultiplyAddAdjacent(hi, Avx.LoadVector256(q8 + 32)), ScaleOf(scales, 2 * g + 1));
        return AddScaled(sumLo, Avx2.MultiplyAddAdjacent(lo, Avx.LoadVector256(q8)), ScaleOf(scales, 2 * g));
    }

    /// <summary>
    /// The eight 6-bit scales and mins of a Q4_K/Q5_K super-block (the 12 bytes at <paramref name="q"/>), unpacked
    /// with four 32-bit mask-and-shift steps instead of eight scalar decodes (the values of <see cref="KQuantMath.ScaleMinK4"/>):
    /// returns the mins as eight shorts; <paramref name="scales"/> gets the scales as eight shorts, in both 128-bit halves.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<short> ScalesMinsK4(byte* q, out Vector256<byte> scales)
    {
        uint u0 = *(uint*)q, u1 = *(uint*)(q + 4), u2 = *(uint*)(q + 8);
        uint scLow = u0 & 0x3F3F3F3F;                                              // scales 0..3
        uint scHigh = (u2 & 0x0F0F0F0F) | (((u0 >> 6) & 0x03030303) << 4);       // scales 4..7
        uint mnLow = u1 & 0x3F3F3F3F;                                              // mins 0..3
        uint mnHigh = ((u2 >> 4) & 0x0F0F0F0F) | (((u1 >> 6) & 0x03030303) << 4); // mins 4..7
        Vector256<short> both = Avx2.ConvertToVector256Int16(Vector128.Create(scLow, scHigh, mnLow, mnHigh).AsByte());
        Vector128<byte> sc = both.GetLower().AsByte();
        scales = Vector256.Create(sc, sc);
        return both.GetUpper();
    }

    /// <summary>Scale <paramref name="k"/> (0..7) of <see cref="ScalesMinsK4"/>'s scales, broadcast to sixteen shorts.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> ScaleOf(Vector256<byte> scales, int k) =>
        Avx2.Shuffle(scales, Vector256.Create((ushort)(0x0100 + 0x0202 * k)).AsByte()).AsInt16();

    /// <summary>Four int lanes from eight mins (shorts): lane l = min_{2l}·S_{2l} + min_{2l+1}·S_{2l+1}, S_j = the two bsums of sub-block j.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> MinLanes(Vector128<short> mins, short* bsums) =>
        Sse2.MultiplyAddAdjacent(Ssse3.HorizontalAdd(Sse2.LoadVector128(bsums), Sse2.LoadVector128(bsums + 8)), mins);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q5Avx2(byte* w, byte* a, int blocks)
    {
        Vector256<byte> m4 = Vector256.Create((byte)0x0F), one = Vector256.Create((byte)1);
        Vector256<float> acc = Vector256<float>.Zero;
        float summs = 0;
        for (int i = 0; i < blocks; i++, w += Q5_KFormat.BlockBytes, a += ABytes)
        {
            float da = *(float*)a;
            float d = da * Fp16Format.ToSingle(*(ushort*)w);
            float dmin = -da * Fp16Format.ToSingle(*(ushort*)(w + 2));
            Vector128<short> mins = ScalesMinsK4(w + 4, out Vector256<byte> scales);
            summs = MathF.FusedMultiplyAdd(dmin, MinSum(mins, (short*)(a + 260)), summs);
            sbyte* q8 = (sbyte*)(a + 4);
            Vector256<byte> qh = Avx.LoadVector256(w + 16);
            // Unrolled (constant scale shuffles); groups 0-1 and 2-3 in two accumulators, the same integers as one running sum.
            Vector256<int> sum01 = Avx2.Add(Q5Group(w, q8, qh, m4, one, scales, 0), Q5Group(w, q8, qh, m4, one, scales, 1));
            Vector256<int> sum23 = Avx2.Add(Q5Group(w, q8, qh, m4, one, scales, 2), Q5Group(w, q8, qh, m4, one, scales, 3));
            acc = Fma.MultiplyAdd(Vector256.Create(d), Avx.ConvertToVector256Single(Avx2.Add(sum01, sum23)), acc);
        }
        return QuantDot.HorizontalSum(acc) + summs;
    }

    /// <summary>
    /// Group <paramref name="g"/> (64 elements) of a Q5_K super-block: scale_2g · (low codes · a) + scale_2g+1 · (high codes · a)
    /// per lane; the fifth bits of the group's two sub-blocks are bits 2g and 2g+1 of <paramref name="qh"/>'s bytes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Q5Group(byte* w, sbyte* q8, Vector256<byte> qh, Vector256<byte> m4, Vector256<byte> one, Vector256<byte> scales, int g)
    {
        Vector256<byte> bits = Avx.LoadVector256(w + 48 + 32 * g);
        Vector256<byte> h = Vector256.ShiftRightLogical(qh.AsUInt16(), 2 * g).AsByte(); // bit 0: sub-block 2g, bit 1: 2g+1
        Vector256<byte> lo = Avx2.Or(Avx2.And(bits, m4), Avx2.ShiftLeftLogical(Avx2.And(h, one).AsUInt16(), 4).AsByte());
        Vector256<byte> hi = Avx2.Or(Avx2.And(Avx2.ShiftRightLogical(bits.AsUInt16(), 4).AsByte(), m4),
            Avx2.ShiftLeftLogical(Avx2.And(Avx2.ShiftRightLogical(h.AsUInt16(), 1).AsByte(), one).AsUInt16(), 4).AsByte());
        return Avx2.Add(ScaledLanes(lo, Avx.LoadVector256(q8 + 64 * g), ScaleOf(scales, 2 * g)),
                        ScaledLanes(hi, Avx.LoadVector256(q8 + 64 * g + 32), ScaleOf(scales, 2 * g + 1)));
    }

    // ------------------------------------------------------------------ AVX2, one weight row × four activation rows

    /// <summary>
    /// The 32 six-bit codes of chunk <paramref name="t"/> (0..3, a constant) of a Q6_K half-block: low nibbles from
    /// ql0/ql1, two high bits from <paramref name="qh"/>, masked where they lie and moved to bits 4-5 in one shift (none
    /// for t = 2). Masking before the 16-bit shift keeps bits from crossing into the neighbouring byte.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Q6Codes(Vector256<byte> ql0, Vector256<byte> ql1, Vector256<byte> qh, int t)
    {
        Vector256<byte> m4 = Vector256.Create((byte)0x0F);
        Vector256<byte> lowSrc = (t & 1) == 0 ? ql0 : ql1;
        Vector256<byte> low = t < 2 ? Avx2.And(lowSrc, m4) : Avx2.And(Avx2.ShiftRightLogical(lowSrc.AsUInt16(), 4).AsByte(), m4);
        Vector256<byte> high = t switch
        {
            0 => Avx2.ShiftLeftLogical(Avx2.And(qh, Vector256.Create((byte)0x03)).AsUInt16(), 4).AsByte(),
            1 => Avx2.ShiftLeftLogical(Avx2.And(qh, Vector256.Create((byte)0x0C)).AsUInt16(), 2).AsByte(),
            2 => Avx2.And(qh, Vector256.Create((byte)0x30)),
            _ => Avx2.ShiftRightLogical(Avx2.And(qh, Vector256.Create((byte)0xC0)).AsUInt16(), 2).AsByte(),
        };
        return Avx2.Or(low, high);
    }

    /// <summary>
    /// The two 8-bit scales of Q6_K chunk <paramref name="c"/> (sixteen elements each), sign-extended: eight shorts
    /// of scale 2c then eight of scale 2c+1 (one byte shuffle of the block's sixteen scales and one widening).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Q6Scales(sbyte* sc, int c) =>
        Avx2.ConvertToVector256Int16(Ssse3.Shuffle(Sse2.LoadVector128(sc), Sse2.LoadVector128(Q6ScaleMasks + 16 * c)));

    /// <summary>Byte-shuffle masks for <see cref="Q6Scales"/>: mask c selects byte 2c eight times, then byte 2c+1 eight times.</summary>
    private static readonly sbyte* Q6ScaleMasks = BuildQ6ScaleMasks();

    private static sbyte* BuildQ6ScaleMasks()
    {
        var m = (sbyte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(128, 64); // lives as long as the process
        for (int c = 0; c < 8; c++)
            for (int k = 0; k < 16; k++) m[16 * c + k] = (sbyte)(2 * c + k / 8);
        return m;
    }

    /// <summary>A Q4_K/Q5_K output: the lane sum of the scaled products plus the four min-term lanes, in the single-row kernel's order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float WithMins(Vector256<float> acc, Vector128<float> accM) =>
        QuantDot.HorizontalSum(acc) + ((accM.GetElement(0) + accM.GetElement(2)) + (accM.GetElement(1) + accM.GetElement(3)));

    /// <summary>sumi + Q6_K's per-chunk lanes scale · (codes·a − 32·a), the integers of <see cref="Q6Avx2"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Q6Lanes(Vector256<int> sumi, Vector256<byte> codes, Vector256<byte> c32, Vector256<sbyte> av, Vector256<short> scales) =>
        AddScaled(sumi, Avx2.Subtract(Avx2.MultiplyAddAdjacent(codes, av), Avx2.MultiplyAddAdjacent(c32, av)), scales);

    /// <summary>
    /// sumi + vpmaddwd(p16, scales). With AVX-VNNI one vpdpwssd; the int32 lanes are the same
    /// integers (exact sums, no saturation) as the separate multiply-add and add.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> AddScaled(Vector256<int> sumi, Vector256<short> p16, Vector256<short> scales) =>
        AvxVnni.IsSupported ? AvxVnni.MultiplyWideningAndAdd(sumi, p16, scales) : Avx2.Add(sumi, Avx2.MultiplyAddAdjacent(p16, scales));

    /// <summary>
    /// Four outputs of <see cref="Q4Avx2"/> at once: weight row <paramref name="w"/> against the activation rows
    /// <paramref name="a"/> + k·<paramref name="aStride"/> (k = 0..3), results to <paramref name="y"/> + k·<paramref name="yStride"/>.
    /// The codes and scales of each super-block are unpacked once; every output gets exactly the
    /// integer lanes, fused multiply-adds and final reduction of the single-row kernel.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Q4Avx2Rows4(byte* w, byte* a, nint aStride, int blocks, float* y, nint yStride)
    {
        Vector256<byte> m4 = Vector256.Create((byte)0x0F);
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = acc0, acc2 = acc0, acc3 = acc0;
        Vector128<float> accM0 = Vector128<float>.Zero, accM1 = accM0, accM2 = accM0, accM3 = accM0;
        byte* a0 = a, a1 = a + aStride, a2 = a + 2 * aStride, a3 = a + 3 * aStride;
        for (int i = 0; i < blocks; i++, w += Q4_KFormat.BlockBytes, a0 += ABytes, a1 += ABytes, a2 += ABytes, a3 += ABytes)
        {
            float dw = Fp16Format.ToSingle(*(ushort*)w);
            float dmw = Fp16Format.ToSingle(*(ushort*)(w + 2));
            Vector128<short> mins = ScalesMinsK4(w + 4, out Vector256<byte> scales);
            Vector256<int> s0 = Vector256<int>.Zero, s1 = s0, s2 = s0, s3 = s0;
            for (int g = 0; g < 4; g++)
            {
                Vector256<byte> bits = Avx.LoadVector256(w + 16 + 32 * g);
                Vector256<byte> lo = Avx2.And(bits, m4);
                Vector256<byte> hi = Avx2.And(Avx2.ShiftRightLogical(bits.AsUInt16(), 4).AsByte(), m4);
                Vector256<short> scLo = ScaleOf(scales, 2 * g), scHi = ScaleOf(scales, 2 * g + 1);
                nint o = 4 + 64 * g;
                s0 = AddScaled(AddScaled(s0, Avx2.MultiplyAddAdjacent(lo, Avx.LoadVector256((sbyte*)(a0 + o))), scLo), Avx2.MultiplyAddAdjacent(hi, Avx.LoadVector256((sbyte*)(a0 + o + 32))), scHi);
                s1 = AddScaled(AddScaled(s1, Avx2.MultiplyAddAdjacent(lo, Avx.LoadVector256((sbyte*)(a1 + o))), scLo), Avx2.MultiplyAddAdjacent(hi, Avx.LoadVector256((sbyte*)(a1 + o + 32))), scHi);
                s2 = AddScaled(AddScaled(s2, Avx2.MultiplyAddAdjacent(lo, Avx.LoadVector256((sbyte*)(a2 + o))), scLo), Avx2.MultiplyAddAdjacent(hi, Avx.LoadVector256((sbyte*)(a2 + o + 32))), scHi);
                s3 = AddScaled(AddScaled(s3, Avx2.MultiplyAddAdjacent(lo, Avx.LoadVector256((sbyte*)(a3 + o))), scLo), Avx2.MultiplyAddAdjacent(hi, Avx.LoadVector256((sbyte*)(a3 + o + 32))), scHi);
            }
            float da0 = *(float*)a0, da1 = *(float*)a1, da2 = *(float*)a2, da3 = *(float*)a3;
            accM0 = Fma.MultiplyAdd(Vector128.Create(-da0 * dmw), Sse2.ConvertToVector128Single(MinLanes(mins, (short*)(a0 + 260))), accM0);
            accM1 = Fma.MultiplyAdd(Vector128.Create(-da1 * dmw), Sse2.ConvertToVector128Single(MinLanes(mins, (short*)(a1 + 260))), accM1);
            accM2 = Fma.MultiplyAdd(Vector128.Create(-da2 * dmw), Sse2.ConvertToVector128Single(MinLanes(mins, (short*)(a2 + 260))), accM2);
            accM3 = Fma.MultiplyAdd(Vector128.Create(-da3 * dmw), Sse2.ConvertToVector128Single(MinLanes(mins, (short*)(a3 + 260))), accM3);
            acc0 = Fma.MultiplyAdd(Vector256.Create(da0 * dw), Avx.ConvertToVector256Single(s0), acc0);
            acc1 = Fma.MultiplyAdd(Vector256.Create(da1 * dw), Avx.ConvertToVector256Single(s1), acc1);
            acc2 = Fma.MultiplyAdd(Vector256.Create(da2 * dw), Avx.ConvertToVector256Single(s2), acc2);
            acc3 = Fma.MultiplyAdd(Vector256.Create(da3 * dw), Avx.ConvertToVector256Single(s3), acc3);
        }
        y[0] = WithMins(acc0, accM0);
        y[yStride] = WithMins(acc1, accM1);
        y[2 * yStride] = WithMins(acc2, accM2);
        y[3 * yStride] = WithMins(acc3, accM3);
    }

    /// <summary>
    /// Eight outputs of <see cref="Q4Avx2"/> at once, as <see cref="Q4Avx2Rows4"/>; for machines with AVX-512 (the JIT
    /// then has 32 vector registers, so the eight accumulators stay in registers).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Q4Avx2Rows8(byte* w, byte* a, nint aStride, int blocks, float* y, nint yStride)
    {
        Vector256<byte> m4 = Vector256.Create((byte)0x0F);
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = acc0, acc2 = acc0, acc3 = acc0, acc4 = acc0, acc5 = acc0, acc6 = acc0, acc7 = acc0;
        Vector128<float> accM0 = Vector128<float>.Zero, accM1 = accM0, accM2 = accM0, accM3 = accM0, accM4 = accM0, accM5 = accM0, accM6 = accM0, accM7 = accM0;
        byte* a0 = a, a1 = a + aStride, a2 = a + 2 * aStride, a3 = a + 3 * aStride, a4 = a + 4 * aStride, a5 = a + 5 * aStride, a6 = a + 6 * aStride, a7 = a + 7 * aStride;
        for (int i = 0; i < blocks; i++, w += Q4_KFormat.BlockBytes, a0 += ABytes, a1 += ABytes, a2 += ABytes, a3 += ABytes, a4 += ABytes, a5 += ABytes, a6 += ABytes, a7 += ABytes)
        {
            float dw = Fp16Format.ToSingle(*(ushort*)w);
            float dmw = Fp16Format.ToSingle(*(ushort*)(w + 2));
            Vector128<short> mins = ScalesMinsK4(w + 4, out Vector256<byte> scales);
            Vector256<int> s0 = Vector256<int>.Zero, s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
            for (int g = 0; g < 4; g++)
            {
                Vector256<byte> bits = Avx.LoadVector256(w + 16 + 32 * g);
                Vector256<byte> lo = Avx2.And(bits, m4);
                Vector256<byte> hi = Avx2.And(Avx2.ShiftRightLogical(bits.AsUInt16(), 4).AsByte(), m4);
                Vector256<short> scLo = ScaleOf(scales, 2 * g), scHi = ScaleOf(scales, 2 * g + 1);
                nint o = 4 + 64 * g;
                s0 = AddScaled(AddScaled(s0, Avx2.MultiplyAddAdjacent(lo, Avx.LoadVector256((sbyte*)(a0 + o))), scLo), Avx2.MultiplyAddAdjacent(hi, Avx.LoadVector256((sbyte*)(a0 + o + 32))), scHi);
                s1 = AddScaled(AddScaled(s1, Avx2.MultiplyAddAdjacent(lo, Avx.LoadVector256((sbyte*)(a1 + o))), scLo), Avx2.MultiplyAddAdjacent(hi, Avx.LoadVector256((sbyte*)(a1 + o + 32))), scHi);
                s2 = AddScaled(AddScaled(s2, Avx2.MultiplyAddAdjacent(lo, Avx.LoadVector256((sbyte*)(a2 + o))), scLo), Avx2.MultiplyAddAdjacent(hi, Avx.LoadVector256((sbyte*)(a2 + o + 32))), scHi);
                s3 = AddScaled(AddScaled(s3, Avx2.MultiplyAddAdjacent(lo, Avx.LoadVector256((sbyte*)(a3 + o))), scLo), Avx2.MultiplyAddAdjacent(hi, Avx.LoadVector256((sbyte*)(a3 + o + 32))), scHi);
                s4 = AddScaled(AddScaled(s4, Avx2.MultiplyAddAdjacent(lo, Avx.LoadVector256((sbyte*)(a4 + o))), scLo), Avx2.MultiplyAddAdjacent(hi, Avx.LoadVector256((sbyte*)(a4 + o + 32))), scHi);
                s5 = AddScaled(AddScaled(s5, Avx2.MultiplyAddAdjacent(lo, Avx.LoadVector256((sbyte*)(a5 + o))), scLo), Avx2.MultiplyAddAdjacent(hi, Avx.LoadVector256((sbyte*)(a5 + o + 32))), scHi);
                s6 = AddScaled(AddScaled(s6, Avx2.MultiplyAddAdjacent(lo, Avx.LoadVector256((sbyte*)(a6 + o))), scLo), Avx2.MultiplyAddAdjacent(hi, Avx.LoadVector256((sbyte*)(a6 + o + 32))), scHi);
                s7 = AddScaled(AddScaled(s7, Avx2.MultiplyAddAdjacent(lo, Avx.LoadVector256((sbyte*)(a7 + o))), scLo), Avx2.MultiplyAddAdjacent(hi, Avx.LoadVector256((sbyte*)(a7 + o + 32))), scHi);
            }
            float da0 = *(float*)a0, da1 = *(float*)a1, da2 = *(float*)a2, da3 = *(float*)a3, da4 = *(float*)a4, da5 = *(float*)a5, da6 = *(float*)a6, da7 = *(float*)a7;
            accM0 = Fma.MultiplyAdd(Vector128.Create(-da0 * dmw), Sse2.ConvertToVector128Single(MinLanes(mins, (short*)(a0 + 260))), accM0);
            accM1 = Fma.MultiplyAdd(Vector128.Create(-da1 * dmw), Sse2.ConvertToVector128Single(MinLanes(mins, (short*)(a1 + 260))), accM1);
            accM2 = Fma.MultiplyAdd(Vector128.Create(-da2 * dmw), Sse2.ConvertToVector128Single(MinLanes(mins, (short*)(a2 + 260))), accM2);
            accM3 = Fma.MultiplyAdd(Vector128.Create(-da3 * dmw), Sse2.ConvertToVector128Single(MinLanes(mins, (short*)(a3 + 260))), accM3);
            accM4 = Fma.MultiplyAdd(Vector128.Create(-da4 * dmw), Sse2.ConvertToVector128Single(MinLanes(mins, (short*)(a4 + 260))), accM4);
            accM5 = Fma.MultiplyAdd(Vector128.Create(-da5 * dmw), Sse2.ConvertToVector128Single(MinLanes(mins, (short*)(a5 + 260))), accM5);
            accM6 = Fma.MultiplyAdd(Vector128.Create(-da6 * dmw), Sse2.ConvertToVector128Single(MinLanes(mins, (short*)(a6 + 260))), accM6);
            accM7 = Fma.MultiplyAdd(Vector128.Create(-da7 * dmw), Sse2.ConvertToVector128Single(MinLanes(mins, (short*)(a7 + 260))), accM7);
            acc0 = Fma.MultiplyAdd(Vector256.Create(da0 * dw), Avx.ConvertToVector256Single(s0), acc0);
            acc1 = Fma.MultiplyAdd(Vector256.Create(da1 * dw), Avx.ConvertToVector256Single(s1), acc1);
            acc2 = Fma.MultiplyAdd(Vector256.Create(da2 * dw), Avx.ConvertToVector256Single(s2), acc2);
            acc3 = Fma.MultiplyAdd(Vector256.Create(da3 * dw), Avx.ConvertToVector256Single(s3), acc3);
            acc4 = Fma.MultiplyAdd(Vector256.Create(da4 * dw), Avx.ConvertToVector256Single(s4), acc4);
            acc5 = Fma.MultiplyAdd(Vector256.Create(da5 * dw), Avx.ConvertToVector256Single(s5), acc5);
            acc6 = Fma.MultiplyAdd(Vector256.Create(da6 * dw), Avx.ConvertToVector256Single(s6), acc6);
            acc7 = Fma.MultiplyAdd(Vector256.Create(da7 * dw), Avx.ConvertToVector256Single(s7), acc7);
        }
        y[0] = WithMins(acc0, accM0);
        y[yStride] = WithMins(acc1, accM1);
        y[2 * yStride] = WithMins(acc2, accM2);
        y[3 * yStride] = WithMins(acc3, accM3);
        y[4 * yStride] = WithMins(acc4, accM4);
        y[5 * yStride] = WithMins(acc5, accM5);
        y[6 * yStride] = WithMins(acc6, accM6);
        y[7 * yStride] = WithMins(acc7, accM7);
    }

    /// <summary>Four outputs of <see cref="Q5Avx2"/> at once (layout as <see cref="Q4Avx2Rows4"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Q5Avx2Rows4(byte* w, byte* a, nint aStride, int blocks, float* y, nint yStride)
    {
        Vector256<byte> m4 = Vector256.Create((byte)0x0F), one = Vector256.Create((byte)1);
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = acc0, acc2 = acc0, acc3 = acc0;
        float summs0 = 0, summs1 = 0, summs2 = 0, summs3 = 0;
        byte* a0 = a, a1 = a + aStride, a2 = a + 2 * aStride, a3 = a + 3 * aStride;
        for (int i = 0; i < blocks; i++, w += Q5_KFormat.BlockBytes, a0 += ABytes, a1 += ABytes, a2 += ABytes, a3 += ABytes)
        {
            float dw = Fp16Format.ToSingle(*(ushort*)w);
            float dmw = Fp16Format.ToSingle(*(ushort*)(w + 2));
            Vector128<short> mins = ScalesMinsK4(w + 4, out Vector256<byte> scales);
            Vector256<byte> qh = Avx.LoadVector256(w + 16);
            Vector256<int> s0 = Vector256<int>.Zero, s1 = s0, s2 = s0, s3 = s0;
            for (int g = 0; g < 4; g++)
            {
                Vector256<byte> bits = Avx.LoadVector256(w + 48 + 32 * g);
                Vector256<byte> lo = Avx2.Or(Avx2.And(bits, m4), Avx2.ShiftLeftLogical(Avx2.And(qh, one).AsUInt16(), 4).AsByte());
                qh = Avx2.ShiftRightLogical(qh.AsUInt16(), 1).AsByte();
                Vector256<byte> hi = Avx2.Or(Avx2.And(Avx2.ShiftRightLogical(bits.AsUInt16(), 4).AsByte(), m4),
                    Avx2.ShiftLeftLogical(Avx2.And(qh, one).AsUInt16(), 4).AsByte());
                qh = Avx2.ShiftRightLogical(qh.AsUInt16(), 1).AsByte();
                Vector256<short> scLo = ScaleOf(scales, 2 * g), scHi = ScaleOf(scales, 2 * g + 1);
                nint o = 4 + 64 * g;
                s0 = AddScaled(AddScaled(s0, Avx2.MultiplyAddAdjacent(lo, Avx.LoadVector256((sbyte*)(a0 + o))), scLo), Avx2.MultiplyAddAdjacent(hi, Avx.LoadVector256((sbyte*)(a0 + o + 32))), scHi);
                s1 = AddScaled(AddScaled(s1, Avx2.MultiplyAddAdjacent(lo, Avx.LoadVector256((sbyte*)(a1 + o))), scLo), Avx2.MultiplyAddAdjacent(hi, Avx.LoadVector256((sbyte*)(a1 + o + 32))), scHi);
                s2 = AddScaled(AddScaled(s2, Avx2.MultiplyAddAdjacent(lo, Avx.LoadVector256((sbyte*)(a2 + o))), scLo), Avx2.MultiplyAddAdjacent(hi, Avx.LoadVector256((sbyte*)(a2 + o + 32))), scHi);
                s3 = AddScaled(AddScaled(s3, Avx2.MultiplyAddAdjacent(lo, Avx.LoadVector256((sbyte*)(a3 + o))), scLo), Avx2.MultiplyAddAdjacent(hi, Avx.LoadVector256((sbyte*)(a3 + o + 32))), scHi);
            }
            float da0 = *(float*)a0, da1 = *(float*)a1, da2 = *(float*)a2, da3 = *(float*)a3;
            summs0 = MathF.FusedMultiplyAdd(-da0 * dmw, MinSum(mins, (short*)(a0 + 260)), summs0);
            summs1 = MathF.FusedMultiplyAdd(-da1 * dmw, MinSum(mins, (short*)(a1 + 260)), summs1);
            summs2 = MathF.FusedMultiplyAdd(-da2 * dmw, MinSum(mins, (short*)(a2 + 260)), summs2);
            summs3 = MathF.FusedMultiplyAdd(-da3 * dmw, MinSum(mins, (short*)(a3 + 260)), summs3);
            acc0 = Fma.MultiplyAdd(Vector256.Create(da0 * dw), Avx.ConvertToVector256Single(s0), acc0);
            acc1 = Fma.MultiplyAdd(Vector256.Create(da1 * dw), Avx.ConvertToVector256Single(s1), acc1);
            acc2 = Fma.MultiplyAdd(Vector256.Create(da2 * dw), Avx.ConvertToVector256Single(s2), acc2);
            acc3 = Fma.MultiplyAdd(Vector256.Create(da3 * dw), Avx.ConvertToVector256Single(s3), acc3);
        }
        y[0] = QuantDot.HorizontalSum(acc0) + summs0;
        y[yStride] = QuantDot.HorizontalSum(acc1) + summs1;
        y[2 * yStride] = QuantDot.HorizontalSum(acc2) + summs2;
        y[3 * yStride] = QuantDot.HorizontalSum(acc3) + summs3;
    }

    /// <summary>Σ_j min_j · S_j as one integer, from <see cref="MinLanes(Vector128{short}, short*)"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int MinSum(Vector128<short> mins, short* bsums)
    {
        Vector128<int> l = MinLanes(mins, bsums);
        l = Sse2.Add(l, Sse2.Shuffle(l, 0b01_00_11_10));
        return Sse2.ConvertToInt32(Sse2.Add(l, Sse2.Shuffle(l, 0b10_11_00_01)));
    }

    /// <summary>Four int lanes: lane l = min_{2l}·S_{2l} + min_{2l+1}·S_{2l+1}, S_j the activation sum of sub-block j (two bsums).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> MinLanes(int* mins, short* bsums)
    {
        int L(int l) => mins[2 * l] * (bsums[4 * l] + bsums[4 * l + 1]) + mins[2 * l + 1] * (bsums[4 * l + 2] + bsums[4 * l + 3]);
        return Vector128.Create(L(0), L(1), L(2), L(3));
    }

    /// <summary>Σ_j min_j · S_j as one integer.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int MinSum(int* mins, short* bsums)
    {
        int s = 0;
        for (int j = 0; j < 8; j++) s += mins[j] * (bsums[2 * j] + bsums[2 * j + 1]);
        return s;
    }

    // ------------------------------------------------------------------ scalar twins

    /// <summary>Lane k = Σ_c Σ_{p=4k..4k+3} scale[32c+p]·v[32c+p]·a[32c+p] over one super-block.</summary>
    private static void Lanes(int* v, int* scale, sbyte* a, int* lanes)
    {
        for (int k = 0; k < 8; k++) lanes[k] = 0;
        for (int c = 0; c < 8; c++)
            for (int p = 0; p < 32; p++)
            {
                int e = 32 * c + p;
                lanes[p >> 2] += scale[e] * v[e] * a[e];
            }
    }

    internal static float Q6_KQ8_KScalar(byte* w, byte* a, int blocks)
    {
        float* acc = stackalloc float[8];
        int* v = stackalloc int[256];
        int* s = stackalloc int[256];
        int* lanes = stackalloc int[8];
        sbyte* q = stackalloc sbyte[256];
        for (int k = 0; k < 8; k++) acc[k] = 0;
        for (int i = 0; i < blocks; i++)
        {
            byte* wb = w + (nint)i * Q6_KFormat.BlockBytes;
            byte* ab = a + (nint)i * ABytes;
            Q6_KFormat.Codes(wb, q);
            for (int e = 0; e < 256; e++) { v[e] = q[e]; s[e] = ((sbyte*)(wb + 192))[e / 16]; }
            Lanes(v, s, (sbyte*)(ab + 4), lanes);
            float d = *(float*)ab * Fp16Format.ToSingle(*(ushort*)(wb + 208));
            for (int k = 0; k < 8; k++) acc[k] = MathF.FusedMultiplyAdd(d, lanes[k], acc[k]);
        }
        return QuantDot.HorizontalSum(acc);
    }

    internal static float Q4_KQ8_KScalar(byte* w, byte* a, int blocks) => ScaleMinScalar(w, a, blocks, false);

    internal static float Q5_KQ8_KScalar(byte* w, byte* a, int blocks) => ScaleMinScalar(w, a, blocks, true);

    private static float ScaleMinScalar(byte* w, byte* a, int blocks, bool five)
    {
        float* acc = stackalloc float[8];
        float* accM = stackalloc float[4];
        int* v = stackalloc int[256];
        int* s = stackalloc int[256];
        int* lanes = stackalloc int[8];
        byte* codes = stackalloc byte[256];
        int* sc = stackalloc int[8];
        int* mn = stackalloc int[8];
        for (int k = 0; k < 8; k++) acc[k] = 0;
        for (int k = 0; k < 4; k++) accM[k] = 0;
        float summs = 0;
        int bb = five ? Q5_KFormat.BlockBytes : Q4_KFormat.BlockBytes;
        for (int i = 0; i < blocks; i++)
        {
            byte* wb = w + (nint)i * bb;
            byte* ab = a + (nint)i * ABytes;
            if (five) Q5_KFormat.Codes(wb, codes);
            else
                for (int g = 0; g < 4; g++)
                    for (int l = 0; l < 32; l++)
                    {
                        codes[64 * g + l] = (byte)(wb[16 + 32 * g + l] & 0xF);
                        codes[64 * g + 32 + l] = (byte)(wb[16 + 32 * g + l] >> 4);
                    }
            for (int j = 0; j < 8; j++) KQuantMath.ScaleMinK4(j, wb + 4, out sc[j], out mn[j]);
            for (int e = 0; e < 256; e++) { v[e] = codes[e]; s[e] = sc[e / 32]; }
            Lanes(v, s, (sbyte*)(ab + 4), lanes);
            float da = *(float*)ab;
            float d = da * Fp16Format.ToSingle(*(ushort*)wb);
            float dmin = -da * Fp16Format.ToSingle(*(ushort*)(wb + 2));
            short* bsums = (short*)(ab + 260);
            if (five) summs = MathF.FusedMultiplyAdd(dmin, MinSum(mn, bsums), summs);
            else
            {
                Vector128<int> ml = MinLanes(mn, bsums);
                for (int l = 0; l < 4; l++) accM[l] = MathF.FusedMultiplyAdd(dmin, ml.GetElement(l), accM[l]);
            }
            for (int k = 0; k < 8; k++) acc[k] = MathF.FusedMultiplyAdd(d, lanes[k], acc[k]);
        }
        float main = QuantDot.HorizontalSum(acc);
        return five ? main + summs : main + ((accM[0] + accM[2]) + (accM[1] + accM[3]));
    }
}
