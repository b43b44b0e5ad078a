namespace Cria.Chat.Jinja;

/// <summary>
/// Builds the AST from tokens with Jinja2's grammar and precedence: conditional expression, or, and,
/// not, comparisons (chained, <c>in</c>, <c>not in</c>), <c>+ -</c>, <c>~</c>, <c>* / // %</c>, <c>**</c>
/// (left-associative, as in Jinja), unary minus, then primary with postfix (<c>.attr</c>, <c>[...]</c>,
/// calls) and filters/tests, which bind tighter than every binary operator.
/// </summary>
internal sealed class Parser
{
    private readonly List<Token> _tokens;
    private int _i;
    private readonly List<MacroDefinition> _macroStack = new();

    private Parser(List<Token> tokens) => _tokens = tokens;

    public static List<Stmt> Parse(string source)
    {
        var parser = new Parser(Lexer.Tokenize(source));
        return parser.Subparse(null);
    }

    private Token Cur => _tokens[_i];
    private Token Look => _tokens[Math.Min(_i + 1, _tokens.Count - 1)];

    private Token Next()
    {
        var t = _tokens[_i];
        if (_i < _tokens.Count - 1) _i++;
        return t;
    }

    private ChatTemplateException Fail(string message, int? line = null)
    {
        int l = line ?? Cur.Line;
        return new ChatTemplateException(ChatTemplateErrorKind.Syntax, $"template syntax error (line {l}): {message}", l);
    }

    private Token Expect(TokenKind kind, string? text = null)
    {
        var t = Cur;
        if (t.Kind != kind || (text != null && t.Text != text))
        {
            string wanted = text != null ? $"'{text}'" : kind switch
            {
                TokenKind.Name => "name",
                TokenKind.BlockEnd => "end of statement block",
                TokenKind.VariableEnd => "end of print statement",
                _ => kind.ToString(),
            };
            if (t.Kind == TokenKind.Eof) throw Fail($"unexpected end of template, expected {wanted}.");
            throw Fail($"expected token {wanted}, got {t.Describe()}");
        }
        return Next();
    }

    private bool SkipOp(string op)
    {
        if (!Cur.IsOp(op)) return false;
        Next();
        return true;
    }

    private bool SkipName(string name)
    {
        if (!Cur.IsName(name)) return false;
        Next();
        return true;
    }

    // ---- statements -------------------------------------------------------------------------

    private List<Stmt> Subparse(string[]? endTokens)
    {
        var body = new List<Stmt>();
        while (Cur.Kind != TokenKind.Eof)
        {
            var token = Cur;
            switch (token.Kind)
            {
                case TokenKind.Data:
                    body.Add(new TextStmt(token.Line, token.Text));
                    Next();
                    break;
                case TokenKind.VariableBegin:
                    Next();
                    body.Add(new OutputStmt(token.Line, ParseTuple(withCondExpr: true)));
                    Expect(TokenKind.VariableEnd);
                    break;
                case TokenKind.BlockBegin:
                    Next();
                    if (endTokens != null && Cur.Kind == TokenKind.Name && Array.IndexOf(endTokens, Cur.Text) >= 0) return body;
                    ParseStatement(body);
                    Expect(TokenKind.BlockEnd);
                    break;
                default:
                    throw Fail($"unexpected {token.Describe()}");
            }
        }
        if (endTokens != null)
            throw Fail($"Unexpected end of template. Jinja was looking for the following tags: {string.Join(" or ", endTokens.Select(e => $"'{e}'"))}.");
        return body;
    }

    private List<Stmt> ParseStatements(string[] endTokens, bool dropNeedle = false)
    {
        SkipOp(":");
        Expect(TokenKind.BlockEnd);
        var result = Subparse(endTokens);
        if (dropNeedle) Next();
        return result;
    }

