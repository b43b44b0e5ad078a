using Cria.Numerics;

namespace Cria.Gguf;

/// <summary>
/// An entry of the tensor directory. <see cref="Dimensions"/> are in ggml order: Dimensions[0]
/// is the row length (ne0), Dimensions[1] the number of rows, and so on.
/// </summary>
public sealed class GgufTensorInfo
{
    public GgufTensorInfo(string name, GgmlType type, long[] dimensions, ulong offset, long byteSize)
    {
        Name = name;
        Type = type;
        Dimensions = dimensions;
        Offset = offset;
        ByteSize = byteSize;
    }

    public string Name { get; }
    public GgmlType Type { get; }
    public long[] Dimensions { get; }
    /// <summary>Offset of the data from the start of the data section.</summary>
    public ulong Offset { get; }
    public long ByteSize { get; }

    public long ElementCount
    {
        get
        {
            long n = 1;
            foreach (long d in Dimensions) n *= d;
            return n;
        }
    }

    public override string ToString() =>
        $"{Name} {GgmlTypeInfo.Name(Type)} [{string.Join(", ", Dimensions)}]";
}
