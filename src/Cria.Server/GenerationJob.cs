using System.Threading.Channels;
using Cria.Generation;
using Cria.Sampling;

namespace Cria.Server;

/// <summary>Text produced by one step of a generation, with the chosen token's log-probabilities when asked for.</summary>
internal readonly record struct GeneratedPiece(string Text, TokenLogprob? Logprob);

/// <summary>
/// One request's generation as the <see cref="GenerationScheduler"/> runs it: the step-wise generator on
/// the request's slot, the text assembly (stop sequences), and the channel the HTTP handler reads.
/// </summary>
internal sealed class GenerationJob
{
    private readonly Channel<GeneratedPiece> _output =
        Channel.CreateUnbounded<GeneratedPiece>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
    private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <param name="topLogprobs">-1: no log-probabilities; otherwise how many alternatives to list per token</param>
    public GenerationJob(TokenGenerator generator, GeneratedText text, int topLogprobs, CancellationToken cancellationToken)
    {
        Generator = generator;
        Text = text;
        TopLogprobs = topLogprobs;
        CancellationToken = cancellationToken;
    }

    public TokenGenerator Generator { get; }
    public GeneratedText Text { get; }
    public int TopLogprobs { get; }
    public CancellationToken CancellationToken { get; }
    public ChannelReader<GeneratedPiece> Output => _output.Reader;
    /// <summary>Completes when the scheduler no longer uses the slot's context (the slot may then be released).</summary>
    public Task Done => _done.Task;
    /// <summary>Final statistics, once <see cref="Done"/>.</summary>
    public GenerationStats? Stats { get; private set; }

    /// <summary>Turns the token the last step sampled (if any) into output; ends the job's generation at a stop sequence.</summary>
    public void EmitNewToken()
    {
        int token = Generator.NewToken;
        if (token < 0) return;
        string text = Text.Append(token);
        TokenLogprob? logprob = TopLogprobs >= 0
            ? TokenLogprobs.Compute(Generator.Session.Context.LastLogits, token, TopLogprobs)
            : null;
        if (text.Length > 0 || logprob != null) _output.Writer.TryWrite(new GeneratedPiece(text, logprob));
        if (Text.Stopped) Generator.Finish(StopReason.StopSequence);
    }

    /// <summary>Ends the job: flushes held-back text and closes the output.</summary>
    public void Complete(Exception? error = null)
    {
        try
        {
            if (error is null)
            {
                string rest = Text.Stopped ? "" : Text.Flush();
                if (rest.Length > 0) _output.Writer.TryWrite(new GeneratedPiece(rest, null));
            }
            Generator.Finish(StopReason.Cancelled); // no-op unless something ended it early
            Stats = Text.Stopped ? Generator.Stats with { StopReason = StopReason.StopSequence } : Generator.Stats;
        }
        catch (Exception e)
        {
            error ??= e;
        }
        _output.Writer.TryComplete(error);
        _done.TrySetResult();
    }
}