    private void ParseStatement(List<Stmt> body)
    {
        var token = Cur;
        if (token.Kind != TokenKind.Name) throw Fail("tag name expected");
        switch (token.Text)
        {
            case "if": body.Add(ParseIf()); break;
            case "for": body.Add(ParseFor()); break;
            case "set": body.Add(ParseSet()); break;
            case "macro": body.Add(ParseMacro()); break;
            case "call": body.Add(ParseCallBlock()); break;
            case "filter": body.Add(ParseFilterBlock()); break;
            case "with": body.Add(ParseWith()); break;
            case "print":
                Next();
                while (Cur.Kind != TokenKind.BlockEnd)
                {
                    if (Cur.IsOp(",")) Next();
                    body.Add(new OutputStmt(token.Line, ParseExpression()));
                }
                break;
            case "block":
                Next();
                Expect(TokenKind.Name);
                SkipName("scoped");
                SkipName("required");
                var blockBody = ParseStatements(["endblock"], dropNeedle: true);
                if (Cur.Kind == TokenKind.Name) Next();
                body.Add(new BlockStmt(token.Line, blockBody, NewScope: true));
                break;
            case "generation":
                // Hugging Face's AssistantTracker tag: renders its body in place.
                Next();
                body.Add(new BlockStmt(token.Line, ParseStatements(["endgeneration"], dropNeedle: true), NewScope: false));
                break;
            case "break":
                Next();
                body.Add(new BreakStmt(token.Line));
                break;
            case "continue":
                Next();
                body.Add(new ContinueStmt(token.Line));
                break;
            case "extends" or "include" or "import" or "from" or "autoescape" or "do":
                throw Fail($"the '{token.Text}' tag is not supported by this engine");
            default:
                throw Fail($"Encountered unknown tag '{token.Text}'.");
        }
    }

    private IfStmt ParseIf()
    {
        int line = Expect(TokenKind.Name, "if").Line;
        var branches = new List<(Expr, List<Stmt>)>();
        var elseBody = new List<Stmt>();
        while (true)
        {
            var test = ParseTuple(withCondExpr: false);
            var body = ParseStatements(["elif", "else", "endif"]);
            branches.Add((test, body));
            var token = Next();
            if (token.Text == "elif") continue;
            if (token.Text == "else") elseBody = ParseStatements(["endif"], dropNeedle: true);
            break;
        }
        return new IfStmt(line, branches, elseBody);
    }

    private ForStmt ParseFor()
    {
        int line = Expect(TokenKind.Name, "for").Line;
        var target = ParseAssignTarget(extraEnd: ["in"]);
        Expect(TokenKind.Name, "in");
        var iterable = ParseTuple(withCondExpr: false, extraEnd: ["recursive"]);
        Expr? filter = null;
        if (SkipName("if")) filter = ParseExpression();
        bool recursive = SkipName("recursive");
        var body = ParseStatements(["endfor", "else"]);
        var elseBody = new List<Stmt>();
        if (Next().Text != "endfor") elseBody = ParseStatements(["endfor"], dropNeedle: true);
        return new ForStmt(line, target, iterable, filter, recursive, body, elseBody);
    }

    private Stmt ParseSet()
    {
        int line = Expect(TokenKind.Name, "set").Line;
        var target = ParseAssignTarget(withNamespace: true);
        if (SkipOp("=")) return new SetStmt(line, target, ParseTuple(withCondExpr: true));
        var filter = (FilterExpr?)ParseFilter(null, startInline: false);
        var body = ParseStatements(["endset"], dropNeedle: true);
        return new SetBlockStmt(line, target, filter, body);
    }

    private MacroStmt ParseMacro()
    {
        int line = Next().Line;
        string name = Expect(TokenKind.Name).Text;
        var def = new MacroDefinition(name, ParseSignature(), new List<Stmt>());
        _macroStack.Add(def);
        try
        {
            def.Body.AddRange(ParseStatements(["endmacro"], dropNeedle: true));
        }
        finally
        {
            _macroStack.RemoveAt(_macroStack.Count - 1);
        }
        return new MacroStmt(line, def);
    }

    private List<(string, Expr?)> ParseSignature()
    {
        var parameters = new List<(string, Expr?)>();
        Expect(TokenKind.Operator, "(");
        bool sawDefault = false;
        while (!Cur.IsOp(")"))
        {
            if (parameters.Count > 0) Expect(TokenKind.Operator, ",");
            string name = Expect(TokenKind.Name).Text;
            Expr? dflt = null;
            if (SkipOp("="))
            {
                dflt = ParseExpression();
                sawDefault = true;
            }
            else if (sawDefault)
            {
                throw Fail("non-default argument follows default argument");
            }
            parameters.Add((name, dflt));
        }
        Expect(TokenKind.Operator, ")");
        return parameters;
    }

    private CallBlockStmt ParseCallBlock()
    {
        int line = Next().Line;
        var parameters = Cur.IsOp("(") ? ParseSignature() : new List<(string, Expr?)>();
        var call = ParseExpression() as CallExpr ?? throw Fail("expected call", line);
        var def = new MacroDefinition("caller", parameters, new List<Stmt>());
        _macroStack.Add(def);
        try
        {
            def.Body.AddRange(ParseStatements(["endcall"], dropNeedle: true));
        }
        finally
        {
            _macroStack.RemoveAt(_macroStack.Count - 1);
        }
        return new CallBlockStmt(line, call, def);
    }

