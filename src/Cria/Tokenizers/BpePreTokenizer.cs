using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;

namespace Cria.Tokenizers;

/// <summary>The word-splitting patterns of byte-level BPE vocabularies that are implemented.</summary>
public enum BpePreTokenizerKind
{
    /// <summary>
    /// Llama 3's pattern (llama.cpp's LLAMA3 / DBRX / SMAUG pre-tokenizers):
    /// <c>(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+</c>
    /// </summary>
    Llama3,

    /// <summary>GPT-2's pattern: <c>'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+</c></summary>
    Gpt2,
}

/// <summary>
/// The regex pre-tokenizers of byte-level BPE vocabularies, written out by hand over Unicode categories the way
/// llama.cpp's <c>unicode_regex_split_custom_llama3</c> / <c>unicode_regex_split_custom_gpt2</c> do it (no
/// System.Text.RegularExpressions). Works on code points: \p{L} is a letter category (Lu Ll Lt Lm Lo), \p{N} a
/// number category (Nd Nl No), \s the Unicode White_Space property.
/// </summary>
/// <remarks>
/// Letter/number categories come from .NET's Unicode tables (<see cref="CharUnicodeInfo"/>, Unicode 16.0 in .NET 10);
/// llama.cpp's generated tables (src/unicode-data.cpp) are Unicode 15.1. The letters and digits that Unicode 16.0
/// added are therefore treated as unassigned here, as llama.cpp sees them (a later .NET with a newer Unicode would
/// need that list extended).
/// </remarks>
public static class BpePreTokenizer
{
    internal const byte FlagLetter = 1, FlagNumber = 2, FlagWhitespace = 4;

    private static readonly byte[] BmpFlags = BuildBmpFlags();

    private static byte[] BuildBmpFlags()
    {
        var table = new byte[0x10000];
        for (int cp = 0; cp < table.Length; cp++) table[cp] = ComputeFlags(cp);
        return table;
    }

    // Letters and numbers new in Unicode 16.0 (unassigned in llama.cpp's Unicode 15.1 tables), merged over
    // neighbouring code points that are neither letters nor numbers in either version. Derived by comparing .NET 10's
    // categories with ICU 72 (Unicode 15.0) and keeping what Unicode 15.1 did not add (15.1's CJK Extension I,
    // U+2EBF0..U+2EE5D, is in llama.cpp's tables).
    private static ReadOnlySpan<int> Unicode16Additions =>
    [
        0x1C89, 0x1C8A, 0xA7CB, 0xA7CD, 0xA7DA, 0xA7DC, 0x105C0, 0x105F3, 0x10D40, 0x10D85, 0x10EC2, 0x10EC4,
        0x11380, 0x113D3, 0x116D0, 0x116E3, 0x11BC0, 0x11BF9, 0x13460, 0x143FA, 0x16100, 0x16139, 0x16D40, 0x16D79,
        0x18CFF, 0x18CFF, 0x1CCF0, 0x1CCF9, 0x1E5D0, 0x1E5FA,
    ];

    private static bool IsUnicode16Addition(int cp)
    {
        ReadOnlySpan<int> r = Unicode16Additions;
        for (int i = 0; i < r.Length; i += 2)
            if (cp >= r[i] && cp <= r[i + 1]) return true;
        return false;
    }

    private static byte ComputeFlags(int cp)
    {
        byte f = 0;
        if (cp is >= 0xD800 and <= 0xDFFF) return 0; // surrogates: category Cs (never seen after input cleanup)
        if (IsUnicode16Addition(cp)) return 0;
        switch (CharUnicodeInfo.GetUnicodeCategory(cp))
        {
            case UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter:
                f |= FlagLetter;
                break;
            case UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber:
                f |= FlagNumber;
                break;
        }
        if (IsWhiteSpaceProperty(cp)) f |= FlagWhitespace;
        return f;
    }

    // Unicode's White_Space property (llama.cpp's unicode_set_whitespace)
    private static bool IsWhiteSpaceProperty(int cp) => cp is (>= 0x09 and <= 0x0D) or 0x20 or 0x85 or 0xA0 or 0x1680
        or (>= 0x2000 and <= 0x200A) or 0x2028 or 0x2029 or 0x202F or 0x205F or 0x3000;

