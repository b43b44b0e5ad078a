using System.Diagnostics;
using System.Runtime.ExceptionServices;

namespace Cria.Numerics.Threading;

/// <summary>A unit of parallel work: process items [start, end) on thread <paramref name="threadIndex"/>.</summary>
public interface IParallelJob
{
    /// <summary>
    /// Processes items [start, end). Called possibly several times per run and per thread, with
    /// disjoint ranges; threadIndex is in [0, ThreadCount) and identifies the calling thread
    /// (0 = the thread that called <see cref="WorkerPool.Run"/>), so per-thread scratch can be indexed by it.
    /// </summary>
    void Execute(int start, int end, int threadIndex);
}

/// <summary>
/// A persistent pool of worker threads for data-parallel kernels. <see cref="Run"/> splits
/// [0, itemCount) into contiguous chunks handed out through an atomic counter, each a share of
/// what is left (guided scheduling: large chunks first, single items at the end, so the threads
/// finish together); the calling thread works too, and Run returns when every item is done. After a run, workers spin for a short
/// while (about <see cref="SpinMicroseconds"/>) before blocking, so the back-to-back runs of a
/// decode step start without a kernel wake-up. Run allocates nothing. Exceptions thrown by a job
/// are rethrown on the caller (the first one; the remaining chunks are skipped).
/// One Run at a time: the pool is not re-entrant and not meant for concurrent callers.
/// </summary>
public sealed class WorkerPool : IDisposable
{
    private readonly Thread[] _threads;
    private readonly object _wakeLock = new();
    private readonly object _doneLock = new();

    // Current run (written by Run before the generation bump, read by workers after it).
    private IParallelJob? _job;
    private int _itemCount;
    private int _next;               // next unclaimed item
    private int _pendingWorkers;     // workers that have not finished the current run
    private Exception? _error;

    private volatile int _generation; // bumped once per run
    private int _sleepingWorkers;
    private int _callerWaiting;
    private int _running;
    private volatile bool _disposed;

    /// <param name="threadCount">threads including the caller's (1 = run everything inline).</param>
    public WorkerPool(int threadCount)
    {
        if (threadCount < 1) throw new ArgumentOutOfRangeException(nameof(threadCount), threadCount, "need at least one thread");
        ThreadCount = threadCount;
        _threads = new Thread[threadCount - 1];
        for (int i = 0; i < _threads.Length; i++)
        {
            int index = i + 1;
            _threads[i] = new Thread(() => WorkerLoop(index))
            {
                IsBackground = true,
                Name = $"Cria worker {index}",
            };
            _threads[i].Start();
        }
    }

    /// <summary>Total threads taking part in a run, the caller included.</summary>
    public int ThreadCount { get; }

    /// <summary>How long idle workers (and a waiting caller) spin before blocking. Default 200 µs.</summary>
    public int SpinMicroseconds { get; set; } = 200;

    /// <summary>
    /// Runs <paramref name="job"/> over items [0, itemCount) on all threads and waits for it.
    /// </summary>
    public void Run(IParallelJob job, int itemCount)
    {
        ArgumentNullException.ThrowIfNull(job);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (itemCount <= 0) return;
        if (Interlocked.Exchange(ref _running, 1) != 0)
            throw new InvalidOperationException("WorkerPool.Run is already running (the pool is not re-entrant)");
        try
        {
            if (_threads.Length == 0 || itemCount == 1)
            {
                job.Execute(0, itemCount, 0);
                return;
            }

            _job = job;
            _itemCount = itemCount;
            _next = 0;
            _error = null;
            _pendingWorkers = _threads.Length;
            Interlocked.Increment(ref _generation); // publishes the fields above (full fence)
            if (Volatile.Read(ref _sleepingWorkers) != 0)
                lock (_wakeLock) Monitor.PulseAll(_wakeLock);

            WorkOnCurrent(0);
            WaitForWorkers();
            _job = null;
            Exception? error = _error;
            _error = null;
            if (error != null) ExceptionDispatchInfo.Capture(error).Throw();
        }
        finally
        {
            Volatile.Write(ref _running, 0);
        }
    }

