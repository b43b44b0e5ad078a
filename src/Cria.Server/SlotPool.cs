using Cria.Generation;
using Cria.Model;

namespace Cria.Server;

/// <summary>One generation slot: a <see cref="LlamaSession"/> with its own KV cache.</summary>
internal sealed class Slot
{
    public Slot(int id, LlamaSession session)
    {
        Id = id;
        Session = session;
    }

    public int Id { get; }
    public LlamaSession Session { get; }
    public bool Busy { get; set; }
    public long LastUsed { get; set; }
}

/// <summary>All slots are busy and the queue of waiting requests is full.</summary>
internal sealed class QueueFullException : Exception
{
    public QueueFullException() : base("the server is busy: all slots are in use and the queue is full; retry later") { }
}

/// <summary>
/// The slots and a bounded FIFO queue of requests waiting for one. A request takes the free slot whose
/// cached tokens share the longest prefix with its prompt (so that prefix is not evaluated again).
/// </summary>
internal sealed class SlotPool : IDisposable
{
    private readonly object _gate = new();
    private readonly Slot[] _slots;
    private readonly LinkedList<Waiter> _queue = new();
    private readonly int _queueLimit;
    private long _clock;
    private int _active;

    private sealed class Waiter(int[] prompt)
    {
        public int[] Prompt { get; } = prompt;
        public TaskCompletionSource<Slot> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    public SlotPool(LlamaModel model, int count, ContextOptions contextOptions, int queueLimit)
    {
        _queueLimit = queueLimit;
        _slots = new Slot[count];
        try
        {
            for (int i = 0; i < count; i++) _slots[i] = new Slot(i, new LlamaSession(model, contextOptions));
        }
        catch
        {
            foreach (var s in _slots) s?.Session.Dispose();
            throw;
        }
    }

    public int Count => _slots.Length;
    public int ContextSize => _slots[0].Session.Context.ContextSize;

    public int Active { get { lock (_gate) return _active; } }
    public int QueueDepth { get { lock (_gate) return _queue.Count; } }

    /// <summary>Waits for a slot (FIFO behind earlier waiters).</summary>
    /// <exception cref="QueueFullException">no slot is free and <c>queueLimit</c> requests already wait</exception>
    /// <exception cref="OperationCanceledException">cancelled while waiting</exception>
    public async Task<Slot> AcquireAsync(int[] prompt, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Waiter waiter;
        LinkedListNode<Waiter> node;
        lock (_gate)
        {
            if (_queue.Count == 0 && BestFree(prompt) is { } free)
            {
                Take(free);
                return free;
            }
            if (_queue.Count >= _queueLimit) throw new QueueFullException();
            waiter = new Waiter(prompt);
            node = _queue.AddLast(waiter);
        }
        // A waiter leaves the queue either through Release (result set under the lock) or through
        // cancellation (removed under the lock), never both.
        using var registration = cancellationToken.Register(() =>
        {
            lock (_gate)
            {
                if (node.List is null) return;
                _queue.Remove(node);
                waiter.Completion.TrySetCanceled(cancellationToken);
            }
        });
        return await waiter.Completion.Task.ConfigureAwait(false);
    }

    /// <summary>Returns a slot; the first waiter (if any) gets it.</summary>
    public void Release(Slot slot)
    {
        lock (_gate)
        {
            if (!slot.Busy) throw new InvalidOperationException("slot released twice");
            slot.LastUsed = ++_clock;
            if (_queue.First is { } first)
            {
                _queue.RemoveFirst();
                first.Value.Completion.TrySetResult(slot); // still busy: handed over
                return;
            }
            slot.Busy = false;
            _active--;
        }
    }

    private void Take(Slot slot)
    {
        slot.Busy = true;
        _active++;
    }

    private Slot? BestFree(int[] prompt)
    {
        Slot? best = null;
        int bestCommon = -1;
        foreach (var s in _slots)
        {
            if (s.Busy) continue;
            int common = CommonPrefix(s.Session.Tokens, prompt);
            if (common > bestCommon || (common == bestCommon && best != null && s.LastUsed < best.LastUsed))
            {
                best = s;
                bestCommon = common;
            }
        }
        return best;
    }

    internal static int CommonPrefix(IReadOnlyList<int> cached, int[] prompt)
    {
        int n = Math.Min(cached.Count, prompt.Length), i = 0;
        while (i < n && cached[i] == prompt[i]) i++;
        return i;
    }

    public void Dispose()
    {
        foreach (var s in _slots) s.Session.Dispose();
    }
}
