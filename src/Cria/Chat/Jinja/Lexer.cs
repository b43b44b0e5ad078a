using System.Globalization;
using System.Text;

namespace Cria.Chat.Jinja;

/// <summary>
/// Splits a template into data and tag tokens the way Jinja2's lexer does with Hugging Face's settings
/// (<c>trim_blocks=True</c>, <c>lstrip_blocks=True</c>): <c>{%-</c>/<c>-%}</c> strip all whitespace on
/// that side, <c>{%+</c>/<c>+%}</c> keep it, a block or comment tag alone on a line loses its indentation,
/// and the first newline after a block or comment tag is dropped. Line endings become <c>\n</c> and
/// one trailing newline of the source is removed (Jinja's <c>keep_trailing_newline=False</c>).
/// </summary>
internal sealed class Lexer
{
    private readonly string _src;
    private readonly List<Token> _tokens = new();
    private int _pos;
    private int _line = 1;
    private bool _lineStarting = true;

    private Lexer(string source) => _src = source;

    public static List<Token> Tokenize(string source)
    {
        string normalized = source.Replace("\r\n", "\n").Replace('\r', '\n');
        if (normalized.EndsWith('\n')) normalized = normalized[..^1];
        var lexer = new Lexer(normalized);
        lexer.Run();
        lexer._tokens.Add(new Token(TokenKind.Eof, "", lexer._line));
        return lexer._tokens;
    }

    private ChatTemplateException Error(string message) => new(ChatTemplateErrorKind.Syntax, $"template syntax error (line {_line}): {message}", _line);

    private void Run()
    {
        while (_pos < _src.Length)
        {
            int tag = FindTagStart(_pos);
            if (tag < 0)
            {
                AddData(_src[_pos..], _src.Length);
                break;
            }
            char kind = _src[tag + 1];
            int afterStart = tag + 2;
            char sign = afterStart < _src.Length && _src[afterStart] is '-' or '+' ? _src[afterStart] : '\0';
            int afterSign = sign == '\0' ? afterStart : afterStart + 1;
            int rawBodyStart = kind == '%' ? MatchRawBegin(afterSign) : -1;

            string text = _src[_pos..tag];
            if (sign == '-')
            {
                text = PyString.Strip(text, null, left: false);
            }
            else if (sign != '+' && kind != '{')
            {
                int lpos = text.LastIndexOf('\n') + 1;
                if ((lpos > 0 || _lineStarting) && lpos < text.Length && AllSpace(text, lpos)) text = text[..lpos];
            }
            AddData(text, tag);

            if (kind == '#') LexComment(afterSign);
            else if (rawBodyStart >= 0) LexRaw(rawBodyStart);
            else LexTag(kind, afterSign);
        }
    }

    private static bool AllSpace(string s, int from)
    {
        for (int i = from; i < s.Length; i++)
            if (!PyString.IsSpace(s[i])) return false;
        return true;
    }

    private int FindTagStart(int from)
    {
        for (int i = from; i + 1 < _src.Length; i++)
            if (_src[i] == '{' && _src[i + 1] is '{' or '%' or '#') return i;
        return -1;
    }

    /// <summary>Emits data (if any) and moves past the source up to <paramref name="end"/>.</summary>
    private void AddData(string text, int end)
    {
        if (text.Length > 0) _tokens.Add(new Token(TokenKind.Data, text, _line));
        Advance(end);
    }

    private void Advance(int to)
    {
        for (int i = _pos; i < to; i++)
            if (_src[i] == '\n') _line++;
        _pos = to;
    }

    private int SkipSpace(int i)
    {
        while (i < _src.Length && PyString.IsSpace(_src[i])) i++;
        return i;
    }

    /// <summary>After <c>{%</c> and its sign: the index just past a <c>raw %}</c> opening, or -1.</summary>
    private int MatchRawBegin(int i)
    {
        i = SkipSpace(i);
        if (string.CompareOrdinal(_src, i, "raw", 0, 3) != 0) return -1;
        i = SkipSpace(i + 3);
        if (string.CompareOrdinal(_src, i, "-%}", 0, 3) == 0) return SkipSpace(i + 3);
        if (string.CompareOrdinal(_src, i, "%}", 0, 2) == 0) return i + 2;
        return -1;
    }

