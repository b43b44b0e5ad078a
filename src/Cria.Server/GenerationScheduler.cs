using Cria.Generation;
using Cria.Model;

namespace Cria.Server;

/// <summary>
/// The server's compute loop (continuous batching), on one dedicated thread: each round it evaluates
/// a chunk of every new request's prompt, then advances every generating request by one token in a
/// single batched forward pass (<see cref="BatchedGeneration"/>). Requests join and leave between
/// rounds; a cancelled request (client gone) is dropped at the next round, freeing its slot.
/// Other model work (embeddings) runs between rounds through <see cref="RunAsync{T}"/>.
/// </summary>
internal sealed class GenerationScheduler : IDisposable
{
    private readonly object _gate = new();
    private readonly List<GenerationJob> _incoming = new();
    private readonly List<Action> _work = new();
    private readonly List<GenerationJob> _active = new();
    private readonly List<TokenGenerator> _generators = new();
    private readonly List<GenerationJob> _stepped = new();
    private readonly BatchedGeneration _batch;
    private readonly int _promptChunk;
    private readonly Action<string>? _log;
    private readonly ServerMetrics _metrics;
    private readonly Thread _thread;
    private bool _stopping;

    /// <param name="capacity">most requests generating at once (the slot count)</param>
    /// <param name="promptChunk">most prompt tokens of one request evaluated per round, so long prompts do not stall the others</param>
    public GenerationScheduler(int capacity, int promptChunk, ServerMetrics metrics, Action<string>? log)
    {
        _metrics = metrics;
        _batch = new BatchedGeneration(capacity);
        _promptChunk = promptChunk;
        _log = log;
        _thread = new Thread(Loop) { IsBackground = true, Name = "cria-scheduler" };
        _thread.Start();
    }

    /// <summary>Requests generating right now.</summary>
    public int Generating { get { lock (_gate) return _active.Count + _incoming.Count; } }

    /// <summary>Hands a job to the loop; its output appears on <see cref="GenerationJob.Output"/>.</summary>
    public void Submit(GenerationJob job)
    {
        lock (_gate)
        {
            if (_stopping) throw new OperationCanceledException("the server is stopping");
            _incoming.Add(job);
            Monitor.Pulse(_gate);
        }
        // Wake the loop when the client goes away, so the slot is freed without waiting for a step.
        job.CancellationToken.Register(Wake);
    }

    /// <summary>Runs model work on the compute thread between rounds.</summary>
    public Task<T> RunAsync<T>(Func<T> work)
    {
        var completion = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            if (_stopping) throw new OperationCanceledException("the server is stopping");
            _work.Add(() =>
            {
                try { completion.TrySetResult(work()); }
                catch (Exception e) { completion.TrySetException(e); }
            });
            Monitor.Pulse(_gate);
        }
        return completion.Task;
    }

    private void Wake()
    {
        lock (_gate) Monitor.Pulse(_gate);
    }

    private void Loop()
    {
        var work = new List<Action>();
        while (true)
        {
            lock (_gate)
            {
                while (!_stopping && _incoming.Count == 0 && _work.Count == 0 && _active.Count == 0)
                    Monitor.Wait(_gate);
                if (_stopping) break;
                _active.AddRange(_incoming);
                _incoming.Clear();
                work.AddRange(_work);
                _work.Clear();
            }
            foreach (var w in work) w();
            work.Clear();
            try
            {
                Round();
            }
            catch (Exception e)
            {
                // A failure of the batched step: every request in it fails; the loop goes on.
                _log?.Invoke($"error: generation step failed: {e.GetType().Name}: {e.Message}");
                foreach (var job in _active) job.Complete(e);
                _active.Clear();
            }
        }
        // Stopping: end whatever is still running or waiting.
        lock (_gate)
        {
            _active.AddRange(_incoming);
            _incoming.Clear();
            work.AddRange(_work);
            _work.Clear();
        }
        var stopped = new OperationCanceledException("the server is stopping");
        foreach (var job in _active) job.Complete(stopped);
        _active.Clear();
        foreach (var w in work) w(); // pending work still completes its caller
    }

    private void Round()
    {
        // Cancelled requests end first (their slot is released by the request once Done completes).
        for (int i = _active.Count - 1; i >= 0; i--)
        {
            var job = _active[i];
            if (job.CancellationToken.IsCancellationRequested) job.Generator.Finish(StopReason.Cancelled);
        }

        // A chunk of each new request's prompt; the first token is sampled after the last chunk.
        foreach (var job in _active)
        {
            if (job.Generator.Phase != GenerationPhase.Prompt) continue;
            try
            {
                job.Generator.EvaluatePrompt(_promptChunk);
                if (job.Generator.Phase == GenerationPhase.Prompt) continue;
                if (job.Generator.NewToken >= 0) _metrics.TokensGenerated(1);
                job.EmitNewToken();
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                job.Generator.Finish(StopReason.Cancelled);
                job.Complete(e);
            }
        }

        // One decode step of every generating request, together.
        _generators.Clear();
        _stepped.Clear();
        foreach (var job in _active)
        {
            if (job.Generator.Phase != GenerationPhase.Decode || job.Done.IsCompleted) continue;
            _generators.Add(job.Generator);
            _stepped.Add(job);
        }
        if (_generators.Count > 0)
        {
            _batch.Step(_generators);
            _metrics.DecodeStep(_generators.Count);
            int emitted = 0;
            foreach (var job in _stepped)
            {
                if (job.Generator.NewToken >= 0) emitted++;
                job.EmitNewToken();
            }
            _metrics.TokensGenerated(emitted);
        }

        for (int i = _active.Count - 1; i >= 0; i--)
        {
            var job = _active[i];
            if (job.Done.IsCompleted) { _active.RemoveAt(i); continue; }
            if (!job.Generator.IsFinished) continue;
            job.Complete();
            _active.RemoveAt(i);
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _stopping = true;
            Monitor.PulseAll(_gate);
        }
        if (Thread.CurrentThread != _thread) _thread.Join();
    }
}
