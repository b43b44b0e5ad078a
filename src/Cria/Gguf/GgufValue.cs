using System.Globalization;

namespace Cria.Gguf;

/// <summary>
/// One metadata value. Scalars are boxed .NET primitives (byte, sbyte, ushort, short, uint, int,
/// float, bool, string, ulong, long, double); arrays are <see cref="GgufArray"/>.
/// </summary>
public sealed class GgufValue
{
    public GgufValue(GgufValueType type, object value)
    {
        Type = type;
        Value = value;
    }

    public GgufValueType Type { get; }
    public object Value { get; }

    public static GgufValue Of(string s) => new(GgufValueType.String, s);
    public static GgufValue Of(uint v) => new(GgufValueType.UInt32, v);
    public static GgufValue Of(int v) => new(GgufValueType.Int32, v);
    public static GgufValue Of(float v) => new(GgufValueType.Float32, v);
    public static GgufValue Of(bool v) => new(GgufValueType.Bool, v);
    public static GgufValue Of(ulong v) => new(GgufValueType.UInt64, v);
    public static GgufValue Of(long v) => new(GgufValueType.Int64, v);
    public static GgufValue Of(double v) => new(GgufValueType.Float64, v);
    public static GgufValue Of(GgufArray a) => new(GgufValueType.Array, a);

    public bool IsInteger => Type is GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.UInt16
        or GgufValueType.Int16 or GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.UInt64
        or GgufValueType.Int64;

    /// <summary>The value as a 64-bit integer, for any integer type (and bool).</summary>
    public long AsInt64() => Value switch
    {
        byte v => v,
        sbyte v => v,
        ushort v => v,
        short v => v,
        uint v => v,
        int v => v,
        ulong v => v > long.MaxValue ? throw new GgufFormatException($"metadata value {v} does not fit in a signed 64-bit integer") : (long)v,
        long v => v,
        bool v => v ? 1 : 0,
        _ => throw new InvalidCastException($"a GGUF {Type} value is not an integer"),
    };

    /// <summary>The value as a double, for any numeric type.</summary>
    public double AsDouble() => Value switch
    {
        float v => v,
        double v => v,
        _ when IsInteger => AsInt64(),
        _ => throw new InvalidCastException($"a GGUF {Type} value is not a number"),
    };

    public string AsString() => Value as string ?? throw new InvalidCastException($"a GGUF {Type} value is not a string");

    public bool AsBool() => Value switch
    {
        bool b => b,
        _ when IsInteger => AsInt64() != 0,
        _ => throw new InvalidCastException($"a GGUF {Type} value is not a bool"),
    };

    public GgufArray AsArray() => Value as GgufArray ?? throw new InvalidCastException($"a GGUF {Type} value is not an array");

    public override string ToString() => Value switch
    {
        string s => s,
        float f => f.ToString("R", CultureInfo.InvariantCulture),
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        bool b => b ? "true" : "false",
        GgufArray a => a.ToString(),
        _ => Convert.ToString(Value, CultureInfo.InvariantCulture) ?? "",
    };
}

/// <summary>
/// A GGUF array: the element type and a typed .NET array holding the elements (string[] for
/// strings, float[] for Float32, GgufArray[] for nested arrays, and so on).
/// </summary>
public sealed class GgufArray
{
    public GgufArray(GgufValueType elementType, Array items)
    {
        ElementType = elementType;
        Items = items;
    }

    public GgufValueType ElementType { get; }
    public Array Items { get; }
    public int Count => Items.Length;

    public static GgufArray Of(string[] items) => new(GgufValueType.String, items);
    public static GgufArray Of(float[] items) => new(GgufValueType.Float32, items);
    public static GgufArray Of(int[] items) => new(GgufValueType.Int32, items);
    public static GgufArray Of(uint[] items) => new(GgufValueType.UInt32, items);

    public override string ToString()
    {
        const int shown = 8;
        var parts = new List<string>();
        for (int i = 0; i < Math.Min(shown, Items.Length); i++)
        {
            object? o = Items.GetValue(i);
            parts.Add(o switch
            {
                string s => "\"" + s + "\"",
                float f => f.ToString("R", CultureInfo.InvariantCulture),
                double d => d.ToString("R", CultureInfo.InvariantCulture),
                _ => Convert.ToString(o, CultureInfo.InvariantCulture) ?? "",
            });
        }
        string more = Items.Length > shown ? $", ... ({Items.Length} items)" : "";
        return $"[{string.Join(", ", parts)}{more}]";
    }
}
