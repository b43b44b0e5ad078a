namespace Cria.Numerics;

/// <summary>
/// Tensor element types, numbered exactly like ggml's <c>enum ggml_type</c> (the id is what GGUF
/// files store). Gaps are ids that ggml retired (4, 5: Q4_2/Q4_3; 31-33: the Q4_0_4_4/4_8/8_8
/// interleaved types; 36-38: the IQ4_NL_4_4/4_8/8_8 types); files never contain them.
/// </summary>
public enum GgmlType : uint
{
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ2_XXS = 16,
    IQ2_XS = 17,
    IQ3_XXS = 18,
    IQ1_S = 19,
    IQ4_NL = 20,
    IQ3_S = 21,
    IQ2_S = 22,
    IQ4_XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    IQ1_M = 29,
    BF16 = 30,
    TQ1_0 = 34,
    TQ2_0 = 35,
}

/// <summary>
/// Static facts about each <see cref="GgmlType"/>: ggml's name, how many elements one block holds
/// and how many bytes it takes (ggml's <c>blck_size</c> and <c>type_size</c>).
/// </summary>
public static class GgmlTypeInfo
{
    private readonly record struct Traits(string Name, int BlockSize, int BlockBytes);

    // Indexed by the numeric id; a null name marks an unused id.
    private static readonly Traits[] Table = BuildTable();

    private static Traits[] BuildTable()
    {
        var t = new Traits[36];
        void Set(GgmlType type, string name, int blockSize, int blockBytes) => t[(int)type] = new Traits(name, blockSize, blockBytes);

        // Plain element types: one element per "block".
        Set(GgmlType.F32, "f32", 1, 4);
        Set(GgmlType.F16, "f16", 1, 2);
        Set(GgmlType.BF16, "bf16", 1, 2);
        Set(GgmlType.F64, "f64", 1, 8);
        Set(GgmlType.I8, "i8", 1, 1);
        Set(GgmlType.I16, "i16", 1, 2);
        Set(GgmlType.I32, "i32", 1, 4);
        Set(GgmlType.I64, "i64", 1, 8);

        // 32-element legacy blocks: f16 scale (+ f16 min / f16 sum) + packed quants.
        Set(GgmlType.Q4_0, "q4_0", 32, 2 + 16);
        Set(GgmlType.Q4_1, "q4_1", 32, 2 + 2 + 16);
        Set(GgmlType.Q5_0, "q5_0", 32, 2 + 4 + 16);
        Set(GgmlType.Q5_1, "q5_1", 32, 2 + 2 + 4 + 16);
        Set(GgmlType.Q8_0, "q8_0", 32, 2 + 32);
        Set(GgmlType.Q8_1, "q8_1", 32, 2 + 2 + 32);
        Set(GgmlType.IQ4_NL, "iq4_nl", 32, 2 + 16);

        // 256-element super-blocks (QK_K).
        Set(GgmlType.Q2_K, "q2_K", 256, 16 + 64 + 2 + 2);
        Set(GgmlType.Q3_K, "q3_K", 256, 32 + 64 + 12 + 2);
        Set(GgmlType.Q4_K, "q4_K", 256, 2 + 2 + 12 + 128);
        Set(GgmlType.Q5_K, "q5_K", 256, 2 + 2 + 12 + 32 + 128);
        Set(GgmlType.Q6_K, "q6_K", 256, 128 + 64 + 16 + 2);
        Set(GgmlType.Q8_K, "q8_K", 256, 4 + 256 + 16 * 2);
        Set(GgmlType.IQ2_XXS, "iq2_xxs", 256, 2 + 64);
        Set(GgmlType.IQ2_XS, "iq2_xs", 256, 2 + 64 + 8);
        Set(GgmlType.IQ2_S, "iq2_s", 256, 2 + 64 + 8 + 8);
        Set(GgmlType.IQ3_XXS, "iq3_xxs", 256, 2 + 96);
        Set(GgmlType.IQ3_S, "iq3_s", 256, 2 + 64 + 8 + 32 + 4);
        Set(GgmlType.IQ1_S, "iq1_s", 256, 2 + 32 + 16);
        Set(GgmlType.IQ1_M, "iq1_m", 256, 32 + 16 + 8);
        Set(GgmlType.IQ4_XS, "iq4_xs", 256, 2 + 2 + 4 + 128);
        Set(GgmlType.TQ1_0, "tq1_0", 256, 48 + 4 + 2);
        Set(GgmlType.TQ2_0, "tq2_0", 256, 64 + 2);
        return t;
    }

    /// <summary>True when <paramref name="type"/> is one of ggml's current type ids.</summary>
    public static bool IsKnown(GgmlType type) => (uint)type < (uint)Table.Length && Table[(int)type].Name is not null;

    /// <summary>Elements per block (1 for plain types, 32 or 256 for quantized ones).</summary>
    public static int BlockSize(GgmlType type) => Get(type).BlockSize;

    /// <summary>Bytes per block.</summary>
    public static int BlockBytes(GgmlType type) => Get(type).BlockBytes;

    /// <summary>
    /// ggml's name for the type ("f32", "q4_0", "q4_K", "bf16", ...; note the upper-case K of the
    /// k-quants, as ggml spells them). Unknown ids give "unknown(N)" rather than throwing, so the
    /// result is always safe to put in an error message.
    /// </summary>
    public static string Name(GgmlType type) => IsKnown(type) ? Table[(int)type].Name : $"unknown({(uint)type})";

    /// <summary>Parses a ggml type name, ignoring case ("Q4_K", "q4_k" and "q4_K" all work).</summary>
    public static bool TryParse(string name, out GgmlType type)
    {
        if (name is not null)
        {
            for (int i = 0; i < Table.Length; i++)
            {
                if (Table[i].Name is not null && string.Equals(Table[i].Name, name, StringComparison.OrdinalIgnoreCase))
                {
                    type = (GgmlType)i;
                    return true;
                }
            }
        }
        type = default;
        return false;
    }

    /// <summary>
    /// Bytes taken by <paramref name="n"/> consecutive elements (one row). Throws
    /// <see cref="ArgumentException"/> when n is negative or not a whole number of blocks.
    /// </summary>
    public static long RowBytes(GgmlType type, long n)
    {
        var t = Get(type);
        if (n < 0) throw new ArgumentOutOfRangeException(nameof(n), n, "element count must not be negative");
        if (n % t.BlockSize != 0)
            throw new ArgumentException($"{n} elements is not a whole number of {t.Name} blocks of {t.BlockSize}", nameof(n));
        return n / t.BlockSize * t.BlockBytes;
    }

    /// <summary>
    /// True for the types the matrix kernels can multiply (and <c>MatMul.GetRow</c> can decode) today:
    /// F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS.
    /// </summary>
    public static bool CanCompute(GgmlType type) =>
        type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.Q8_0 or GgmlType.Q4_0
            or GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1
            or GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K
            or GgmlType.IQ4_NL or GgmlType.IQ4_XS;

    private static Traits Get(GgmlType type)
    {
        if (!IsKnown(type)) throw new ArgumentException($"unknown ggml type id {(uint)type}", nameof(type));
        return Table[(int)type];
    }
}
