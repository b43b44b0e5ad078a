using System.Text;

namespace Cria.Chat.Jinja;

/// <summary>
/// Renders a parsed template: runs statements into a <see cref="StringBuilder"/> and evaluates
/// expressions with Jinja2's semantics (sandboxed attribute lookup, default <see cref="Undefined"/>).
/// </summary>
internal sealed class Interpreter
{
    private const int MaxDepth = 400;
    private int _depth;

    public Interpreter(Scope globals) => Globals = globals;

    public Scope Globals { get; }

    private enum Flow
    {
        Normal,
        Break,
        Continue,
    }

    public string Render(List<Stmt> body, Scope scope)
    {
        var sb = new StringBuilder();
        Exec(body, scope, sb);
        return sb.ToString();
    }

    // ---- statements -------------------------------------------------------------------------

    private Flow Exec(List<Stmt> body, Scope scope, StringBuilder output)
    {
        foreach (var stmt in body)
        {
            Flow flow = ExecOne(stmt, scope, output);
            if (flow != Flow.Normal) return flow;
        }
        return Flow.Normal;
    }

    private Flow ExecOne(Stmt stmt, Scope scope, StringBuilder output)
    {
        switch (stmt)
        {
            case TextStmt t:
                output.Append(t.Text);
                return Flow.Normal;
            case OutputStmt o:
                output.Append(PyRepr.Str(Eval(o.Value, scope)));
                return Flow.Normal;
            case IfStmt s:
                foreach (var (test, body) in s.Branches)
                    if (PyValue.Truthy(Eval(test, scope))) return Exec(body, scope, output);
                return Exec(s.Else, scope, output);
            case ForStmt f:
                ExecFor(f, scope, output);
                return Flow.Normal;
            case SetStmt s:
                Assign(s.Target, Eval(s.Value, scope), scope);
                return Flow.Normal;
            case SetBlockStmt s:
            {
                var sb = new StringBuilder();
                Exec(s.Body, new Scope(scope), sb);
                object? value = sb.ToString();
                if (s.Filter != null) value = ApplyFilterChain(s.Filter, value, scope);
                Assign(s.Target, value, scope);
                return Flow.Normal;
            }
            case MacroStmt m:
                scope.Set(m.Definition.Name, new Macro(m.Definition, scope));
                return Flow.Normal;
            case CallBlockStmt c:
            {
                var callee = Eval(c.Call.Callee, scope);
                var args = EvalArgs(c.Call.Args, scope);
                args.Named.Add(new("caller", new Macro(c.Caller, scope)));
                output.Append(PyRepr.Str(Call(callee, args)));
                return Flow.Normal;
            }
            case FilterBlockStmt fb:
            {
                var sb = new StringBuilder();
                Exec(fb.Body, new Scope(scope), sb);
                output.Append(PyRepr.Str(ApplyFilterChain(fb.Filter, sb.ToString(), scope)));
                return Flow.Normal;
            }
            case WithStmt w:
            {
                var inner = new Scope(scope);
                foreach (var (target, value) in w.Assignments) Assign(target, Eval(value, scope), inner);
                return Exec(w.Body, inner, output);
            }
            case BlockStmt b:
                return Exec(b.Body, b.NewScope ? new Scope(scope) : scope, output);
            case BreakStmt:
                return Flow.Break;
            case ContinueStmt:
                return Flow.Continue;
            default:
                throw new InvalidOperationException($"unknown statement {stmt.GetType().Name}");
        }
    }

    private void ExecFor(ForStmt f, Scope scope, StringBuilder output)
    {
        var items = LoopItems(f, Eval(f.Iterable, scope), scope);
        if (items.Count == 0)
        {
            Exec(f.Else, new Scope(scope), output);
            return;
        }
        RunLoop(f, items, 0, scope, output);
    }

    private List<object?> LoopItems(ForStmt f, object? iterable, Scope scope)
    {
        var items = PyValue.Iterate(iterable).ToList();
        if (f.Filter is null) return items;
        var kept = new List<object?>();
        foreach (var item in items)
        {
            var s = new Scope(scope);
            Assign(f.Target, item, s);
            if (PyValue.Truthy(Eval(f.Filter, s))) kept.Add(item);
        }
        return kept;
    }

