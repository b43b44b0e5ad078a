using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Cria.Numerics.Kernels;

/// <summary>
/// Shared pieces of the 8 × 8 batched tile kernels (<see cref="Q4BatchDot"/>, <see cref="Q8BatchDot"/>, <see cref="Q4KBatchDot"/>, <see cref="Q6KBatchDot"/>): register transposes,
/// which put weight row r in lane r of every vector so one broadcast activation dword serves eight rows; the row pointers of a partial tile; the store of its lanes.
/// </summary>
internal static class RowTranspose
{
    /// <summary>
    /// Eight rows of four dwords (row r = <paramref name="r0"/>..<paramref name="r7"/>) to four vectors of eight:
    /// lane r of <paramref name="d0"/> is dword 0 of row r, and so on.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Eight(Vector128<byte> r0, Vector128<byte> r1, Vector128<byte> r2, Vector128<byte> r3,
        Vector128<byte> r4, Vector128<byte> r5, Vector128<byte> r6, Vector128<byte> r7,
        out Vector256<int> d0, out Vector256<int> d1, out Vector256<int> d2, out Vector256<int> d3)
    {
        Vector256<int> a = Vector256.Create(r0, r4).AsInt32(), b = Vector256.Create(r1, r5).AsInt32();
        Vector256<int> c = Vector256.Create(r2, r6).AsInt32(), d = Vector256.Create(r3, r7).AsInt32();
        Vector256<long> t0 = Avx2.UnpackLow(a, b).AsInt64(), t1 = Avx2.UnpackHigh(a, b).AsInt64();
        Vector256<long> t2 = Avx2.UnpackLow(c, d).AsInt64(), t3 = Avx2.UnpackHigh(c, d).AsInt64();
        d0 = Avx2.UnpackLow(t0, t2).AsInt32();
        d1 = Avx2.UnpackHigh(t0, t2).AsInt32();
        d2 = Avx2.UnpackLow(t1, t3).AsInt32();
        d3 = Avx2.UnpackHigh(t1, t3).AsInt32();
    }

    /// <summary><see cref="Eight(Vector128{byte}, Vector128{byte}, Vector128{byte}, Vector128{byte}, Vector128{byte}, Vector128{byte}, Vector128{byte}, Vector128{byte}, out Vector256{int}, out Vector256{int}, out Vector256{int}, out Vector256{int})"/> of the sixteen bytes at offset <paramref name="o"/> of eight rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe void Eight(byte* w0, byte* w1, byte* w2, byte* w3, byte* w4, byte* w5, byte* w6, byte* w7, nint o,
        out Vector256<int> d0, out Vector256<int> d1, out Vector256<int> d2, out Vector256<int> d3) =>
        Eight(Sse2.LoadVector128(w0 + o), Sse2.LoadVector128(w1 + o), Sse2.LoadVector128(w2 + o), Sse2.LoadVector128(w3 + o),
              Sse2.LoadVector128(w4 + o), Sse2.LoadVector128(w5 + o), Sse2.LoadVector128(w6 + o), Sse2.LoadVector128(w7 + o),
              out d0, out d1, out d2, out d3);

    /// <summary>
    /// The eight row pointers of a tile over <paramref name="nRows"/> (1..8) weight or activation rows: rows
    /// past the last repeat it (computed, never stored).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe void RowPointers(byte* w, nint stride, int nRows, out byte* w0, out byte* w1, out byte* w2, out byte* w3,
        out byte* w4, out byte* w5, out byte* w6, out byte* w7)
    {
        nint last = nRows - 1;
        w0 = w; w1 = w + Math.Min(1, last) * stride; w2 = w + Math.Min(2, last) * stride; w3 = w + Math.Min(3, last) * stride;
        w4 = w + Math.Min(4, last) * stride; w5 = w + Math.Min(5, last) * stride; w6 = w + Math.Min(6, last) * stride; w7 = w + Math.Min(7, last) * stride;
    }

    /// <summary>Stores the first <paramref name="n"/> (1..8) lanes of <paramref name="v"/> (a tile's outputs for one activation row).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe void StoreLanes(Vector256<float> v, float* y, int n)
    {
        if (n == 8) { Avx.Store(y, v); return; }
        for (int i = 0; i < n; i++) y[i] = v.GetElement(i);
    }
}
