namespace Cria.Numerics.Formats;

/// <summary>The argument checks every block format's span entry points share.</summary>
internal static class BlockArgs
{
    /// <summary>Blocks in <paramref name="values"/> floats; throws unless whole blocks fit in <paramref name="bytes"/>.</summary>
    public static int ForQuantize(int values, int bytes, int blockSize, int blockBytes)
    {
        if (values % blockSize != 0) throw new ArgumentException($"length {values} is not a multiple of {blockSize}", "src");
        int blocks = values / blockSize;
        if (bytes < (long)blocks * blockBytes) throw new ArgumentException("destination too small", "dst");
        return blocks;
    }

    /// <summary>Blocks needed for <paramref name="values"/> floats; throws unless <paramref name="bytes"/> holds them.</summary>
    public static int ForDequantize(int bytes, int values, int blockSize, int blockBytes)
    {
        if (values % blockSize != 0) throw new ArgumentException($"length {values} is not a multiple of {blockSize}", "dst");
        int blocks = values / blockSize;
        if (bytes < (long)blocks * blockBytes) throw new ArgumentException("source too small", "src");
        return blocks;
    }
}
