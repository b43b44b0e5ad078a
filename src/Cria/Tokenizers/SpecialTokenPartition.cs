namespace Cria.Tokenizers;

/// <summary>A piece of the input: a special token (Token ≥ 0) or a span of ordinary text (Token = -1).</summary>
internal readonly record struct TextFragment(int Token, int Offset, int Length);

/// <summary>
/// llama.cpp's tokenizer_st_partition, shared by every tokenizer: before the model's own algorithm
/// runs, the text of special tokens is cut out of the input. User-defined tokens are always cut
/// out; control (and unknown) tokens only when special-token parsing is asked for. Tokens marked
/// lstrip/rstrip also swallow the whitespace beside them.
/// </summary>
internal sealed class SpecialTokenPartition
{
    private readonly Vocabulary _vocab;
    private readonly string[] _texts; // per entry of Vocabulary.SpecialTokens

    public SpecialTokenPartition(Vocabulary vocabulary)
    {
        _vocab = vocabulary;
        IReadOnlyList<int> specials = vocabulary.SpecialTokens;
        _texts = new string[specials.Count];
        for (int i = 0; i < specials.Count; i++) _texts[i] = vocabulary.GetToken(specials[i]);
    }

    /// <summary>Splits <paramref name="text"/>; the two lists are reusable scratch, one of them is returned.</summary>
    public List<TextFragment> Split(string text, bool parseSpecial, List<TextFragment> scratchA, List<TextFragment> scratchB)
    {
        List<TextFragment> current = scratchA, next = scratchB;
        current.Clear();
        current.Add(new TextFragment(-1, 0, text.Length));

        IReadOnlyList<int> specials = _vocab.SpecialTokens;
        for (int s = 0; s < specials.Count; s++)
        {
            int id = specials[s];
            if (!parseSpecial && _vocab.GetTokenType(id) is TokenType.Control or TokenType.Unknown) continue;
            string st = _texts[s];
            if (!text.Contains(st, StringComparison.Ordinal)) continue;
            bool lstrip = _vocab.HasLStrip(id), rstrip = _vocab.HasRStrip(id);

            next.Clear();
            foreach (TextFragment f in current)
            {
                if (f.Token >= 0) { next.Add(f); continue; }
                int off = f.Offset, len = f.Length;
                while (true)
                {
                    int m = text.AsSpan(off, len).IndexOf(st, StringComparison.Ordinal);
                    if (m < 0)
                    {
                        next.Add(new TextFragment(-1, off, len));
                        break;
                    }
                    int leftLen = m;
                    if (lstrip)
                        while (leftLen > 0 && IsCSpace(text[off + leftLen - 1])) leftLen--;
                    if (leftLen > 0) next.Add(new TextFragment(-1, off, leftLen));
                    next.Add(new TextFragment(id, 0, 0));

                    int rOff = off + m + st.Length, rLen = off + len - rOff;
                    if (rstrip)
                        while (rLen > 0 && IsCSpace(text[rOff])) { rOff++; rLen--; }
                    off = rOff;
                    len = rLen;
                    if (len == 0) break;
                }
            }
            (current, next) = (next, current);
        }
        return current;
    }

    /// <summary>C's isspace in the "C" locale.</summary>
    internal static bool IsCSpace(char c) => c is ' ' or '\t' or '\n' or '\v' or '\f' or '\r';
}
