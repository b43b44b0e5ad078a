namespace Cria.Numerics.Kernels;

/// <summary>
/// The kernels over a K-quant matrix repacked into eight-row groups (<see cref="Q4Kx8Dot.Kernel"/>,
/// <see cref="Q6Kx8Dot.Kernel"/>), for <see cref="MatMul"/> to pick with a type argument: decode's one-column kernel
/// and the batched tile, which give the same bits.
/// </summary>
internal unsafe interface IGroupKernel
{
    /// <summary>Elements per super-block.</summary>
    static abstract int BlockSize { get; }

    /// <summary>Most activation rows per <see cref="Tile"/> call.</summary>
    static abstract int TileColumns { get; }

    /// <summary>The group at <paramref name="g"/> · the activation row at <paramref name="a"/>: results to y[0..7].</summary>
    static abstract void Group(byte* g, byte* a, int blocks, float* y);

    /// <summary>The group at <paramref name="g"/> · activation rows <c>a + c·aStride</c> (c &lt; <paramref name="nCols"/>): results to y[c·yStride + 0..7].</summary>
    static abstract void Tile(byte* g, byte* a, nint aStride, int nCols, int blocks, float* y, nint yStride);
}
