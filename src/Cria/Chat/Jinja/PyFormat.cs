using System.Globalization;
using System.Text;

namespace Cria.Chat.Jinja;

/// <summary>Python's printf-style formatting, <c>"%s and %d" % (a, b)</c> (also the <c>format</c> filter).</summary>
internal static class PyFormat
{
    public static string Percent(string format, object? args)
    {
        List<object?> values;
        PyDict? mapping = null;
        if (args is PyList { IsTuple: true } tuple) values = tuple.Items;
        else
        {
            values = new List<object?> { args };
            mapping = args as PyDict;
        }
        int next = 0;
        bool usedMapping = false;
        var sb = new StringBuilder();
        int i = 0;
        while (i < format.Length)
        {
            char c = format[i++];
            if (c != '%')
            {
                sb.Append(c);
                continue;
            }
            if (i >= format.Length) throw ChatTemplateException.Type("incomplete format");
            object? value = null;
            bool haveValue = false;
            if (format[i] == '(')
            {
                int close = format.IndexOf(')', i);
                if (close < 0) throw ChatTemplateException.Type("incomplete format key");
                string key = format[(i + 1)..close];
                if (mapping is null) throw ChatTemplateException.Type("format requires a mapping");
                if (!mapping.TryGet(key, out value)) throw ChatTemplateException.Type($"KeyError: {PyRepr.Repr(key)}");
                haveValue = true;
                usedMapping = true;
                i = close + 1;
            }
            string flags = "";
            while (i < format.Length && format[i] is '-' or '+' or ' ' or '#' or '0') flags += format[i++];
            int? width = null;
            if (i < format.Length && format[i] == '*')
            {
                width = (int)PyValue.AsLong(NextValue(values, ref next));
                i++;
            }
            else
            {
                int start = i;
                while (i < format.Length && char.IsAsciiDigit(format[i])) i++;
                if (i > start) width = int.Parse(format[start..i], CultureInfo.InvariantCulture);
            }
            int? precision = null;
            if (i < format.Length && format[i] == '.')
            {
                i++;
                if (i < format.Length && format[i] == '*')
                {
                    precision = (int)PyValue.AsLong(NextValue(values, ref next));
                    i++;
                }
                else
                {
                    int start = i;
                    while (i < format.Length && char.IsAsciiDigit(format[i])) i++;
                    precision = i > start ? int.Parse(format[start..i], CultureInfo.InvariantCulture) : 0;
                }
            }
            while (i < format.Length && format[i] is 'h' or 'l' or 'L') i++;
            if (i >= format.Length) throw ChatTemplateException.Type("incomplete format");
            char conv = format[i++];
            if (conv == '%')
            {
                sb.Append('%');
                continue;
            }
            if (!haveValue) value = NextValue(values, ref next);
            sb.Append(FormatOne(conv, value, flags, width, precision));
        }
        if (!usedMapping && next < values.Count && !(mapping != null && next == 0))
            throw ChatTemplateException.Type("not all arguments converted during string formatting");
        return sb.ToString();
    }

    private static object? NextValue(List<object?> values, ref int next)
    {
        if (next >= values.Count) throw ChatTemplateException.Type("not enough arguments for format string");
        return values[next++];
    }

