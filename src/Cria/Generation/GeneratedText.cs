using System.Text;
using Cria.Tokenizers;

namespace Cria.Generation;

/// <summary>
/// Turns generated tokens into text as it streams: characters split across tokens are held until
/// complete, and text that could be the beginning of a stop sequence is held until it is clear
/// whether the stop sequence follows. Once a stop sequence appears, <see cref="Stopped"/> is set and
/// nothing from the stop sequence on is ever returned.
/// </summary>
public sealed class GeneratedText
{
    private readonly StreamingDetokenizer _detokenizer;
    private readonly string[] _stops;
    private readonly int _longestStop;
    private readonly StringBuilder _pending = new();

    public GeneratedText(ITokenizer tokenizer, IReadOnlyList<string> stopSequences)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(stopSequences);
        _detokenizer = new StreamingDetokenizer(tokenizer, continuation: true);
        _stops = stopSequences.Where(s => !string.IsNullOrEmpty(s)).ToArray();
        _longestStop = _stops.Length == 0 ? 0 : _stops.Max(s => s.Length);
    }

    /// <summary>A stop sequence has appeared; append nothing more.</summary>
    public bool Stopped { get; private set; }

    /// <summary>Adds a token and returns the text that can be shown now (often empty).</summary>
    public string Append(int token)
    {
        if (Stopped) throw new InvalidOperationException("a stop sequence has already ended the text");
        string text = _detokenizer.Append(token);
        if (_stops.Length == 0) return text;
        _pending.Append(text);
        string buffered = _pending.ToString();
        int hit = FirstStop(buffered);
        if (hit >= 0)
        {
            Stopped = true;
            _pending.Clear();
            return buffered[..hit];
        }
        // Hold back the tail that could still begin a stop sequence.
        int emit = buffered.Length - Math.Min(buffered.Length, _longestStop - 1);
        if (emit == 0) return "";
        _pending.Remove(0, emit);
        return buffered[..emit];
    }

    /// <summary>The text still held back, when generation has ended (cut at a stop sequence if one completes).</summary>
    public string Flush()
    {
        if (Stopped) return "";
        string rest = _pending.ToString() + _detokenizer.Flush();
        _pending.Clear();
        int hit = FirstStop(rest);
        if (hit < 0) return rest;
        Stopped = true;
        return rest[..hit];
    }

    private int FirstStop(string text)
    {
        int best = -1;
        foreach (var s in _stops)
        {
            int i = text.IndexOf(s, StringComparison.Ordinal);
            if (i >= 0 && (best < 0 || i < best)) best = i;
        }
        return best;
    }
}
