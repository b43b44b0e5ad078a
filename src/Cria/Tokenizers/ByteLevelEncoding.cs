namespace Cria.Tokenizers;

/// <summary>
/// GPT-2's <c>bytes_to_unicode</c>: every byte gets a printable character so that byte strings can be BPE tokens.
/// Bytes '!'..'~', '¡'..'¬' and '®'..'ÿ' map to themselves; the other 68 bytes (controls, space, DEL, NBSP, soft
/// hyphen, ...) map in order to U+0100, U+0101, ... (so ' ' is 'Ġ' U+0120 and '\n' is 'Ċ' U+010A).
/// </summary>
public static class ByteLevelEncoding
{
    private static readonly char[] ByteToCharTable = BuildByteToChar();
    private static readonly short[] CharToByteTable = BuildCharToByte(); // index: char (< 0x144), value: byte or -1

    private static char[] BuildByteToChar()
    {
        var map = new char[256];
        var assigned = new bool[256];
        for (int b = 0; b < 256; b++)
        {
            if (b is (>= 0x21 and <= 0x7E) or (>= 0xA1 and <= 0xAC) or (>= 0xAE and <= 0xFF))
            {
                map[b] = (char)b;
                assigned[b] = true;
            }
        }
        int n = 0;
        for (int b = 0; b < 256; b++)
            if (!assigned[b]) map[b] = (char)(256 + n++);
        return map;
    }

    private static short[] BuildCharToByte()
    {
        var table = new short[256 + 68];
        Array.Fill(table, (short)-1);
        for (int b = 0; b < 256; b++) table[ByteToCharTable[b]] = (short)b;
        return table;
    }

    /// <summary>The character that stands for <paramref name="b"/> in token texts.</summary>
    public static char ByteToChar(byte b) => ByteToCharTable[b];

    /// <summary>The byte a token-text character stands for, or -1 when the character is not one of the 256.</summary>
    public static int CharToByte(int c) => (uint)c < (uint)CharToByteTable.Length ? CharToByteTable[c] : -1;

    /// <summary>Maps each byte to its character (the form BPE merges and vocabularies use).</summary>
    public static string Encode(ReadOnlySpan<byte> bytes)
    {
        return string.Create(bytes.Length, bytes.ToArray(), static (dst, src) =>
        {
            for (int i = 0; i < src.Length; i++) dst[i] = ByteToCharTable[src[i]];
        });
    }

    internal static void Encode(ReadOnlySpan<byte> bytes, Span<char> destination)
    {
        for (int i = 0; i < bytes.Length; i++) destination[i] = ByteToCharTable[bytes[i]];
    }
}
