using System.Text;

namespace Cria.Chat.Jinja;

/// <summary>Python <c>str</c> behaviour on .NET strings: code-point length and indexing, Python whitespace, strip/split/title.</summary>
internal static class PyString
{
    /// <summary>Python's <c>str.isspace</c> (also what <c>strip()</c>, <c>split()</c> and regex <c>\s</c> use).</summary>
    public static bool IsSpace(int c) =>
        c is >= 0x09 and <= 0x0D or >= 0x1C and <= 0x20 or 0x85 or 0xA0 or 0x1680
            or >= 0x2000 and <= 0x200A or 0x2028 or 0x2029 or 0x202F or 0x205F or 0x3000;

    public static bool HasSurrogates(string s)
    {
        foreach (char c in s)
            if (char.IsSurrogate(c)) return true;
        return false;
    }

    /// <summary>The string's code points, each as a string (a lone surrogate stays one element).</summary>
    public static List<string> CodePoints(string s)
    {
        var list = new List<string>(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
            {
                list.Add(s.Substring(i, 2));
                i++;
            }
            else
            {
                list.Add(s[i].ToString());
            }
        }
        return list;
    }

    public static IEnumerable<object?> Chars(string s) => CodePoints(s);

    public static long Length(string s)
    {
        if (!HasSurrogates(s)) return s.Length;
        long n = 0;
        for (int i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) i++;
            n++;
        }
        return n;
    }

    public static int CodePointAt(string s, int i) =>
        char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]) ? char.ConvertToUtf32(s[i], s[i + 1]) : s[i];

    /// <summary>Ordering by code point, as Python compares strings.</summary>
    public static int CompareOrdinal(string a, string b)
    {
        int i = 0, j = 0;
        while (i < a.Length && j < b.Length)
        {
            int ca = CodePointAt(a, i), cb = CodePointAt(b, j);
            if (ca != cb) return ca.CompareTo(cb);
            i += ca > 0xFFFF ? 2 : 1;
            j += cb > 0xFFFF ? 2 : 1;
        }
        return (a.Length - i).CompareTo(b.Length - j);
    }

    public static string Strip(string s, string? chars, bool left = true, bool right = true)
    {
        if (chars is null)
        {
            int start = 0, end = s.Length;
            if (left) while (start < end && IsSpace(s[start])) start++;
            if (right) while (end > start && IsSpace(s[end - 1])) end--;
            return s.Substring(start, end - start);
        }
        var set = new HashSet<string>(CodePoints(chars));
        var cps = CodePoints(s);
        int a = 0, b = cps.Count;
        if (left) while (a < b && set.Contains(cps[a])) a++;
        if (right) while (b > a && set.Contains(cps[b - 1])) b--;
        return string.Concat(cps.Skip(a).Take(b - a));
    }

    public static PyList Split(string s, string? sep, long maxsplit)
    {
        var parts = new List<object?>();
        if (maxsplit < 0) maxsplit = long.MaxValue;
        if (sep is null)
        {
            int i = 0, n = s.Length;
            while (maxsplit-- > 0)
            {
                while (i < n && IsSpace(s[i])) i++;
                if (i == n) break;
                int j = i++;
                while (i < n && !IsSpace(s[i])) i++;
                parts.Add(s[j..i]);
            }
            if (i < n)
            {
                while (i < n && IsSpace(s[i])) i++;
                if (i != n) parts.Add(s[i..]);
            }
            return new PyList(parts);
        }
        if (sep.Length == 0) throw ChatTemplateException.Type("empty separator");
        int pos = 0;
        while (maxsplit-- > 0)
        {
            int k = s.IndexOf(sep, pos, StringComparison.Ordinal);
            if (k < 0) break;
            parts.Add(s[pos..k]);
            pos = k + sep.Length;
        }
        parts.Add(s[pos..]);
        return new PyList(parts);
    }

    public static PyList RSplit(string s, string? sep, long maxsplit)
    {
        var parts = new List<object?>();
        if (maxsplit < 0) maxsplit = long.MaxValue;
        if (sep is null)
        {
            int i = s.Length - 1;
            while (maxsplit-- > 0)
            {
                while (i >= 0 && IsSpace(s[i])) i--;
                if (i < 0) break;
                int j = i--;
                while (i >= 0 && !IsSpace(s[i])) i--;
                parts.Add(s[(i + 1)..(j + 1)]);
            }
            if (i >= 0)
            {
                while (i >= 0 && IsSpace(s[i])) i--;
                if (i >= 0) parts.Add(s[..(i + 1)]);
            }
            parts.Reverse();
            return new PyList(parts);
        }
        if (sep.Length == 0) throw ChatTemplateException.Type("empty separator");
        int end = s.Length;
        while (maxsplit-- > 0 && end > 0)
        {
            int k = s.LastIndexOf(sep, end - 1, StringComparison.Ordinal);
            if (k < 0 || k + sep.Length > end) break;
            parts.Add(s[(k + sep.Length)..end]);
            end = k;
        }
        parts.Add(s[..end]);
        parts.Reverse();
        return new PyList(parts);
    }

    private static bool IsLineBreak(char c) => c is '\n' or '\r' or '\v' or '\f' or '\x1c' or '\x1d' or '\x1e' or '\x85' or '\u2028' or '\u2029';

    /// <summary>Python's <c>str.splitlines(keepends)</c>.</summary>
    public static List<string> SplitLines(string s, bool keepEnds = false)
    {
        var lines = new List<string>();
        int i = 0, n = s.Length;
        while (i < n)
        {
            int j = i;
            while (j < n && !IsLineBreak(s[j])) j++;
            int eol = j;
            if (j < n)
            {
                j += s[j] == '\r' && j + 1 < n && s[j + 1] == '\n' ? 2 : 1;
                if (keepEnds) eol = j;
            }
            lines.Add(s[i..eol]);
            i = j;
        }
        return lines;
    }

    public static string Upper(string s) => s.ToUpperInvariant();
    public static string Lower(string s) => s.ToLowerInvariant();

    private static bool IsCased(char c) => char.IsUpper(c) || char.IsLower(c) || char.GetUnicodeCategory(c) == System.Globalization.UnicodeCategory.TitlecaseLetter;

    /// <summary>Python's <c>str.title()</c>: upper after an uncased character, lower after a cased one.</summary>
    public static string Title(string s)
    {
        var sb = new StringBuilder(s.Length);
        bool previousCased = false;
        foreach (char ch in s)
        {
            char c = previousCased ? char.ToLowerInvariant(ch) : char.ToUpperInvariant(ch);
            sb.Append(c);
            previousCased = IsCased(c);
        }
        return sb.ToString();
    }

    /// <summary>Python's <c>str.capitalize()</c>: first character upper, the rest lower.</summary>
    public static string Capitalize(string s) =>
        s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();

    /// <summary>Jinja's <c>title</c> filter: words start after runs of <c>-</c>, whitespace, or opening brackets.</summary>
    public static string JinjaTitle(string s)
    {
        var sb = new StringBuilder(s.Length);
        int i = 0;
        while (i < s.Length)
        {
            int j = i;
            bool sep = IsWordSeparator(s[i]);
            while (j < s.Length && IsWordSeparator(s[j]) == sep) j++;
            string item = s[i..j];
            sb.Append(char.ToUpperInvariant(item[0])).Append(item[1..].ToLowerInvariant());
            i = j;
        }
        return sb.ToString();
    }

    private static bool IsWordSeparator(char c) => c is '-' or '(' or '{' or '[' or '<' || IsSpace(c);

    public static string Replace(string s, string old, string replacement, long count)
    {
        if (count < 0) count = long.MaxValue;
        if (count == 0) return s;
        var sb = new StringBuilder();
        if (old.Length == 0)
        {
            var cps = CodePoints(s);
            long done = 0;
            for (int k = 0; k <= cps.Count; k++)
            {
                if (done < count) { sb.Append(replacement); done++; }
                if (k < cps.Count) sb.Append(cps[k]);
            }
            return sb.ToString();
        }
        int pos = 0;
        while (count-- > 0)
        {
            int k = s.IndexOf(old, pos, StringComparison.Ordinal);
            if (k < 0) break;
            sb.Append(s, pos, k - pos).Append(replacement);
            pos = k + old.Length;
        }
        sb.Append(s, pos, s.Length - pos);
        return sb.ToString();
    }

    /// <summary><c>s[i]</c> with Python's negative indices; null when out of range.</summary>
    public static string? Index(string s, long i)
    {
        if (!HasSurrogates(s))
        {
            if (i < 0) i += s.Length;
            return i >= 0 && i < s.Length ? s[(int)i].ToString() : null;
        }
        var cps = CodePoints(s);
        if (i < 0) i += cps.Count;
        return i >= 0 && i < cps.Count ? cps[(int)i] : null;
    }

    public static string Slice(string s, long? start, long? stop, long? step)
    {
        if (!HasSurrogates(s))
        {
            var sb = new StringBuilder();
            foreach (int k in PySlice.Indices(s.Length, start, stop, step)) sb.Append(s[k]);
            return sb.ToString();
        }
        var cps = CodePoints(s);
        var result = new StringBuilder();
        foreach (int k in PySlice.Indices(cps.Count, start, stop, step)) result.Append(cps[k]);
        return result.ToString();
    }

    public static string Repeat(string s, long n)
    {
        if (n <= 0 || s.Length == 0) return "";
        var sb = new StringBuilder();
        for (long k = 0; k < n; k++) sb.Append(s);
        return sb.ToString();
    }
}