    private FilterBlockStmt ParseFilterBlock()
    {
        int line = Next().Line;
        var filter = (FilterExpr)ParseFilter(null, startInline: true)!;
        var body = ParseStatements(["endfilter"], dropNeedle: true);
        return new FilterBlockStmt(line, filter, body);
    }

    private WithStmt ParseWith()
    {
        int line = Next().Line;
        var assignments = new List<(Target, Expr)>();
        while (Cur.Kind != TokenKind.BlockEnd)
        {
            if (assignments.Count > 0) Expect(TokenKind.Operator, ",");
            var target = ParseAssignTarget();
            Expect(TokenKind.Operator, "=");
            assignments.Add((target, ParseExpression()));
        }
        var body = ParseStatements(["endwith"], dropNeedle: true);
        return new WithStmt(line, assignments, body);
    }

    private Target ParseAssignTarget(string[]? extraEnd = null, bool withNamespace = false)
    {
        if (withNamespace && Cur.Kind == TokenKind.Name && Look.IsOp("."))
        {
            string name = Next().Text;
            Next();
            string attr = Expect(TokenKind.Name).Text;
            return new NamespaceTarget(name, attr);
        }
        var expr = ParseTuple(simplified: true, extraEnd: extraEnd);
        return ToTarget(expr);
    }

    private Target ToTarget(Expr expr) => expr switch
    {
        NameExpr n when n.Name is not ("true" or "false" or "none" or "True" or "False" or "None") => new NameTarget(n.Name),
        ListExpr { IsTuple: true } t => new TupleTarget(t.Items.Select(ToTarget).ToList()),
        _ => throw Fail($"can't assign to {expr.GetType().Name.Replace("Expr", "").ToLowerInvariant()}", expr.Line),
    };

    // ---- expressions ------------------------------------------------------------------------

    private Expr ParseExpression(bool withCondExpr = true) => withCondExpr ? ParseCondExpr() : ParseOr();

    private bool IsTupleEnd(string[]? extraEnd) =>
        Cur.Kind is TokenKind.VariableEnd or TokenKind.BlockEnd or TokenKind.Eof
        || Cur.IsOp(")")
        || (extraEnd != null && Cur.Kind == TokenKind.Name && Array.IndexOf(extraEnd, Cur.Text) >= 0);

    private Expr ParseTuple(bool simplified = false, bool withCondExpr = true, string[]? extraEnd = null, bool explicitParentheses = false)
    {
        int line = Cur.Line;
        var items = new List<Expr>();
        bool isTuple = false;
        while (true)
        {
            if (items.Count > 0) Expect(TokenKind.Operator, ",");
            if (IsTupleEnd(extraEnd)) break;
            items.Add(simplified ? ParsePrimary() : ParseExpression(withCondExpr));
            if (Cur.IsOp(",")) isTuple = true;
            else break;
        }
        if (!isTuple)
        {
            if (items.Count > 0) return items[0];
            if (!explicitParentheses) throw Fail($"Expected an expression, got {Cur.Describe()}");
        }
        return new ListExpr(line, items, IsTuple: true);
    }

    private Expr ParseCondExpr()
    {
        int line = Cur.Line;
        var expr1 = ParseOr();
        while (SkipName("if"))
        {
            var test = ParseOr();
            Expr? otherwise = SkipName("else") ? ParseCondExpr() : null;
            expr1 = new CondExpr(line, test, expr1, otherwise);
            line = Cur.Line;
        }
        return expr1;
    }

    private Expr ParseOr()
    {
        var left = ParseAnd();
        while (Cur.IsName("or"))
        {
            int line = Next().Line;
            left = new BinaryExpr(line, "or", left, ParseAnd());
        }
        return left;
    }

    private Expr ParseAnd()
    {
        var left = ParseNot();
        while (Cur.IsName("and"))
        {
            int line = Next().Line;
            left = new BinaryExpr(line, "and", left, ParseNot());
        }
        return left;
    }

    private Expr ParseNot()
    {
        if (Cur.IsName("not"))
        {
            int line = Next().Line;
            return new UnaryExpr(line, "not", ParseNot());
        }
        return ParseCompare();
    }

    private Expr ParseCompare()
    {
        int line = Cur.Line;
        var expr = ParseMath1();
        var ops = new List<(string, Expr)>();
        while (true)
        {
            if (Cur.Kind == TokenKind.Operator && Cur.Text is "==" or "!=" or "<" or "<=" or ">" or ">=")
            {
                string op = Next().Text;
                ops.Add((op, ParseMath1()));
            }
            else if (SkipName("in"))
            {
                ops.Add(("in", ParseMath1()));
            }
            else if (Cur.IsName("not") && Look.IsName("in"))
            {
                Next();
                Next();
                ops.Add(("notin", ParseMath1()));
            }
            else
            {
                break;
            }
        }
        return ops.Count == 0 ? expr : new CompareExpr(line, expr, ops);
    }