    private void RunLoop(ForStmt f, List<object?> items, int depth0, Scope scope, StringBuilder output)
    {
        Func<object?, string>? recurse = null;
        if (f.Recursive)
        {
            recurse = iterable =>
            {
                var sb = new StringBuilder();
                var inner = LoopItems(f, iterable, scope);
                if (inner.Count > 0)
                {
                    Enter();
                    try { RunLoop(f, inner, depth0 + 1, scope, sb); }
                    finally { _depth--; }
                }
                return sb.ToString();
            };
        }
        var loop = new LoopContext(items, depth0, recurse);
        for (int i = 0; i < items.Count; i++)
        {
            loop.Index0 = i;
            var iteration = new Scope(scope);
            iteration.Set("loop", loop);
            Assign(f.Target, items[i], iteration);
            if (Exec(f.Body, iteration, output) == Flow.Break) break;
        }
    }

    private void Assign(Target target, object? value, Scope scope)
    {
        switch (target)
        {
            case NameTarget n:
                scope.Set(n.Name, value);
                break;
            case TupleTarget t:
            {
                var values = PyValue.Iterate(value).ToList();
                if (values.Count < t.Items.Count)
                    throw ChatTemplateException.Type($"not enough values to unpack (expected {t.Items.Count}, got {values.Count})");
                if (values.Count > t.Items.Count)
                    throw ChatTemplateException.Type($"too many values to unpack (expected {t.Items.Count})");
                for (int i = 0; i < values.Count; i++) Assign(t.Items[i], values[i], scope);
                break;
            }
            case NamespaceTarget ns:
            {
                if (!scope.TryGet(ns.Name, out object? obj)) obj = Undefined.Variable(ns.Name);
                if (obj is not JinjaNamespace space) throw ChatTemplateException.Type("cannot assign attribute on non-namespace object");
                space.Attributes.Set(ns.Attribute, value);
                break;
            }
        }
    }

    private void Enter()
    {
        if (++_depth > MaxDepth)
        {
            _depth--;
            throw ChatTemplateException.Type("maximum recursion depth exceeded");
        }
    }

    public object? InvokeMacro(Macro macro, CallArgs args)
    {
        var def = macro.Definition;
        var scope = new Scope(macro.Closure);
        int count = def.Parameters.Count;
        var named = new List<KeyValuePair<string, object?>>(args.Named);
        object? TakeNamed(string name)
        {
            int k = named.FindIndex(kv => kv.Key == name);
            if (k < 0) return Missing;
            var v = named[k].Value;
            named.RemoveAt(k);
            return v;
        }
        for (int i = 0; i < count; i++)
        {
            var (name, dflt) = def.Parameters[i];
            object? value = i < args.Positional.Count ? args.Positional[i] : TakeNamed(name);
            if (ReferenceEquals(value, Missing))
                value = dflt != null ? Eval(dflt, scope) : Undefined.WithMessage($"parameter {PyRepr.Repr(name)} was not provided");
            scope.Set(name, value);
        }
        if (def.UsesCaller && !def.Parameters.Any(p => p.Name == "caller"))
        {
            object? caller = TakeNamed("caller");
            scope.Set("caller", ReferenceEquals(caller, Missing) ? Undefined.WithMessage("No caller defined") : caller);
        }
        if (def.UsesKwargs)
        {
            var kw = new PyDict();
            foreach (var kv in named) kw.Set(kv.Key, kv.Value);
            scope.Set("kwargs", kw);
        }
        else if (named.Count > 0)
        {
            if (named[0].Key == "caller")
                throw ChatTemplateException.Type($"macro {PyRepr.Repr(def.Name)} was invoked with two values for the special caller argument. This is most likely a bug.");
            throw ChatTemplateException.Type($"macro {PyRepr.Repr(def.Name)} takes no keyword argument {PyRepr.Repr(named[0].Key)}");
        }
        if (def.UsesVarargs)
            scope.Set("varargs", new PyList(args.Positional.Skip(count).ToList(), isTuple: true));
        else if (args.Positional.Count > count)
            throw ChatTemplateException.Type($"macro {PyRepr.Repr(def.Name)} takes not more than {count} argument(s)");

        Enter();
        try
        {
            var sb = new StringBuilder();
            Exec(def.Body, scope, sb);
            return sb.ToString();
        }
        finally
        {
            _depth--;
        }
    }

