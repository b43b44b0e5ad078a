using System.Globalization;
using System.Numerics;

namespace Cria.Chat.Jinja;

/// <summary>Python's float text (<c>repr</c>/<c>str</c>: shortest round trip, <c>1.0</c>, <c>1e-05</c>, <c>1e+16</c>) and <c>round</c>.</summary>
internal static class PyFloat
{
    public static string Repr(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsPositiveInfinity(d)) return "inf";
        if (double.IsNegativeInfinity(d)) return "-inf";
        if (d == 0) return double.IsNegative(d) ? "-0.0" : "0.0";

        // .NET's "R" is the shortest round-trip text; take its digits and decimal point position.
        string r = d.ToString("R", CultureInfo.InvariantCulture);
        bool negative = r[0] == '-';
        if (negative) r = r[1..];
        int exp = 0;
        int e = r.IndexOfAny(['E', 'e']);
        if (e >= 0)
        {
            exp = int.Parse(r[(e + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
            r = r[..e];
        }
        int dot = r.IndexOf('.');
        string intPart = dot < 0 ? r : r[..dot];
        string fracPart = dot < 0 ? "" : r[(dot + 1)..];
        string digits = intPart + fracPart;
        int decpt = intPart.Length + exp;
        int lead = 0;
        while (lead < digits.Length - 1 && digits[lead] == '0') lead++;
        digits = digits[lead..];
        decpt -= lead;
        digits = digits.TrimEnd('0');
        if (digits.Length == 0) digits = "0";

        string body;
        if (decpt <= -4 || decpt > 16)
        {
            string mantissa = digits.Length == 1 ? digits : digits[0] + "." + digits[1..];
            int x = decpt - 1;
            body = mantissa + "e" + (x < 0 ? "-" : "+") + Math.Abs(x).ToString("00", CultureInfo.InvariantCulture);
        }
        else if (decpt <= 0)
        {
            body = "0." + new string('0', -decpt) + digits;
        }
        else if (decpt >= digits.Length)
        {
            body = digits + new string('0', decpt - digits.Length) + ".0";
        }
        else
        {
            body = digits[..decpt] + "." + digits[decpt..];
        }
        return negative ? "-" + body : body;
    }

    /// <summary>
    /// Python's <c>round(x, ndigits)</c> for a float: the exact binary value rounded half-to-even at
    /// <paramref name="ndigits"/> decimal places, then read back as the nearest double.
    /// </summary>
    public static double Round(double x, long ndigits)
    {
        if (double.IsNaN(x) || double.IsInfinity(x) || x == 0) return x;
        if (ndigits > 330) return x;
        if (ndigits < -330) return 0.0 * Math.Sign(x);
        long bits = BitConverter.DoubleToInt64Bits(x);
        bool negative = bits < 0;
        int exponent = (int)((bits >> 52) & 0x7FF);
        long fraction = bits & 0xFFFFFFFFFFFFFL;
        BigInteger mantissa = exponent == 0 ? fraction : fraction | (1L << 52);
        int e2 = (exponent == 0 ? 1 : exponent) - 1075; // x = mantissa * 2^e2

        // x * 10^n = num / den exactly
        BigInteger num = mantissa, den = BigInteger.One;
        if (e2 >= 0) num <<= e2; else den <<= -e2;
        if (ndigits >= 0) num *= BigInteger.Pow(10, (int)ndigits); else den *= BigInteger.Pow(10, (int)-ndigits);
        BigInteger q = BigInteger.DivRem(num, den, out BigInteger rem);
        int c = (rem * 2).CompareTo(den);
        if (c > 0 || (c == 0 && !q.IsEven)) q += 1;

        string text = q.ToString(CultureInfo.InvariantCulture) + "E" + (-ndigits).ToString(CultureInfo.InvariantCulture);
        double result = double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture);
        return negative ? -result : result;
    }
}
