using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Cria.Numerics.Kernels;

/// <summary>Reading a repacked group's ready vectors (<see cref="Q4Kx8Dot"/>, <see cref="Q6Kx8Dot"/>): eight at a time, their lines prefetched ahead.</summary>
internal static unsafe class GroupVectors
{
    /// <summary>The eight vectors (256 bytes) at <paramref name="q"/>; the four lines <paramref name="ahead"/> bytes further are prefetched into L1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Eight(int* q, int ahead, out Vector256<int> v0, out Vector256<int> v1, out Vector256<int> v2, out Vector256<int> v3,
        out Vector256<int> v4, out Vector256<int> v5, out Vector256<int> v6, out Vector256<int> v7)
    {
        byte* p = (byte*)q + ahead;
        Sse.Prefetch0(p); Sse.Prefetch0(p + 64); Sse.Prefetch0(p + 128); Sse.Prefetch0(p + 192);
        v0 = Avx.LoadVector256(q); v1 = Avx.LoadVector256(q + 8); v2 = Avx.LoadVector256(q + 16); v3 = Avx.LoadVector256(q + 24);
        v4 = Avx.LoadVector256(q + 32); v5 = Avx.LoadVector256(q + 40); v6 = Avx.LoadVector256(q + 48); v7 = Avx.LoadVector256(q + 56);
    }
}