    private static readonly object Missing = new();

    // ---- expressions ------------------------------------------------------------------------

    public object? Eval(Expr expr, Scope scope)
    {
        switch (expr)
        {
            case ConstExpr c:
                return c.Value;
            case NameExpr n:
                return scope.TryGet(n.Name, out object? v) ? v : Undefined.Variable(n.Name);
            case ListExpr l:
            {
                var items = new List<object?>(l.Items.Count);
                foreach (var item in l.Items) items.Add(Eval(item, scope));
                return new PyList(items, l.IsTuple);
            }
            case DictExpr d:
            {
                var dict = new PyDict();
                foreach (var (k, val) in d.Pairs) dict.Set(Eval(k, scope), Eval(val, scope));
                return dict;
            }
            case GetAttrExpr g:
                return GetAttr(Eval(g.Target, scope), g.Name);
            case GetItemExpr g:
            {
                var target = Eval(g.Target, scope);
                if (g.Key is SliceExpr s) return Slice(target, s, scope);
                return GetItem(target, Eval(g.Key, scope));
            }
            case SliceExpr:
                throw ChatTemplateException.Type("a slice is only valid inside brackets");
            case CallExpr c:
                return Call(Eval(c.Callee, scope), EvalArgs(c.Args, scope));
            case FilterExpr f:
                return ApplyFilter(f.Name, Eval(f.Operand!, scope), EvalArgs(f.Args, scope));
            case TestExpr t:
                return RunTest(t.Name, Eval(t.Operand, scope), EvalArgs(t.Args, scope));
            case UnaryExpr u:
            {
                var value = Eval(u.Operand, scope);
                return u.Op switch
                {
                    "not" => !PyValue.Truthy(value),
                    "-" => Operators.Negate(value),
                    _ => Operators.Plus(value),
                };
            }
            case BinaryExpr b:
            {
                var left = Eval(b.Left, scope);
                if (b.Op == "and") return PyValue.Truthy(left) ? Eval(b.Right, scope) : left;
                if (b.Op == "or") return PyValue.Truthy(left) ? left : Eval(b.Right, scope);
                return Operators.Binary(b.Op, left, Eval(b.Right, scope));
            }
            case CompareExpr c:
            {
                var left = Eval(c.First, scope);
                foreach (var (op, operand) in c.Rest)
                {
                    var right = Eval(operand, scope);
                    if (!CompareOp(op, left, right)) return false;
                    left = right;
                }
                return true;
            }
            case CondExpr c:
                if (PyValue.Truthy(Eval(c.Test, scope))) return Eval(c.Then, scope);
                return c.Else != null
                    ? Eval(c.Else, scope)
                    : Undefined.WithMessage($"the inline if-expression on line {c.Line} evaluated to false and no else section was defined.");
            default:
                throw new InvalidOperationException($"unknown expression {expr.GetType().Name}");
        }
    }

    public static bool CompareOp(string op, object? a, object? b) => op switch
    {
        "==" => PyValue.Equals(a, b),
        "!=" => !PyValue.Equals(a, b),
        "in" => PyValue.Contains(b, a),
        "notin" => !PyValue.Contains(b, a),
        _ => PyValue.Compare(op, a, b),
    };

    private CallArgs EvalArgs(ArgsExpr args, Scope scope)
    {
        var positional = new List<object?>(args.Positional.Count);
        foreach (var a in args.Positional) positional.Add(Eval(a, scope));
        var named = new List<KeyValuePair<string, object?>>(args.Named.Count);
        foreach (var (name, value) in args.Named) named.Add(new(name, Eval(value, scope)));
        if (args.DynArgs != null) positional.AddRange(PyValue.Iterate(Eval(args.DynArgs, scope)));
        if (args.DynKwargs != null)
        {
            if (Eval(args.DynKwargs, scope) is not PyDict kw) throw ChatTemplateException.Type("argument after ** must be a mapping");
            foreach (var kv in kw.Pairs)
                named.Add(new(kv.Key as string ?? throw ChatTemplateException.Type("keywords must be strings"), kv.Value));
        }
        return new CallArgs(positional, named);
    }

    public object? Call(object? callee, CallArgs args) => callee switch
    {
        IJinjaCallable f => f.Call(this, args),
        Undefined u => throw u.Error(),
        _ => throw ChatTemplateException.Type($"'{PyValue.TypeName(callee)}' object is not callable"),
    };

