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
    public static float Q6_KQ8_K(byte* w, byte* a, int blocks) => CpuFeatures.Avx2Fma ? Q6Avx2(w, a, blocks) : Q6_KQ8_KScalar(w, a, blocks);

    /// <summary>Q4_K weights · Q8_K activations over <paramref name="blocks"/> super-blocks.</summary>
    public static float Q4_KQ8_K(byte* w, byte* a, int blocks) => CpuFeatures.Avx2Fma ? Q4Avx2(w, a, blocks) : Q4_KQ8_KScalar(w, a, blocks);

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
    private static float Q6Avx2(byte* w, byte* a, int blocks)
    {
        Vector256<byte> m4 = Vector256.Create((byte)0x0F), m3 = Vector256.Create((byte)3), c32 = Vector256.Create((byte)32);
        Vector256<float> acc = Vector256<float>.Zero;
        for (int i = 0; i < blocks; i++, w += Q6_KFormat.BlockBytes, a += ABytes)
        {
            float d = *(float*)a * Fp16Format.ToSingle(*(ushort*)(w + 208));
            sbyte* sc = (sbyte*)(w + 192);
            sbyte* q8 = (sbyte*)(a + 4);
            Vector256<int> sumi = Vector256<int>.Zero;
            for (int h = 0; h < 2; h++)
            {
                Vector256<byte> ql0 = Avx.LoadVector256(w + 64 * h), ql1 = Avx.LoadVector256(w + 64 * h + 32);
                Vector256<byte> qh = Avx.LoadVector256(w + 128 + 32 * h);
                for (int t = 0; t < 4; t++)
                {
                    Vector256<byte> lowSrc = (t & 1) == 0 ? ql0 : ql1;
                    Vector256<byte> low = t < 2 ? Avx2.And(lowSrc, m4) : Avx2.And(Avx2.ShiftRightLogical(lowSrc.AsUInt16(), 4).AsByte(), m4);
                    Vector256<byte> high = Avx2.ShiftLeftLogical(Avx2.And(qh, m3).AsUInt16(), 4).AsByte();
                    qh = Avx2.ShiftRightLogical(qh.AsUInt16(), 2).AsByte(); // next two high bits into bits 0-1
                    Vector256<byte> codes = Avx2.Or(low, high);
                    int c = 4 * h + t;
                    Vector256<sbyte> av = Avx.LoadVector256(q8 + 32 * c);
                    Vector256<short> p16 = Avx2.Subtract(Avx2.MultiplyAddAdjacent(codes, av), Avx2.MultiplyAddAdjacent(c32, av));
                    Vector256<short> scales = Vector256.Create(Vector128.Create((short)sc[2 * c]), Vector128.Create((short)sc[2 * c + 1]));
                    sumi = Avx2.Add(sumi, Avx2.MultiplyAddAdjacent(p16, scales));
                }
            }
            acc = Fma.MultiplyAdd(Vector256.Create(d), Avx.ConvertToVector256Single(sumi), acc);
        }
        return QuantDot.HorizontalSum(acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q4Avx2(byte* w, byte* a, int blocks)
    {
        Vector256<byte> m4 = Vector256.Create((byte)0x0F);
        Vector256<float> acc = Vector256<float>.Zero;
        Vector128<float> accM = Vector128<float>.Zero;
        int* sc = stackalloc int[8];
        int* mn = stackalloc int[8];
        for (int i = 0; i < blocks; i++, w += Q4_KFormat.BlockBytes, a += ABytes)
        {
            float da = *(float*)a;
            float d = da * Fp16Format.ToSingle(*(ushort*)w);
            float dmin = -da * Fp16Format.ToSingle(*(ushort*)(w + 2));
            for (int j = 0; j < 8; j++) KQuantMath.ScaleMinK4(j, w + 4, out sc[j], out mn[j]);
            accM = Fma.MultiplyAdd(Vector128.Create(dmin), Sse2.ConvertToVector128Single(MinLanes(mn, (short*)(a + 260))), accM);
            sbyte* q8 = (sbyte*)(a + 4);
            Vector256<int> sumi = Vector256<int>.Zero;
            for (int g = 0; g < 4; g++)
            {
                Vector256<byte> bits = Avx.LoadVector256(w + 16 + 32 * g);
                Vector256<byte> lo = Avx2.And(bits, m4);
                Vector256<byte> hi = Avx2.And(Avx2.ShiftRightLogical(bits.AsUInt16(), 4).AsByte(), m4);
                sumi = Avx2.Add(sumi, Avx2.Add(
                    ScaledLanes(lo, Avx.LoadVector256(q8 + 64 * g), Vector256.Create((short)sc[2 * g])),
                    ScaledLanes(hi, Avx.LoadVector256(q8 + 64 * g + 32), Vector256.Create((short)sc[2 * g + 1]))));
            }
            acc = Fma.MultiplyAdd(Vector256.Create(d), Avx.ConvertToVector256Single(sumi), acc);
        }
        return QuantDot.HorizontalSum(acc) + ((accM.GetElement(0) + accM.GetElement(2)) + (accM.GetElement(1) + accM.GetElement(3)));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q5Avx2(byte* w, byte* a, int blocks)
    {
        Vector256<byte> m4 = Vector256.Create((byte)0x0F), one = Vector256.Create((byte)1);
        Vector256<float> acc = Vector256<float>.Zero;
        float summs = 0;
        int* sc = stackalloc int[8];
        int* mn = stackalloc int[8];
        for (int i = 0; i < blocks; i++, w += Q5_KFormat.BlockBytes, a += ABytes)
        {
            float da = *(float*)a;
            float d = da * Fp16Format.ToSingle(*(ushort*)w);
            float dmin = -da * Fp16Format.ToSingle(*(ushort*)(w + 2));
            for (int j = 0; j < 8; j++) KQuantMath.ScaleMinK4(j, w + 4, out sc[j], out mn[j]);
            summs = MathF.FusedMultiplyAdd(dmin, MinSum(mn, (short*)(a + 260)), summs);
            sbyte* q8 = (sbyte*)(a + 4);
            Vector256<byte> qh = Avx.LoadVector256(w + 16);
            Vector256<int> sumi = Vector256<int>.Zero;
            for (int g = 0; g < 4; g++)
            {
                Vector256<byte> bits = Avx.LoadVector256(w + 48 + 32 * g);
                // qh is shifted right by one bit per 32-element chunk, so bit 0 of each byte is the current high bit.
                Vector256<byte> lo = Avx2.Or(Avx2.And(bits, m4), Avx2.ShiftLeftLogical(Avx2.And(qh, one).AsUInt16(), 4).AsByte());
                qh = Avx2.ShiftRightLogical(qh.AsUInt16(), 1).AsByte();
                Vector256<byte> hi = Avx2.Or(Avx2.And(Avx2.ShiftRightLogical(bits.AsUInt16(), 4).AsByte(), m4),
                    Avx2.ShiftLeftLogical(Avx2.And(qh, one).AsUInt16(), 4).AsByte());
                qh = Avx2.ShiftRightLogical(qh.AsUInt16(), 1).AsByte();
                sumi = Avx2.Add(sumi, Avx2.Add(
                    ScaledLanes(lo, Avx.LoadVector256(q8 + 64 * g), Vector256.Create((short)sc[2 * g])),
                    ScaledLanes(hi, Avx.LoadVector256(q8 + 64 * g + 32), Vector256.Create((short)sc[2 * g + 1]))));
            }
            acc = Fma.MultiplyAdd(Vector256.Create(d), Avx.ConvertToVector256Single(sumi), acc);
        }
        return QuantDot.HorizontalSum(acc) + summs;
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
        int* sc = stackalloc int[8];
        int* mn = stackalloc int[8];
        byte* codes = stackalloc byte[256];
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