    private Expr ParseMath1()
    {
        var left = ParseConcat();
        while (Cur.IsOp("+") || Cur.IsOp("-"))
        {
            var op = Next();
            left = new BinaryExpr(op.Line, op.Text, left, ParseConcat());
        }
        return left;
    }

    private Expr ParseConcat()
    {
        var left = ParseMath2();
        while (Cur.IsOp("~"))
        {
            var op = Next();
            left = new BinaryExpr(op.Line, "~", left, ParseMath2());
        }
        return left;
    }

    private Expr ParseMath2()
    {
        var left = ParsePow();
        while (Cur.Kind == TokenKind.Operator && Cur.Text is "*" or "/" or "//" or "%")
        {
            var op = Next();
            left = new BinaryExpr(op.Line, op.Text, left, ParsePow());
        }
        return left;
    }

    private Expr ParsePow()
    {
        var left = ParseUnary();
        while (Cur.IsOp("**"))
        {
            var op = Next();
            left = new BinaryExpr(op.Line, "**", left, ParseUnary());
        }
        return left;
    }

    private Expr ParseUnary(bool withFilter = true)
    {
        Expr node;
        if (Cur.IsOp("-") || Cur.IsOp("+"))
        {
            var op = Next();
            node = new UnaryExpr(op.Line, op.Text, ParseUnary(withFilter: false));
        }
        else
        {
            node = ParsePrimary();
        }
        node = ParsePostfix(node);
        if (withFilter) node = ParseFilterExpr(node);
        return node;
    }

    private Expr ParsePrimary()
    {
        var token = Cur;
        switch (token.Kind)
        {
            case TokenKind.Name:
                Next();
                switch (token.Text)
                {
                    case "true" or "True": return new ConstExpr(token.Line, true);
                    case "false" or "False": return new ConstExpr(token.Line, false);
                    case "none" or "None": return new ConstExpr(token.Line, null);
                }
                if (token.Text is "varargs" or "kwargs" or "caller")
                {
                    foreach (var m in _macroStack)
                    {
                        if (token.Text == "varargs") m.UsesVarargs = true;
                        else if (token.Text == "kwargs") m.UsesKwargs = true;
                        else m.UsesCaller = true;
                    }
                }
                return new NameExpr(token.Line, token.Text);
            case TokenKind.String:
                Next();
                string s = token.Text;
                while (Cur.Kind == TokenKind.String) s += Next().Text;
                return new ConstExpr(token.Line, s);
            case TokenKind.Integer:
            case TokenKind.Float:
                Next();
                return new ConstExpr(token.Line, token.Number);
            case TokenKind.Operator when token.Text == "(":
            {
                Next();
                var node = ParseTuple(explicitParentheses: true);
                Expect(TokenKind.Operator, ")");
                return node;
            }
            case TokenKind.Operator when token.Text == "[":
            {
                Next();
                var items = new List<Expr>();
                while (!Cur.IsOp("]"))
                {
                    if (items.Count > 0) Expect(TokenKind.Operator, ",");
                    if (Cur.IsOp("]")) break;
                    items.Add(ParseExpression());
                }
                Expect(TokenKind.Operator, "]");
                return new ListExpr(token.Line, items, IsTuple: false);
            }
            case TokenKind.Operator when token.Text == "{":
            {
                Next();
                var pairs = new List<(Expr, Expr)>();
                while (!Cur.IsOp("}"))
                {
                    if (pairs.Count > 0) Expect(TokenKind.Operator, ",");
                    if (Cur.IsOp("}")) break;
                    var key = ParseExpression();
                    Expect(TokenKind.Operator, ":");
                    pairs.Add((key, ParseExpression()));
                }
                Expect(TokenKind.Operator, "}");
                return new DictExpr(token.Line, pairs);
            }
            case TokenKind.Eof:
                throw Fail("unexpected end of template");
            default:
                throw Fail($"unexpected {token.Describe()}");
        }
    }

    private Expr ParsePostfix(Expr node)
    {
        while (true)
        {
            if (Cur.IsOp(".") || Cur.IsOp("[")) node = ParseSubscript(node);
            else if (Cur.IsOp("(")) node = new CallExpr(Cur.Line, node, ParseCallArgs());
            else return node;
        }
    }

