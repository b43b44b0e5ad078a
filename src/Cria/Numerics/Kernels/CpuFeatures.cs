using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Cria.Numerics.Kernels;

/// <summary>
/// Which kernel implementation this process uses. The choice is made by the JIT from the CPU's
/// features (the checks below are JIT-time constants, so the unused paths cost nothing):
/// <list type="bullet">
/// <item>"AVX2+FMA": the x86 kernels, which reproduce ggml's AVX2 build operation for operation.</item>
/// <item>"Vector256": portable vectors for the float kernels; the quantized dot products use their
/// scalar twins.</item>
/// <item>"scalar": scalar twins everywhere.</item>
/// </list>
/// Every path computes the same bits: the scalar twins emulate the vector lanes and the order of
/// the reductions, and use fused multiply-adds where ggml does.
/// </summary>
public static class CpuFeatures
{
    /// <summary>True when the AVX2 + FMA kernels run.</summary>
    public static bool Avx2Fma
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Avx2.IsSupported && Fma.IsSupported;
    }

    /// <summary>
    /// True when the 8×8 integer tiles for batched products run (<see cref="Q4KBatchDot"/>, <see cref="Q6KBatchDot"/>,
    /// <see cref="Q8BatchDot"/>): they need AVX-VNNI's vpdpbusd besides AVX2 + FMA.
    /// </summary>
    public static bool VnniTiles
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Avx2Fma && AvxVnni.IsSupported;
    }

    /// <summary>"AVX2+FMA", "Vector256" or "scalar" (see the class remarks); "+VNNI" is appended when AVX-VNNI speeds up the integer dots.</summary>
    public static string Describe() =>
        Avx2Fma ? (AvxVnni.IsSupported ? "AVX2+FMA+VNNI" : "AVX2+FMA")
        : Vector256.IsHardwareAccelerated ? "Vector256" : "scalar";

    /// <summary>Same as <see cref="Describe"/>.</summary>
    public static string KernelPath => Describe();
}