    /// <summary>Finishes a tag match: moves to <paramref name="end"/> and remembers whether it ended a line.</summary>
    private void EndMatch(int end)
    {
        _lineStarting = end > 0 && _src[end - 1] == '\n';
        Advance(end);
    }

    private void LexComment(int start)
    {
        int idx = _src.IndexOf("#}", start, StringComparison.Ordinal);
        if (idx < 0) throw Error("Missing end of comment tag");
        int end = idx + 2;
        char before = idx - 1 >= start ? _src[idx - 1] : '\0';
        if (before == '-') end = SkipSpace(end);
        else if (before != '+' && end < _src.Length && _src[end] == '\n') end++;
        EndMatch(end);
    }

    private void LexRaw(int bodyStart)
    {
        EndMatch(bodyStart);
        for (int i = bodyStart; i + 1 < _src.Length; i++)
        {
            if (_src[i] != '{' || _src[i + 1] != '%') continue;
            int j = i + 2;
            char sign = j < _src.Length && _src[j] is '-' or '+' ? _src[j] : '\0';
            if (sign != '\0') j++;
            j = SkipSpace(j);
            if (string.CompareOrdinal(_src, j, "endraw", 0, 6) != 0) continue;
            j = SkipSpace(j + 6);
            int end;
            if (string.CompareOrdinal(_src, j, "+%}", 0, 3) == 0) end = j + 3;
            else if (string.CompareOrdinal(_src, j, "-%}", 0, 3) == 0) end = SkipSpace(j + 3);
            else if (string.CompareOrdinal(_src, j, "%}", 0, 2) == 0) end = j + 2 < _src.Length && _src[j + 2] == '\n' ? j + 3 : j + 2;
            else continue;

            string text = _src[bodyStart..i];
            if (sign == '-')
            {
                text = PyString.Strip(text, null, left: false);
            }
            else if (sign != '+')
            {
                int lpos = text.LastIndexOf('\n') + 1;
                if ((lpos > 0 || _lineStarting) && lpos < text.Length && AllSpace(text, lpos)) text = text[..lpos];
            }
            AddData(text, i);
            EndMatch(end);
            return;
        }
        throw Error("Missing end of raw directive");
    }

    private static readonly string[] Operators =
    [
        "//", "**", "==", "!=", ">=", "<=",
        "+", "-", "/", "*", "%", "~", "[", "]", "(", ")", "{", "}", ">", "<", "=", ".", ":", "|", ",", ";",
    ];