    private Expr ParseFilterExpr(Expr node)
    {
        while (true)
        {
            if (Cur.IsOp("|")) node = ParseFilter(node, startInline: false)!;
            else if (Cur.IsName("is")) node = ParseTest(node);
            else if (Cur.IsOp("(")) node = new CallExpr(Cur.Line, node, ParseCallArgs());
            else return node;
        }
    }

    private Expr ParseSubscript(Expr node)
    {
        var token = Next();
        if (token.Text == ".")
        {
            var attr = Next();
            if (attr.Kind == TokenKind.Name) return new GetAttrExpr(token.Line, node, attr.Text);
            if (attr.Kind != TokenKind.Integer) throw Fail("expected name or number", attr.Line);
            return new GetItemExpr(token.Line, node, new ConstExpr(attr.Line, attr.Number));
        }
        var args = new List<Expr>();
        while (!Cur.IsOp("]"))
        {
            if (args.Count > 0) Expect(TokenKind.Operator, ",");
            args.Add(ParseSubscribed());
        }
        Expect(TokenKind.Operator, "]");
        var key = args.Count == 1 ? args[0] : new ListExpr(token.Line, args, IsTuple: true);
        return new GetItemExpr(token.Line, node, key);
    }

    private Expr ParseSubscribed()
    {
        int line = Cur.Line;
        Expr? start;
        if (Cur.IsOp(":"))
        {
            Next();
            start = null;
        }
        else
        {
            var node = ParseExpression();
            if (!Cur.IsOp(":")) return node;
            Next();
            start = node;
        }
        Expr? stop = null, step = null;
        if (!Cur.IsOp(":") && !Cur.IsOp("]") && !Cur.IsOp(",")) stop = ParseExpression();
        if (Cur.IsOp(":"))
        {
            Next();
            if (!Cur.IsOp("]") && !Cur.IsOp(",")) step = ParseExpression();
        }
        return new SliceExpr(line, start, stop, step);
    }

    private ArgsExpr ParseCallArgs()
    {
        Expect(TokenKind.Operator, "(");
        var args = ArgsExpr.None();
        Expr? dynArgs = null, dynKwargs = null;
        bool requireComma = false;
        while (!Cur.IsOp(")"))
        {
            if (requireComma)
            {
                Expect(TokenKind.Operator, ",");
                if (Cur.IsOp(")")) break;
            }
            if (SkipOp("*"))
            {
                dynArgs = ParseExpression();
            }
            else if (SkipOp("**"))
            {
                dynKwargs = ParseExpression();
            }
            else if (Cur.Kind == TokenKind.Name && Look.IsOp("="))
            {
                string key = Next().Text;
                Next();
                args.Named.Add((key, ParseExpression()));
            }
            else
            {
                if (dynArgs != null || dynKwargs != null || args.Named.Count > 0)
                    throw Fail("Invalid argument syntax");
                args.Positional.Add(ParseExpression());
            }
            requireComma = true;
        }
        Expect(TokenKind.Operator, ")");
        return args with { DynArgs = dynArgs, DynKwargs = dynKwargs };
    }

    private Expr? ParseFilter(Expr? node, bool startInline)
    {
        while (Cur.IsOp("|") || startInline)
        {
            if (!startInline) Next();
            var token = Expect(TokenKind.Name);
            string name = token.Text;
            while (Cur.IsOp("."))
            {
                Next();
                name += "." + Expect(TokenKind.Name).Text;
            }
            var args = Cur.IsOp("(") ? ParseCallArgs() : ArgsExpr.None();
            node = new FilterExpr(token.Line, node, name, args);
            startInline = false;
        }
        return node;
    }

    private Expr ParseTest(Expr node)
    {
        var token = Next();
        bool negated = SkipName("not");
        string name = Expect(TokenKind.Name).Text;
        while (Cur.IsOp("."))
        {
            Next();
            name += "." + Expect(TokenKind.Name).Text;
        }
        ArgsExpr args;
        if (Cur.IsOp("("))
        {
            args = ParseCallArgs();
        }
        else if ((Cur.Kind is TokenKind.Name or TokenKind.String or TokenKind.Integer or TokenKind.Float || Cur.IsOp("(") || Cur.IsOp("[") || Cur.IsOp("{"))
                 && !Cur.IsName("else") && !Cur.IsName("or") && !Cur.IsName("and"))
        {
            if (Cur.IsName("is")) throw Fail("You cannot chain multiple tests with is");
            args = ArgsExpr.None();
            args.Positional.Add(ParsePostfix(ParsePrimary()));
        }
        else
        {
            args = ArgsExpr.None();
        }
        Expr result = new TestExpr(token.Line, node, name, args);
        return negated ? new UnaryExpr(token.Line, "not", result) : result;
    }
}