    /// <summary>Letter / number / whitespace flags of a code point.</summary>
    internal static byte Flags(int cp) => (uint)cp < 0x10000u ? BmpFlags[cp] : (uint)cp <= 0x10FFFFu ? ComputeFlags(cp) : (byte)0;

    /// <summary>
    /// Splits <paramref name="text"/> into pre-tokenizer words (for inspection and tests; the tokenizer uses the
    /// allocation-free internal form). Unpaired surrogates count as U+FFFD.
    /// </summary>
    public static List<string> Split(string text, BpePreTokenizerKind kind)
    {
        ArgumentNullException.ThrowIfNull(text);
        var cps = new List<int>(text.Length);
        var charStart = new List<int>(text.Length + 1);
        for (int i = 0; i < text.Length;)
        {
            charStart.Add(i);
            Rune.DecodeFromUtf16(text.AsSpan(i), out Rune r, out int used);
            cps.Add(r.Value);
            i += used;
        }
        charStart.Add(text.Length);
        int[] cpArray = [.. cps];
        var flags = new byte[cpArray.Length];
        for (int i = 0; i < cpArray.Length; i++) flags[i] = Flags(cpArray[i]);
        var ends = new List<int>();
        SplitWords(kind, cpArray, flags, ends);
        var words = new List<string>(ends.Count);
        int start = 0;
        foreach (int end in ends)
        {
            words.Add(text[charStart[start]..charStart[end]]);
            start = end;
        }
        return words;
    }

    /// <summary>Appends the (exclusive) end index of every word of <paramref name="cps"/> to <paramref name="ends"/>.</summary>
    internal static void SplitWords(BpePreTokenizerKind kind, ReadOnlySpan<int> cps, ReadOnlySpan<byte> flags, List<int> ends)
    {
        if (kind == BpePreTokenizerKind.Llama3) SplitLlama3(cps, flags, ends);
        else SplitGpt2(cps, flags, ends);
    }

    private static int AsciiLower(int c) => c is >= 'A' and <= 'Z' ? c + 32 : c;

    // unicode_regex_split_custom_llama3
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SplitLlama3(ReadOnlySpan<int> cps, ReadOnlySpan<byte> fl, List<int> ends)
    {
        const byte WLN = FlagWhitespace | FlagLetter | FlagNumber;
        int n = cps.Length;
        int pos = 0, prevEnd = 0;
        while (pos < n)
        {
            int cpt = cps[pos];
            byte f = fl[pos];

            // (?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])
            if (cpt == '\'' && pos + 1 < n)
            {
                int next = AsciiLower(cps[pos + 1]);
                if (next is 's' or 't' or 'm' or 'd')
                {
                    pos += 2;
                    Add(ends, ref prevEnd, pos);
                    continue;
                }
                if (pos + 2 < n)
                {
                    int nextNext = AsciiLower(cps[pos + 2]);
                    if ((next == 'r' && nextNext == 'e') || (next == 'v' && nextNext == 'e') || (next == 'l' && nextNext == 'l'))
                    {
                        pos += 3;
                        Add(ends, ref prevEnd, pos);
                        continue;
                    }
                }
            }

            // [^\r\n\p{L}\p{N}]?\p{L}+
            if (!(cpt == '\r' || cpt == '\n' || (f & FlagNumber) != 0))
            {
                if ((f & FlagLetter) != 0 || (pos + 1 < n && (fl[pos + 1] & FlagLetter) != 0))
                {
                    pos++;
                    while (pos < n && (fl[pos] & FlagLetter) != 0) pos++;
                    Add(ends, ref prevEnd, pos);
                    continue;
                }
            }

            // \p{N}{1,3}
            if ((f & FlagNumber) != 0)
            {
                int ini = pos;
                while (pos < n && (fl[pos] & FlagNumber) != 0)
                {
                    if (++pos - ini >= 3)
                    {
                        Add(ends, ref prevEnd, pos);
                        ini = pos;
                    }
                }
                Add(ends, ref prevEnd, pos);
                continue;
            }

            // <space>?[^\s\p{L}\p{N}]+[\r\n]*
            int p2 = cpt == ' ' ? pos + 1 : pos;
            if (p2 < n && (fl[p2] & WLN) == 0)
            {
                pos = p2;
                while (pos < n && (fl[pos] & WLN) == 0) pos++;
                while (pos < n && cps[pos] is '\r' or '\n') pos++;
                Add(ends, ref prevEnd, pos);
                continue;
            }

            int numWhitespaces = 0;
            int lastEndROrN = 0;
            while (pos + numWhitespaces < n && (fl[pos + numWhitespaces] & FlagWhitespace) != 0)
            {
                int c2 = cps[pos + numWhitespaces];
                if (c2 is '\r' or '\n') lastEndROrN = pos + numWhitespaces + 1;
                numWhitespaces++;
            }

            // \s*[\r\n]+
            if (lastEndROrN > 0)
            {
                pos = lastEndROrN;
                Add(ends, ref prevEnd, pos);
                continue;
            }

            // \s+(?!\S)
            if (numWhitespaces > 1 && pos + numWhitespaces < n)
            {
                pos += numWhitespaces - 1;
                Add(ends, ref prevEnd, pos);
                continue;
            }

            // \s+
            if (numWhitespaces > 0)
            {
                pos += numWhitespaces;
                Add(ends, ref prevEnd, pos);
                continue;
            }

            // no match
            Add(ends, ref prevEnd, ++pos);
        }
    }