    private void WorkOnCurrent(int threadIndex)
    {
        IParallelJob job = _job!;
        int count = _itemCount, share = 2 * ThreadCount;
        while (true)
        {
            int start = Volatile.Read(ref _next);
            if (start >= count) break;
            int end = start + GuidedChunk(count - start, share);
            if (Interlocked.CompareExchange(ref _next, end, start) != start) continue; // another thread took it first
            try
            {
                job.Execute(start, end, threadIndex);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _error, e, null);
                Volatile.Write(ref _next, count); // stop handing out chunks
                break;
            }
        }
    }

    /// <summary>
    /// Items to claim when <paramref name="remaining"/> are left: 1/<paramref name="share"/> of them (share is twice the
    /// thread count), at least one. Large first chunks keep each thread streaming contiguous memory; the chunks shrink
    /// as the run ends, so the last one to finish waits for at most one small chunk of another thread. (Fixed chunks of
    /// an eighth of a decode product left a thread idle for half of one of them, on average, at every product.)
    /// </summary>
    internal static int GuidedChunk(int remaining, int share) => Math.Max(1, remaining / share);

    private void WaitForWorkers()
    {
        if (Volatile.Read(ref _pendingWorkers) == 0) return;
        long deadline = Stopwatch.GetTimestamp() + SpinTicks();
        int spins = 0;
        while (Volatile.Read(ref _pendingWorkers) != 0)
        {
            Thread.SpinWait(8);
            if ((++spins & 63) == 0 && Stopwatch.GetTimestamp() > deadline)
            {
                lock (_doneLock)
                {
                    Interlocked.Exchange(ref _callerWaiting, 1);
                    while (Volatile.Read(ref _pendingWorkers) != 0) Monitor.Wait(_doneLock);
                    Volatile.Write(ref _callerWaiting, 0);
                }
                return;
            }
        }
    }

    private void WorkerLoop(int index)
    {
        int seen = 0;
        while (true)
        {
            // Wait for the next run: spin first, then block.
            if (_generation == seen)
            {
                long deadline = Stopwatch.GetTimestamp() + SpinTicks();
                int spins = 0;
                while (_generation == seen && !_disposed)
                {
                    Thread.SpinWait(8);
                    if ((++spins & 63) == 0 && Stopwatch.GetTimestamp() > deadline) break;
                }
                if (_generation == seen && !_disposed)
                {
                    lock (_wakeLock)
                    {
                        Interlocked.Increment(ref _sleepingWorkers);
                        while (_generation == seen && !_disposed) Monitor.Wait(_wakeLock);
                        Interlocked.Decrement(ref _sleepingWorkers);
                    }
                }
            }
            if (_disposed) return;
            seen = _generation;

            WorkOnCurrent(index);

            if (Interlocked.Decrement(ref _pendingWorkers) == 0 && Volatile.Read(ref _callerWaiting) != 0)
                lock (_doneLock) Monitor.PulseAll(_doneLock);
        }
    }

    private long SpinTicks() => (long)SpinMicroseconds * Stopwatch.Frequency / 1_000_000;

    /// <summary>Stops the worker threads (waits for them to exit).</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        lock (_wakeLock) Monitor.PulseAll(_wakeLock);
        foreach (var t in _threads) t.Join();
    }

    /// <summary>
    /// Physical core count (what llama.cpp uses by default): on Linux the distinct
    /// (package, core) pairs of the online CPUs this process may run on, from sysfs (or
    /// /proc/cpuinfo); elsewhere, or when that fails, <see cref="Environment.ProcessorCount"/>.
    /// Never more than ProcessorCount (which honours affinity and container CPU limits).
    /// </summary>
    public static int DefaultThreadCount { get; } = DetectPhysicalCores();

    private static int DetectPhysicalCores()
    {
        int logical = Environment.ProcessorCount;
        try
        {
            if (OperatingSystem.IsLinux())
            {
                int cores = CountCoresSysfs();
                if (cores <= 0) cores = CountCoresCpuinfo();
                if (cores > 0) return Math.Max(1, Math.Min(cores, logical));
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
        }
        return Math.Max(1, logical);
    }

    private static int CountCoresSysfs()
    {
        const string root = "/sys/devices/system/cpu";
        if (!Directory.Exists(root)) return 0;
        var cores = new HashSet<(int, int)>();
        foreach (string dir in Directory.EnumerateDirectories(root, "cpu*"))
        {
            string name = Path.GetFileName(dir);
            if (name.Length <= 3 || !int.TryParse(name.AsSpan(3), out _)) continue;
            string online = Path.Combine(dir, "online");
            if (File.Exists(online) && File.ReadAllText(online).Trim() == "0") continue;
            string coreFile = Path.Combine(dir, "topology", "core_id");
            string packageFile = Path.Combine(dir, "topology", "physical_package_id");
            if (!File.Exists(coreFile)) continue;
            int core = int.Parse(File.ReadAllText(coreFile).Trim());
            int package = File.Exists(packageFile) ? int.Parse(File.ReadAllText(packageFile).Trim()) : 0;
            cores.Add((package, core));
        }
        return cores.Count;
    }

    private static int CountCoresCpuinfo()
    {
        const string path = "/proc/cpuinfo";
        if (!File.Exists(path)) return 0;
        var cores = new HashSet<(int, int)>();
        int physical = 0, core = -1;
        foreach (string line in File.ReadLines(path))
        {
            int colon = line.IndexOf(':');
            if (line.Length == 0)
            {
                if (core >= 0) cores.Add((physical, core));
                physical = 0; core = -1;
                continue;
            }
            if (colon < 0) continue;
            string key = line[..colon].Trim();
            if (key == "physical id") physical = int.Parse(line[(colon + 1)..].Trim());
            else if (key == "core id") core = int.Parse(line[(colon + 1)..].Trim());
        }
        if (core >= 0) cores.Add((physical, core));
        return cores.Count;
    }
}
