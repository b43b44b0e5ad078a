namespace Cria.Chat.Jinja;

/// <summary>
/// A Python dict: keys in insertion order (the order <c>tojson</c> and <c>items</c> follow), looked up
/// with Python's key equality (1, 1.0 and True are the same key).
/// </summary>
internal sealed class PyDict
{
    private readonly List<object?> _keys = new();
    private readonly List<object?> _values = new();
    private readonly Dictionary<object, int> _index = new();

    public int Count => _keys.Count;
    public IReadOnlyList<object?> Keys => _keys;
    public IReadOnlyList<object?> Values => _values;

    public IEnumerable<KeyValuePair<object?, object?>> Pairs
    {
        get
        {
            for (int i = 0; i < _keys.Count; i++) yield return new(_keys[i], _values[i]);
        }
    }

    public void Set(object? key, object? value)
    {
        object h = HashKey(key);
        if (_index.TryGetValue(h, out int i))
        {
            _values[i] = value;
            return;
        }
        _index[h] = _keys.Count;
        _keys.Add(key);
        _values.Add(value);
    }

    public bool TryGet(object? key, out object? value)
    {
        if (TryHashKey(key, out object? h) && _index.TryGetValue(h!, out int i))
        {
            value = _values[i];
            return true;
        }
        value = null;
        return false;
    }

    public bool ContainsKey(object? key) => TryGet(key, out _);

    public PyDict Copy()
    {
        var d = new PyDict();
        for (int i = 0; i < _keys.Count; i++) d.Set(_keys[i], _values[i]);
        return d;
    }

    private static readonly object NoneKey = new();

    private static object HashKey(object? key) =>
        TryHashKey(key, out object? h) ? h! : throw ChatTemplateException.Type($"unhashable type: '{PyValue.TypeName(key)}'");

    /// <summary>A key that compares the way Python hashes: bool and integral floats fold onto ints.</summary>
    private static bool TryHashKey(object? key, out object? hashKey)
    {
        switch (key)
        {
            case null: hashKey = NoneKey; return true;
            case string s: hashKey = s; return true;
            case bool b: hashKey = b ? 1L : 0L; return true;
            case long l: hashKey = l; return true;
            case double d:
                hashKey = d == Math.Floor(d) && Math.Abs(d) < 9.2e18 ? (object)(long)d : d;
                return true;
            case PyList { IsTuple: true } t:
                var parts = new List<object?>();
                foreach (var item in t.Items)
                {
                    if (!TryHashKey(item, out object? p)) { hashKey = null; return false; }
                    parts.Add(p);
                }
                hashKey = new TupleKey(parts);
                return true;
            default:
                hashKey = null;
                return false;
        }
    }

    private sealed class TupleKey(List<object?> parts)
    {
        private readonly List<object?> _parts = parts;

        public override bool Equals(object? obj) =>
            obj is TupleKey o && o._parts.Count == _parts.Count && _parts.Zip(o._parts).All(p => Equals(p.First, p.Second));

        public override int GetHashCode()
        {
            var h = new HashCode();
            foreach (var p in _parts) h.Add(p);
            return h.ToHashCode();
        }
    }
}