    // unicode_regex_split_custom_gpt2
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SplitGpt2(ReadOnlySpan<int> cps, ReadOnlySpan<byte> fl, List<int> ends)
    {
        const byte WLN = FlagWhitespace | FlagLetter | FlagNumber;
        int n = cps.Length;
        int pos = 0, prevEnd = 0;
        while (pos < n)
        {
            int cpt = cps[pos];

            // 's|'t|'re|'ve|'m|'ll|'d (case-sensitive)
            if (cpt == '\'' && pos + 1 < n)
            {
                int next = cps[pos + 1];
                if (next is 's' or 't' or 'm' or 'd')
                {
                    pos += 2;
                    Add(ends, ref prevEnd, pos);
                    continue;
                }
                if (pos + 2 < n)
                {
                    int nextNext = cps[pos + 2];
                    if ((next == 'r' && nextNext == 'e') || (next == 'v' && nextNext == 'e') || (next == 'l' && nextNext == 'l'))
                    {
                        pos += 3;
                        Add(ends, ref prevEnd, pos);
                        continue;
                    }
                }
            }

            int p2 = cpt == ' ' ? pos + 1 : pos;
            byte f2 = p2 < n ? fl[p2] : (byte)0;
            // <space>?\p{L}+
            if ((f2 & FlagLetter) != 0)
            {
                pos = p2;
                while (pos < n && (fl[pos] & FlagLetter) != 0) pos++;
                Add(ends, ref prevEnd, pos);
                continue;
            }
            // <space>?\p{N}+
            if ((f2 & FlagNumber) != 0)
            {
                pos = p2;
                while (pos < n && (fl[pos] & FlagNumber) != 0) pos++;
                Add(ends, ref prevEnd, pos);
                continue;
            }
            // <space>?[^\s\p{L}\p{N}]+
            if (p2 < n && (f2 & WLN) == 0)
            {
                pos = p2;
                while (pos < n && (fl[pos] & WLN) == 0) pos++;
                Add(ends, ref prevEnd, pos);
                continue;
            }

            int numWhitespaces = 0;
            while (pos + numWhitespaces < n && (fl[pos + numWhitespaces] & FlagWhitespace) != 0) numWhitespaces++;

            // \s+(?!\S)
            if (numWhitespaces > 1 && pos + numWhitespaces < n)
            {
                pos += numWhitespaces - 1;
                Add(ends, ref prevEnd, pos);
                continue;
            }
            // \s+
            if (numWhitespaces > 0)
            {
                pos += numWhitespaces;
                Add(ends, ref prevEnd, pos);
                continue;
            }

            Add(ends, ref prevEnd, ++pos);
        }
    }

    private static void Add(List<int> ends, ref int prevEnd, int end)
    {
        if (end > prevEnd) ends.Add(end);
        prevEnd = end;
    }
}
