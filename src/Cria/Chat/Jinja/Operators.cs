namespace Cria.Chat.Jinja;

/// <summary>Python's arithmetic operators on template values (bool counts as int; Undefined operands raise).</summary>
internal static class Operators
{
    public static object? Binary(string op, object? a, object? b)
    {
        if (op == "~") return PyRepr.Str(a) + PyRepr.Str(b);
        if (a is Undefined ua) throw ua.Error();
        if (b is Undefined ub) throw ub.Error();
        return op switch
        {
            "+" => Add(a, b),
            "-" => Arith(op, a, b, (x, y) => checked(x - y), (x, y) => x - y),
            "*" => Multiply(a, b),
            "/" => Divide(a, b),
            "//" => FloorDivide(a, b),
            "%" => Modulo(a, b),
            "**" => Power(a, b),
            _ => throw new InvalidOperationException(op),
        };
    }

    private static ChatTemplateException Unsupported(string op, object? a, object? b) =>
        ChatTemplateException.Type($"unsupported operand type(s) for {op}: '{PyValue.TypeName(a)}' and '{PyValue.TypeName(b)}'");

    private static object Arith(string op, object? a, object? b, Func<long, long, long> ints, Func<double, double, double> floats)
    {
        if (!PyValue.IsNumber(a) || !PyValue.IsNumber(b)) throw Unsupported(op, a, b);
        if (PyValue.IsInt(a) && PyValue.IsInt(b))
        {
            try { return ints(PyValue.AsLong(a), PyValue.AsLong(b)); }
            catch (OverflowException) { throw ChatTemplateException.Type("integer overflow"); }
        }
        return floats(PyValue.AsDouble(a), PyValue.AsDouble(b));
    }

    private static object Add(object? a, object? b)
    {
        if (a is string sa)
            return b is string sb ? sa + sb : throw ChatTemplateException.Type($"can only concatenate str (not \"{PyValue.TypeName(b)}\") to str");
        if (a is PyList la)
        {
            if (b is PyList lb && la.IsTuple == lb.IsTuple)
            {
                var items = new List<object?>(la.Items);
                items.AddRange(lb.Items);
                return new PyList(items, la.IsTuple);
            }
            throw ChatTemplateException.Type($"can only concatenate {PyValue.TypeName(a)} (not \"{PyValue.TypeName(b)}\") to {PyValue.TypeName(a)}");
        }
        return Arith("+", a, b, (x, y) => checked(x + y), (x, y) => x + y);
    }

    private static object Multiply(object? a, object? b)
    {
        if (a is string s && PyValue.IsInt(b)) return PyString.Repeat(s, PyValue.AsLong(b));
        if (b is string s2 && PyValue.IsInt(a)) return PyString.Repeat(s2, PyValue.AsLong(a));
        if (a is PyList l && PyValue.IsInt(b)) return RepeatList(l, PyValue.AsLong(b));
        if (b is PyList l2 && PyValue.IsInt(a)) return RepeatList(l2, PyValue.AsLong(a));
        return Arith("*", a, b, (x, y) => checked(x * y), (x, y) => x * y);
    }

    private static PyList RepeatList(PyList l, long n)
    {
        var items = new List<object?>();
        for (long k = 0; k < n; k++) items.AddRange(l.Items);
        return new PyList(items, l.IsTuple);
    }

    private static object Divide(object? a, object? b)
    {
        if (!PyValue.IsNumber(a) || !PyValue.IsNumber(b)) throw Unsupported("/", a, b);
        double y = PyValue.AsDouble(b);
        if (y == 0) throw ChatTemplateException.Type("division by zero");
        return PyValue.AsDouble(a) / y;
    }

    private static object FloorDivide(object? a, object? b)
    {
        if (!PyValue.IsNumber(a) || !PyValue.IsNumber(b)) throw Unsupported("//", a, b);
        if (PyValue.IsInt(a) && PyValue.IsInt(b))
        {
            long x = PyValue.AsLong(a), y = PyValue.AsLong(b);
            if (y == 0) throw ChatTemplateException.Type("integer division or modulo by zero");
            long q = x / y;
            if ((x % y != 0) && ((x < 0) != (y < 0))) q--;
            return q;
        }
        double fx = PyValue.AsDouble(a), fy = PyValue.AsDouble(b);
        if (fy == 0) throw ChatTemplateException.Type("float floor division by zero");
        return FloatDivMod(fx, fy).Div;
    }

    private static object Modulo(object? a, object? b)
    {
        if (a is string fmt) return PyFormat.Percent(fmt, b);
        if (!PyValue.IsNumber(a) || !PyValue.IsNumber(b)) throw Unsupported("%", a, b);
        if (PyValue.IsInt(a) && PyValue.IsInt(b))
        {
            long x = PyValue.AsLong(a), y = PyValue.AsLong(b);
            if (y == 0) throw ChatTemplateException.Type("integer division or modulo by zero");
            long r = x % y;
            if (r != 0 && ((r < 0) != (y < 0))) r += y;
            return r;
        }
        double fx = PyValue.AsDouble(a), fy = PyValue.AsDouble(b);
        if (fy == 0) throw ChatTemplateException.Type("float modulo");
        return FloatDivMod(fx, fy).Mod;
    }

    /// <summary>CPython's float divmod.</summary>
    private static (double Div, double Mod) FloatDivMod(double vx, double wx)
    {
        double mod = vx % wx;
        double div = (vx - mod) / wx;
        if (mod != 0)
        {
            if ((wx < 0) != (mod < 0))
            {
                mod += wx;
                div -= 1.0;
            }
        }
        else
        {
            mod = Math.CopySign(0.0, wx);
        }
        double floordiv;
        if (div != 0)
        {
            floordiv = Math.Floor(div);
            if (div - floordiv > 0.5) floordiv += 1.0;
        }
        else
        {
            floordiv = Math.CopySign(0.0, vx / wx);
        }
        return (floordiv, mod);
    }

    private static object Power(object? a, object? b)
    {
        if (!PyValue.IsNumber(a) || !PyValue.IsNumber(b)) throw Unsupported("** or pow()", a, b);
        if (PyValue.IsInt(a) && PyValue.IsInt(b) && PyValue.AsLong(b) >= 0)
        {
            long x = PyValue.AsLong(a), n = PyValue.AsLong(b), result = 1;
            try
            {
                checked
                {
                    while (n > 0)
                    {
                        if ((n & 1) != 0) result *= x;
                        n >>= 1;
                        if (n > 0) x *= x;
                    }
                }
            }
            catch (OverflowException)
            {
                throw ChatTemplateException.Type("integer overflow");
            }
            return result;
        }
        double fa = PyValue.AsDouble(a), fb = PyValue.AsDouble(b);
        if (fa == 0 && fb < 0) throw ChatTemplateException.Type("0.0 cannot be raised to a negative power");
        return Math.Pow(fa, fb);
    }

    public static object? Negate(object? v) => v switch
    {
        Undefined u => throw u.Error(),
        bool b => (object)(b ? -1L : 0L),
        long l => (object)(l == long.MinValue ? throw ChatTemplateException.Type("integer overflow") : -l),
        double d => (object)-d,
        _ => throw ChatTemplateException.Type($"bad operand type for unary -: '{PyValue.TypeName(v)}'"),
    };

    public static object? Plus(object? v) => v switch
    {
        Undefined u => throw u.Error(),
        bool b => (object)(b ? 1L : 0L),
        long or double => v,
        _ => throw ChatTemplateException.Type($"bad operand type for unary +: '{PyValue.TypeName(v)}'"),
    };
}