    private object? ApplyFilterChain(FilterExpr filter, object? value, Scope scope)
    {
        // The innermost filter of the chain has no operand: it receives the value.
        object? operand = filter.Operand is FilterExpr inner ? ApplyFilterChain(inner, value, scope) : value;
        return ApplyFilter(filter.Name, operand, EvalArgs(filter.Args, scope));
    }

    public object? ApplyFilter(string name, object? value, CallArgs args)
    {
        if (!Filters.TryGet(name, out var filter)) throw ChatTemplateException.Type($"No filter named '{name}'.");
        return filter(this, value, args);
    }

    public bool RunTest(string name, object? value, CallArgs args)
    {
        if (!BuiltinTests.TryGet(name, out var test, out int arity)) throw ChatTemplateException.Type($"No test named '{name}' found.");
        if (args.Positional.Count > arity)
            throw ChatTemplateException.Type($"test_{name}() takes {arity + 1} positional argument{(arity == 0 ? "" : "s")} but {args.Positional.Count + 1} were given");
        return test(this, value, args);
    }

    /// <summary><c>obj.name</c>: Python attribute (a method, a namespace or loop field), else the item <c>obj["name"]</c>.</summary>
    public object? GetAttr(object? obj, string name)
    {
        if (obj is Undefined u) throw u.Error();
        if (BuiltinMethods.TryGet(obj, name, out object? method)) return method;
        switch (obj)
        {
            case PyDict d when d.TryGet(name, out object? v):
                return v;
            case JinjaNamespace ns when ns.Attributes.TryGet(name, out object? a):
                return a;
            case LoopContext loop:
                return loop.GetAttribute(name);
        }
        return Undefined.Attribute(obj, name);
    }

    /// <summary><c>obj[key]</c>: the item, else (for a string key) the Python attribute, else Undefined.</summary>
    public object? GetItem(object? obj, object? key)
    {
        if (obj is Undefined u) throw u.Error();
        switch (obj)
        {
            case PyDict d when d.TryGet(key, out object? v):
                return v;
            case PyList l when PyValue.IsInt(key):
            {
                long i = PyValue.AsLong(key);
                if (i < 0) i += l.Count;
                if (i >= 0 && i < l.Count) return l[(int)i];
                break;
            }
            case string s when PyValue.IsInt(key):
            {
                string? ch = PyString.Index(s, PyValue.AsLong(key));
                if (ch != null) return ch;
                break;
            }
        }
        if (key is string name)
        {
            if (BuiltinMethods.TryGet(obj, name, out object? method)) return method;
            if (obj is JinjaNamespace ns && ns.Attributes.TryGet(name, out object? a)) return a;
            if (obj is LoopContext loop) return loop.GetAttribute(name);
        }
        return Undefined.Element(obj, key);
    }

    /// <summary>
    /// <c>x[a:b:c]</c>. Jinja compiles slices to a plain Python subscript (not its lenient getitem),
    /// so slicing something that is not a list or string is an error, as are non-integer bounds.
    /// </summary>
    private object? Slice(object? target, SliceExpr s, Scope scope)
    {
        object? start = s.Start is null ? null : Eval(s.Start, scope);
        object? stop = s.Stop is null ? null : Eval(s.Stop, scope);
        object? step = s.Step is null ? null : Eval(s.Step, scope);
        switch (target)
        {
            case Undefined u:
                throw u.Error();
            case PyList or string:
                break;
            case PyDict:
                throw ChatTemplateException.Type("unhashable type: 'slice'");
            default:
                throw ChatTemplateException.Type($"'{PyValue.TypeName(target)}' object is not subscriptable");
        }
        if (!IsSliceIndex(start) || !IsSliceIndex(stop) || !IsSliceIndex(step))
            throw ChatTemplateException.Type("slice indices must be integers or None or have an __index__ method");
        long? a = start is null ? null : PyValue.AsLong(start);
        long? b = stop is null ? null : PyValue.AsLong(stop);
        long? c = step is null ? null : PyValue.AsLong(step);
        return target is PyList l ? PySlice.Slice(l, a, b, c) : PyString.Slice((string)target!, a, b, c);
    }

    private static bool IsSliceIndex(object? v) => v is null || PyValue.IsInt(v);
}
