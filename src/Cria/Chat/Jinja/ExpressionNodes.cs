namespace Cria.Chat.Jinja;

/// <summary>An expression of the template AST.</summary>
internal abstract record Expr(int Line);

internal sealed record ConstExpr(int Line, object? Value) : Expr(Line);

internal sealed record NameExpr(int Line, string Name) : Expr(Line);

/// <summary>A list literal, or a tuple (<c>(a, b)</c>, <c>a, b</c>).</summary>
internal sealed record ListExpr(int Line, List<Expr> Items, bool IsTuple) : Expr(Line);

internal sealed record DictExpr(int Line, List<(Expr Key, Expr Value)> Pairs) : Expr(Line);

/// <summary><c>obj.name</c>: Python attribute first (methods), then item.</summary>
internal sealed record GetAttrExpr(int Line, Expr Target, string Name) : Expr(Line);

/// <summary><c>obj[key]</c>: item first, then attribute when the key is a string.</summary>
internal sealed record GetItemExpr(int Line, Expr Target, Expr Key) : Expr(Line);

/// <summary><c>start:stop:step</c> inside brackets.</summary>
internal sealed record SliceExpr(int Line, Expr? Start, Expr? Stop, Expr? Step) : Expr(Line);

/// <summary>Arguments as written: positional, keyword, <c>*args</c>, <c>**kwargs</c>.</summary>
internal sealed record ArgsExpr(List<Expr> Positional, List<(string Name, Expr Value)> Named, Expr? DynArgs = null, Expr? DynKwargs = null)
{
    public static ArgsExpr None() => new(new List<Expr>(), new List<(string, Expr)>());
}

internal sealed record CallExpr(int Line, Expr Callee, ArgsExpr Args) : Expr(Line);

/// <summary><c>value | name(args)</c>; <see cref="Operand"/> is null inside <c>{% filter %}</c> and block <c>set</c>.</summary>
internal sealed record FilterExpr(int Line, Expr? Operand, string Name, ArgsExpr Args) : Expr(Line);

/// <summary><c>value is name(args)</c> (negation is a surrounding <c>not</c>).</summary>
internal sealed record TestExpr(int Line, Expr Operand, string Name, ArgsExpr Args) : Expr(Line);

/// <summary><c>not x</c>, <c>-x</c>, <c>+x</c>.</summary>
internal sealed record UnaryExpr(int Line, string Op, Expr Operand) : Expr(Line);

/// <summary>Arithmetic, <c>~</c>, <c>and</c>, <c>or</c>.</summary>
internal sealed record BinaryExpr(int Line, string Op, Expr Left, Expr Right) : Expr(Line);

/// <summary>A comparison chain <c>a &lt; b &lt;= c</c> (operators: == != &lt; &lt;= &gt; &gt;= in notin).</summary>
internal sealed record CompareExpr(int Line, Expr First, List<(string Op, Expr Operand)> Rest) : Expr(Line);

/// <summary><c>then if test else otherwise</c>; without else, a false test gives Undefined.</summary>
internal sealed record CondExpr(int Line, Expr Test, Expr Then, Expr? Else) : Expr(Line);
