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

    /// <summary>
    /// True on AMD processors. Two decode choices follow from it, both measured on Zen 4 (in-process, TinyLlama-shaped
    /// F16, decode t/s, medians of 8 alternations): its fused multiply-adds take subnormal operands at full speed, so
    /// <see cref="FloatDot"/>'s F16 kernels skip the per-chunk subnormal test and its rarely taken, badly predicted
    /// branch; and weights streamed from memory are prefetched into L2 rather than L1. Current kernel 11.3 t/s; the
    /// L2 prefetch alone 13.5; skipping the test alone 11.5; both 19.9 (Llama-3.2-1B: 8.5 against 12.0). On Intel
    /// processors an FMA with a subnormal operand takes a microcode assist (a few subnormal halves per thousand made
    /// the dot three times slower), so they keep the test and the L1 prefetch.
    /// </summary>
    public static readonly bool Amd = X86Base.IsSupported && IsAuthenticAmd();

    private static bool IsAuthenticAmd()
    {
        var (_, ebx, ecx, edx) = X86Base.CpuId(0, 0);
        return ebx == 0x68747541 && edx == 0x69746E65 && ecx == 0x444D4163; // "Auth" "enti" "cAMD"
    }

    /// <summary>"AVX2+FMA", "Vector256" or "scalar" (see the class remarks); "+VNNI" is appended when AVX-VNNI speeds up the integer dots.</summary>
    public static string Describe() =>
        Avx2Fma ? (AvxVnni.IsSupported ? "AVX2+FMA+VNNI" : "AVX2+FMA")
        : Vector256.IsHardwareAccelerated ? "Vector256" : "scalar";

    /// <summary>Same as <see cref="Describe"/>.</summary>
    public static string KernelPath => Describe();
}