    private void LexTag(char kind, int start)
    {
        _tokens.Add(new Token(kind == '%' ? TokenKind.BlockBegin : TokenKind.VariableBegin, "", _line));
        Advance(start);
        var balance = new Stack<char>();
        while (true)
        {
            if (_pos >= _src.Length) throw Error(kind == '%' ? "unexpected end of template, expected end of statement block" : "unexpected end of template, expected end of print statement");
            if (balance.Count == 0 && TryTagEnd(kind)) return;
            char c = _src[_pos];
            if (PyString.IsSpace(c))
            {
                Advance(SkipSpace(_pos));
                continue;
            }
            int end;
            if ((end = ScanFloat(_pos)) > 0)
            {
                string text = _src[_pos..end].Replace("_", "");
                Add(TokenKind.Float, text, double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture), end);
            }
            else if ((end = ScanInteger(_pos, out long value)) > 0)
            {
                Add(TokenKind.Integer, _src[_pos..end], value, end);
            }
            else if (char.IsLetter(c) || c == '_')
            {
                end = _pos + 1;
                while (end < _src.Length && (char.IsLetterOrDigit(_src[end]) || _src[end] == '_')) end++;
                Add(TokenKind.Name, _src[_pos..end], null, end);
            }
            else if (c is '\'' or '"')
            {
                end = _pos + 1;
                while (end < _src.Length && _src[end] != c) end += _src[end] == '\\' ? 2 : 1;
                if (end >= _src.Length) throw Error($"unexpected char {PyRepr.Repr(c.ToString())} at {_pos}");
                Add(TokenKind.String, Unescape(_src[(_pos + 1)..end]), null, end + 1);
            }
            else
            {
                string? op = null;
                foreach (var o in Operators)
                {
                    if (string.CompareOrdinal(_src, _pos, o, 0, o.Length) == 0) { op = o; break; }
                }
                if (op is null) throw Error($"unexpected char {PyRepr.Repr(c.ToString())} at {_pos}");
                switch (op)
                {
                    case "(": balance.Push(')'); break;
                    case "[": balance.Push(']'); break;
                    case "{": balance.Push('}'); break;
                    case ")" or "]" or "}":
                        if (balance.Count == 0) throw Error($"unexpected '{op}'");
                        char expected = balance.Pop();
                        if (expected != op[0]) throw Error($"unexpected '{op}', expected '{expected}'");
                        break;
                }
                Add(TokenKind.Operator, op, null, _pos + op.Length);
            }
        }
    }

    private void Add(TokenKind kind, string text, object? number, int end)
    {
        _tokens.Add(new Token(kind, text, _line, number));
        Advance(end);
    }

    private bool TryTagEnd(char kind)
    {
        string close = kind == '%' ? "%}" : "}}";
        int end;
        if (kind == '%' && string.CompareOrdinal(_src, _pos, "+%}", 0, 3) == 0) end = _pos + 3;
        else if (_src[_pos] == '-' && string.CompareOrdinal(_src, _pos + 1, close, 0, 2) == 0) end = SkipSpace(_pos + 3);
        else if (string.CompareOrdinal(_src, _pos, close, 0, 2) == 0)
            end = kind == '%' && _pos + 2 < _src.Length && _src[_pos + 2] == '\n' ? _pos + 3 : _pos + 2;
        else return false;
        _tokens.Add(new Token(kind == '%' ? TokenKind.BlockEnd : TokenKind.VariableEnd, "", _line));
        EndMatch(end);
        return true;
    }

    private static bool IsDigit(char c) => c is >= '0' and <= '9';

    /// <summary>Matches <c>(\d+_)*\d+</c> at <paramref name="i"/>; the end index or -1.</summary>
    private int ScanDigits(int i)
    {
        if (i >= _src.Length || !IsDigit(_src[i])) return -1;
        while (true)
        {
            while (i < _src.Length && IsDigit(_src[i])) i++;
            if (i + 1 < _src.Length && _src[i] == '_' && IsDigit(_src[i + 1])) { i++; continue; }
            return i;
        }
    }

    private int ScanFloat(int i)
    {
        if (i > 0 && _src[i - 1] == '.') return -1;
        int a = ScanDigits(i);
        if (a < 0) return -1;
        int b = a;
        if (b < _src.Length && _src[b] == '.')
        {
            int f = ScanDigits(b + 1);
            if (f > 0) b = f;
        }
        if (b < _src.Length && _src[b] is 'e' or 'E')
        {
            int c = b + 1;
            if (c < _src.Length && _src[c] is '+' or '-') c++;
            int d = ScanDigits(c);
            if (d > 0) return d;
        }
        if (a < _src.Length && _src[a] == '.')
        {
            int f = ScanDigits(a + 1);
            if (f > 0) return f;
        }
        if (a < _src.Length && _src[a] is 'e' or 'E')
        {
            int c = a + 1;
            if (c < _src.Length && _src[c] is '+' or '-') c++;
            int d = ScanDigits(c);
            if (d > 0) return d;
        }
        return -1;
    }

    private int ScanInteger(int i, out long value)
    {
        value = 0;
        if (i >= _src.Length || !IsDigit(_src[i])) return -1;
        if (_src[i] == '0' && i + 1 < _src.Length && char.ToLowerInvariant(_src[i + 1]) is 'b' or 'o' or 'x')
        {
            char radixChar = char.ToLowerInvariant(_src[i + 1]);
            int radix = radixChar == 'b' ? 2 : radixChar == 'o' ? 8 : 16;
            int j = i + 2, digits = 0;
            var text = new StringBuilder();
            while (j < _src.Length)
            {
                int k = j;
                if (_src[k] == '_') k++;
                if (k >= _src.Length) break;
                int dv = HexValue(_src[k]);
                if (dv < 0 || dv >= radix) break;
                text.Append(_src[k]);
                digits++;
                j = k + 1;
            }
            if (digits > 0)
            {
                try { value = Convert.ToInt64(text.ToString(), radix); }
                catch (OverflowException) { throw Error("integer literal too large"); }
                return j;
            }
        }
        int end;
        if (_src[i] == '0')
        {
            end = i + 1;
            while (end < _src.Length)
            {
                if (_src[end] == '0') { end++; continue; }
                if (_src[end] == '_' && end + 1 < _src.Length && _src[end + 1] == '0') { end += 2; continue; }
                break;
            }
            value = 0;
            return end;
        }
        end = i + 1;
        while (end < _src.Length)
        {
            if (IsDigit(_src[end])) { end++; continue; }
            if (_src[end] == '_' && end + 1 < _src.Length && IsDigit(_src[end + 1])) { end += 2; continue; }
            break;
        }
        if (!long.TryParse(_src[i..end].Replace("_", ""), NumberStyles.None, CultureInfo.InvariantCulture, out value))
            throw Error("integer literal too large");
        return end;
    }

    private static int HexValue(char c) => c switch
    {
        >= '0' and <= '9' => c - '0',
        >= 'a' and <= 'f' => c - 'a' + 10,
        >= 'A' and <= 'F' => c - 'A' + 10,
        _ => -1,
    };

    /// <summary>
    /// Jinja's string decoding: <c>value.encode("ascii", "backslashreplace").decode("unicode-escape")</c>,
    /// i.e. Python escapes (<c>\n</c>, <c>\x41</c>, <c>\u00e9</c>, octal...) with unknown escapes kept.
    /// </summary>
    private string Unescape(string s)
    {
        if (!s.Contains('\\')) return s;
        var sb = new StringBuilder(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            if (c != '\\' || i + 1 >= s.Length)
            {
                sb.Append(c);
                continue;
            }
            char n = s[++i];
            if (n > 0x7F)
            {
                // "\é" became "\\xe9" before decoding: a backslash then the escape's letters.
                int cp = PyString.CodePointAt(s, i);
                if (cp > 0xFFFF) i++;
                sb.Append('\\').Append(cp <= 0xFF ? "x" + cp.ToString("x2", CultureInfo.InvariantCulture)
                    : cp <= 0xFFFF ? "u" + cp.ToString("x4", CultureInfo.InvariantCulture) : "U" + cp.ToString("x8", CultureInfo.InvariantCulture));
                continue;
            }
            switch (n)
            {
                case '\n': break;
                case '\\': sb.Append('\\'); break;
                case '\'': sb.Append('\''); break;
                case '"': sb.Append('"'); break;
                case 'a': sb.Append('\a'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case 'n': sb.Append('\n'); break;
                case 'r': sb.Append('\r'); break;
                case 't': sb.Append('\t'); break;
                case 'v': sb.Append('\v'); break;
                case >= '0' and <= '7':
                {
                    int v = n - '0', k = 0;
                    while (k < 2 && i + 1 < s.Length && s[i + 1] is >= '0' and <= '7') { v = v * 8 + (s[++i] - '0'); k++; }
                    sb.Append((char)v);
                    break;
                }
                case 'x' or 'u' or 'U':
                {
                    int len = n == 'x' ? 2 : n == 'u' ? 4 : 8;
                    long v = 0;
                    for (int k = 1; k <= len; k++)
                    {
                        int h = i + k < s.Length ? HexValue(s[i + k]) : -1;
                        if (h < 0) throw Error($"truncated \\{n}{new string('X', len)} escape");
                        v = v * 16 + h;
                    }
                    if (v > 0x10FFFF || v < 0) throw Error("illegal Unicode character");
                    i += len;
                    if (v is >= 0xD800 and <= 0xDFFF) sb.Append((char)v);
                    else sb.Append(char.ConvertFromUtf32((int)v));
                    break;
                }
                case 'N':
                    throw Error("\\N{...} escapes are not supported");
                default:
                    sb.Append('\\').Append(n);
                    break;
            }
        }
        return sb.ToString();
    }
}
