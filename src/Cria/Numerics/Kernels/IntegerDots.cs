using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Cria.Numerics.Kernels;

/// <summary>
/// The integer steps of the eight-row K-quant tiles (<see cref="Q4KBatchDot"/>, <see cref="Q4Kx8Dot"/>,
/// <see cref="Q6KBatchDot"/>): unsigned codes of eight weight rows (lane r: row r) times broadcast signed activation
/// dwords, and products of shorts. A type argument picks AVX-VNNI (<see cref="Vnni"/>: vpdpbusd, vpdpwssd) or plain AVX2
/// (<see cref="NoVnni"/>: vpmaddubsw, vpmaddwd); both give the same integers, so the tiles give the same bits.
/// </summary>
internal static unsafe class IntegerDots
{
    internal interface ISteps
    {
        /// <summary>
        /// Q4_K: one 32-element sub-block for eight weight rows (4-bit codes), as two partial sums of 16 products each per
        /// lane, packed into two shorts whose total is the sub-block's sum, ready for <see cref="Shorts"/> with the scale in
        /// both shorts. A partial sum is at most 16 · 15 · 128 = 30720 in magnitude, so it fits a short exactly; scale ·
        /// low + scale · high is the sub-block's scaled sum, the same integer whichever 16 products each short holds.
        /// </summary>
        static abstract Vector256<short> SubBlockShorts(Vector256<byte> g0, Vector256<byte> g1, Vector256<byte> g2, Vector256<byte> g3,
            Vector256<byte> g4, Vector256<byte> g5, Vector256<byte> g6, Vector256<byte> g7, byte* x);

        /// <summary>
        /// Q6_K: Σ over one 16-element sub-block for eight rows: lane r gets Σ_j Σ_{b&lt;4} g_j[4r+b] · x[4j+b] (j &lt; 4),
        /// the unsigned 6-bit codes of row r times the signed activations.
        /// </summary>
        static abstract Vector256<int> Quarter(Vector256<byte> g0, Vector256<byte> g1, Vector256<byte> g2, Vector256<byte> g3, byte* x);

        /// <summary>sum + (per dword) the two products of the shorts of <paramref name="a"/> and <paramref name="b"/> (vpdpwssd).</summary>
        static abstract Vector256<int> Shorts(Vector256<int> sum, Vector256<short> a, Vector256<short> b);
    }

    /// <summary>AVX-VNNI: chains of vpdpbusd against broadcast activation dwords; vpdpwssd.</summary>
    internal struct Vnni : ISteps
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        /// <summary>Elements 0..15 in the low short, 16..31 in the high one.</summary>
        public static Vector256<short> SubBlockShorts(Vector256<byte> g0, Vector256<byte> g1, Vector256<byte> g2, Vector256<byte> g3,
            Vector256<byte> g4, Vector256<byte> g5, Vector256<byte> g6, Vector256<byte> g7, byte* x) =>
            Avx2.Blend(Quarter(g0, g1, g2, g3, x).AsInt16(), Avx2.ShiftLeftLogical(Quarter(g4, g5, g6, g7, x + 16), 16).AsInt16(), 0xAA);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Quarter(Vector256<byte> g0, Vector256<byte> g1, Vector256<byte> g2, Vector256<byte> g3, byte* x)
        {
            // One chain: the columns and quarters around it give the multiply-adds enough independent work.
            Vector256<int> s = AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, g0, Vector256.Create(*(int*)x).AsSByte());
            s = AvxVnni.MultiplyWideningAndAdd(s, g1, Vector256.Create(*(int*)(x + 4)).AsSByte());
            s = AvxVnni.MultiplyWideningAndAdd(s, g2, Vector256.Create(*(int*)(x + 8)).AsSByte());
            return AvxVnni.MultiplyWideningAndAdd(s, g3, Vector256.Create(*(int*)(x + 12)).AsSByte());
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Shorts(Vector256<int> sum, Vector256<short> a, Vector256<short> b) => AvxVnni.MultiplyWideningAndAdd(sum, a, b);
    }

    /// <summary>
    /// AVX2: vpmaddubsw per four codes, pair sums added as shorts while they cannot overflow; vpmaddwd and an add. Q4_K: a
    /// pair sum is at most 2 · 15 · 128 = 3840 in magnitude, the eight of a sub-block 30720, left in shorts for the scale's
    /// vpmaddwd. Q6_K: a pair sum is at most 2 · 63 · 128 = 16128, two of them 32256, then vpmaddwd by ones.
    /// </summary>
    internal struct NoVnni : ISteps
    {
        /// <summary>
        /// The eight vpmaddubsw results added as shorts: the low short of lane r sums the products of bytes 0 and 1 of
        /// every code dword, the high short those of bytes 2 and 3 (16 products each, at most 30720: no overflow).
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<short> SubBlockShorts(Vector256<byte> g0, Vector256<byte> g1, Vector256<byte> g2, Vector256<byte> g3,
            Vector256<byte> g4, Vector256<byte> g5, Vector256<byte> g6, Vector256<byte> g7, byte* x) =>
            Avx2.Add(Avx2.Add(Pairs(g0, g1, x), Pairs(g2, g3, x + 8)), Avx2.Add(Pairs(g4, g5, x + 16), Pairs(g6, g7, x + 24)));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Quarter(Vector256<byte> g0, Vector256<byte> g1, Vector256<byte> g2, Vector256<byte> g3, byte* x)
        {
            Vector256<short> ones = Vector256.Create((short)1);
            return Avx2.Add(Avx2.MultiplyAddAdjacent(Pairs(g0, g1, x), ones), Avx2.MultiplyAddAdjacent(Pairs(g2, g3, x + 8), ones));
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Shorts(Vector256<int> sum, Vector256<short> a, Vector256<short> b) => Avx2.Add(sum, Avx2.MultiplyAddAdjacent(a, b));

        /// <summary>vpmaddubsw of <paramref name="g0"/> by the activation dword at x and of <paramref name="g1"/> by the one at x + 4, added as shorts.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector256<short> Pairs(Vector256<byte> g0, Vector256<byte> g1, byte* x) =>
            Avx2.Add(Avx2.MultiplyAddAdjacent(g0, Vector256.Create(*(int*)x).AsSByte()), Avx2.MultiplyAddAdjacent(g1, Vector256.Create(*(int*)(x + 4)).AsSByte()));
    }
}
