using System.Runtime.InteropServices;

namespace Cria.Tokenizers;

/// <summary>The tokenizer-independent part of llama.cpp's llama_detokenize.</summary>
internal static class Detokenization
{
    /// <summary>Materializes ids without copying when they already are an array or a list.</summary>
    public static ReadOnlySpan<int> AsSpan(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        return ids switch
        {
            int[] a => a,
            List<int> l => CollectionsMarshal.AsSpan(l),
            _ => ids.ToArray(),
        };
    }

    /// <summary>
    /// llama_detokenize: the pieces of <paramref name="ids"/> concatenated. When the vocabulary adds a space
    /// prefix, one leading space of the first piece is removed, unless remove_special dropped a leading BOS
    /// (then the first text piece keeps its space). remove_special also drops a trailing EOS when the
    /// vocabulary adds EOS. Finally the clean_spaces passes run when the vocabulary asks for them.
    /// </summary>
    public static byte[] Detokenize(ITokenizer tokenizer, ReadOnlySpan<int> ids, bool removeSpecial, bool unparseSpecial)
    {
        Vocabulary v = tokenizer.Vocabulary;
        bool removeSpace = v.AddSpacePrefix;
        if (removeSpecial && v.AddBos && ids.Length > 0 && ids[0] == v.Bos)
        {
            removeSpace = false;
            ids = ids[1..];
        }
        if (removeSpecial && v.AddEos && ids.Length > 0 && ids[^1] == v.Eos)
            ids = ids[..^1];

        int total = 0;
        foreach (int id in ids)
        {
            byte[] p = tokenizer.TokenToPiece(id, unparseSpecial);
            total += p.Length;
        }
        var buffer = new byte[total];
        int n = 0;
        foreach (int id in ids)
        {
            ReadOnlySpan<byte> p = tokenizer.TokenToPiece(id, unparseSpecial);
            if (removeSpace && p.Length > 0 && p[0] == (byte)' ') p = p[1..];
            removeSpace = false;
            p.CopyTo(buffer.AsSpan(n));
            n += p.Length;
        }
        if (v.CleanSpaces) n = CleanSpaces(buffer.AsSpan(0, n));
        return n == buffer.Length ? buffer : buffer.AsSpan(0, n).ToArray();
    }

    /// <summary>
    /// llama.cpp's clean_up_tokenization_spaces passes, in place; returns the new length. Removes the space in
    /// " ?", " !", " .", " ,"; collapses " ' " to "'"; removes the space before "'s", "'m", "'re", "'ve".
    /// </summary>
    public static int CleanSpaces(Span<byte> text)
    {
        // pass 1: " ?", " !", " .", " ,"
        int total1 = text.Length;
        int total = total1 > 0 ? 1 : 0;
        for (int i = 1; i < total1; i++)
        {
            byte x = text[i];
            if (text[i - 1] == ' ' && x is (byte)'?' or (byte)'!' or (byte)'.' or (byte)',') total--;
            text[total++] = x;
        }
        // pass 2: a single apostrophe between spaces
        int total2 = total;
        total = total2 > 0 ? 1 : 0;
        for (int i = 1; i < total2; i++)
        {
            byte x = text[i];
            if (x == '\'' && i + 1 < total2 && text[i - 1] == ' ' && text[i + 1] == ' ')
            {
                total--;
                text[++i] = 0;
            }
            text[total++] = x;
        }
        // pass 3: contractions
        int total3 = total;
        total = total3 > 0 ? 1 : 0;
        for (int i = 1; i < total3; i++)
        {
            byte x = text[i];
            if (text[i - 1] == ' ' && x == '\'' && i + 1 < total3)
            {
                byte x1 = text[i + 1];
                if (x1 is (byte)'s' or (byte)'m') total--;
                else if (x1 is not ((byte)'t' or (byte)'d') && i + 2 < total3)
                {
                    byte x2 = text[i + 2];
                    if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) total--;
                }
            }
            text[total++] = x;
        }
        return total;
    }
}