    private static string FormatOne(char conv, object? value, string flags, int? width, int? precision)
    {
        bool left = flags.Contains('-');
        bool zero = flags.Contains('0') && !left;
        string sign = flags.Contains('+') ? "+" : flags.Contains(' ') ? " " : "";
        string body;
        bool numeric = true;
        switch (conv)
        {
            case 's':
                body = PyRepr.Str(value);
                if (precision is int p && p < body.Length) body = body[..p];
                numeric = false;
                break;
            case 'r' or 'a':
                body = PyRepr.Repr(value);
                if (precision is int pr && pr < body.Length) body = body[..pr];
                numeric = false;
                break;
            case 'c':
                body = value is string cs && PyString.Length(cs) == 1 ? cs : char.ConvertFromUtf32((int)PyValue.AsLong(value));
                numeric = false;
                break;
            case 'd' or 'i' or 'u' or 'x' or 'X' or 'o':
            {
                if (!PyValue.IsNumber(value)) throw ChatTemplateException.Type($"%{conv} format: a real number is required, not {PyValue.TypeName(value)}");
                long n = value is double d ? (long)Math.Truncate(d) : PyValue.AsLong(value);
                string digits = conv switch
                {
                    'x' => Math.Abs(n).ToString("x", CultureInfo.InvariantCulture),
                    'X' => Math.Abs(n).ToString("X", CultureInfo.InvariantCulture),
                    'o' => Convert.ToString(Math.Abs(n), 8),
                    _ => Math.Abs(n).ToString(CultureInfo.InvariantCulture),
                };
                if (precision is int pd && digits.Length < pd) digits = digits.PadLeft(pd, '0');
                if (flags.Contains('#')) digits = conv switch { 'x' => "0x", 'X' => "0X", 'o' => "0o", _ => "" } + digits;
                body = (n < 0 ? "-" : sign) + digits;
                break;
            }
            case 'f' or 'F' or 'e' or 'E' or 'g' or 'G':
            {
                double x = PyValue.AsDouble(value is string ? throw ChatTemplateException.Type($"must be real number, not str") : value);
                string digits = FormatFloat(Math.Abs(x), conv, precision ?? 6, flags.Contains('#'));
                body = (x < 0 || (x == 0 && double.IsNegative(x)) ? "-" : sign) + digits;
                break;
            }
            default:
                throw ChatTemplateException.Type($"unsupported format character '{conv}'");
        }
        if (width is int w && body.Length < w)
        {
            if (left) body = body.PadRight(w);
            else if (zero && numeric)
            {
                int signLength = body.Length > 0 && body[0] is '-' or '+' or ' ' ? 1 : 0;
                body = body[..signLength] + body[signLength..].PadLeft(w - signLength, '0');
            }
            else body = body.PadLeft(w);
        }
        return body;
    }

    public static string FormatFloat(double x, char conv, int precision, bool alternate)
    {
        if (double.IsNaN(x)) return char.IsUpper(conv) ? "NAN" : "nan";
        if (double.IsInfinity(x)) return char.IsUpper(conv) ? "INF" : "inf";
        switch (conv)
        {
            case 'f' or 'F':
                return x.ToString("F" + precision, CultureInfo.InvariantCulture);
            case 'e' or 'E':
            {
                string s = Exponential(x, precision);
                return conv == 'E' ? s.ToUpperInvariant() : s;
            }
            default:
            {
                int p = precision == 0 ? 1 : precision;
                string e = x.ToString("E" + (p - 1), CultureInfo.InvariantCulture);
                int exp = int.Parse(e[(e.IndexOf('E') + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
                string s;
                if (exp >= -4 && exp < p)
                {
                    s = x.ToString("F" + (p - 1 - exp), CultureInfo.InvariantCulture);
                    if (!alternate && s.Contains('.')) s = s.TrimEnd('0').TrimEnd('.');
                }
                else
                {
                    s = Exponential(x, p - 1);
                    if (!alternate)
                    {
                        int ePos = s.IndexOf('e');
                        string mant = s[..ePos];
                        if (mant.Contains('.')) mant = mant.TrimEnd('0').TrimEnd('.');
                        s = mant + s[ePos..];
                    }
                }
                return conv == 'G' ? s.ToUpperInvariant() : s;
            }
        }
    }

    private static string Exponential(double x, int precision)
    {
        string e = x.ToString("E" + precision, CultureInfo.InvariantCulture); // d.dddE+ddd
        int ePos = e.IndexOf('E');
        int exp = int.Parse(e[(ePos + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
        return e[..ePos] + "e" + (exp < 0 ? "-" : "+") + Math.Abs(exp).ToString("00", CultureInfo.InvariantCulture);
    }
}
