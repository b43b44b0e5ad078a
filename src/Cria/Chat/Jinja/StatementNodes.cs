namespace Cria.Chat.Jinja;

/// <summary>A statement of the template AST.</summary>
internal abstract record Stmt(int Line);

/// <summary>Literal template text.</summary>
internal sealed record TextStmt(int Line, string Text) : Stmt(Line);

/// <summary><c>{{ expr }}</c> (and <c>{% print expr %}</c>).</summary>
internal sealed record OutputStmt(int Line, Expr Value) : Stmt(Line);

internal sealed record IfStmt(int Line, List<(Expr Test, List<Stmt> Body)> Branches, List<Stmt> Else) : Stmt(Line);

internal sealed record ForStmt(int Line, Target Target, Expr Iterable, Expr? Filter, bool Recursive, List<Stmt> Body, List<Stmt> Else) : Stmt(Line);

internal sealed record SetStmt(int Line, Target Target, Expr Value) : Stmt(Line);

/// <summary><c>{% set x %}...{% endset %}</c>, optionally through a filter chain.</summary>
internal sealed record SetBlockStmt(int Line, Target Target, FilterExpr? Filter, List<Stmt> Body) : Stmt(Line);

internal sealed record MacroStmt(int Line, MacroDefinition Definition) : Stmt(Line);

/// <summary><c>{% call(params) macro(args) %}body{% endcall %}</c>: the body becomes <c>caller()</c>.</summary>
internal sealed record CallBlockStmt(int Line, CallExpr Call, MacroDefinition Caller) : Stmt(Line);

/// <summary><c>{% filter f %}body{% endfilter %}</c>: the innermost filter's operand is the rendered body.</summary>
internal sealed record FilterBlockStmt(int Line, FilterExpr Filter, List<Stmt> Body) : Stmt(Line);

internal sealed record WithStmt(int Line, List<(Target Target, Expr Value)> Assignments, List<Stmt> Body) : Stmt(Line);

/// <summary>A body rendered in a fresh scope (<c>{% block %}</c>) or inline (<c>{% generation %}</c>).</summary>
internal sealed record BlockStmt(int Line, List<Stmt> Body, bool NewScope) : Stmt(Line);

internal sealed record BreakStmt(int Line) : Stmt(Line);

internal sealed record ContinueStmt(int Line) : Stmt(Line);

/// <summary>An assignment target: a name, a tuple of targets, or <c>ns.attr</c>.</summary>
internal abstract record Target;

internal sealed record NameTarget(string Name) : Target;

internal sealed record TupleTarget(List<Target> Items) : Target;

internal sealed record NamespaceTarget(string Name, string Attribute) : Target;

/// <summary>A macro (or a call block's caller): parameters with optional defaults and a body.</summary>
internal sealed record MacroDefinition(string Name, List<(string Name, Expr? Default)> Parameters, List<Stmt> Body)
{
    public bool UsesVarargs { get; set; }
    public bool UsesKwargs { get; set; }
    public bool UsesCaller { get; set; }
}
