using System.Diagnostics;
using Cria.Numerics.Threading;
using Xunit;
using Xunit.Abstractions;

namespace Cria.Tests.Numerics;

public class WorkerPoolTests
{
    private readonly ITestOutputHelper _output;

    public WorkerPoolTests(ITestOutputHelper output) => _output = output;

    private sealed class CountingJob : IParallelJob
    {
        public int[] Hits = Array.Empty<int>();
        public int ThreadCount;
        public int BadThreadIndex;
        public int BadRange;

        public void Execute(int start, int end, int threadIndex)
        {
            if (threadIndex < 0 || threadIndex >= ThreadCount) Interlocked.Increment(ref BadThreadIndex);
            if (start < 0 || end > Hits.Length || start >= end) Interlocked.Increment(ref BadRange);
            for (int i = start; i < end; i++) Interlocked.Increment(ref Hits[i]);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(5)]
    public void Run_CoversEveryItemExactlyOnce(int threads)
    {
        using var pool = new WorkerPool(threads);
        Assert.Equal(threads, pool.ThreadCount);
        foreach (int count in new[] { 0, 1, 2, 3, 4, 7, 16, 100, 1001, 65536 })
        {
            var job = new CountingJob { Hits = new int[count], ThreadCount = threads };
            pool.Run(job, count);
            Assert.All(job.Hits, h => Assert.Equal(1, h));
            Assert.Equal(0, job.BadThreadIndex);
            Assert.Equal(0, job.BadRange);
        }
    }

    [Theory]
    [InlineData(1, 2)]
    [InlineData(7, 2)]
    [InlineData(128, 2)]
    [InlineData(1001, 4)]
    [InlineData(65536, 10)]
    public void GuidedChunks_StartLarge_ShrinkToSingleItems_AndCoverTheRun(int count, int share)
    {
        var chunks = new List<int>();
        for (int done = 0; done < count;)
        {
            int c = WorkerPool.GuidedChunk(count - done, share);
            Assert.InRange(c, 1, count - done);
            chunks.Add(c);
            done += c;
        }
        Assert.Equal(count, chunks.Sum());
        Assert.Equal(Math.Max(1, count / share), chunks[0]);                   // a share of the whole run first
        for (int i = 1; i < chunks.Count; i++) Assert.True(chunks[i] <= chunks[i - 1], $"chunk {i} grew");
        Assert.Equal(1, chunks[^1]);                                            // the run ends in single items
        // While at least `share` items remain each claim takes ⌊remaining/share⌋ ≥ remaining/(2·share) of them, so
        // remaining shrinks by a factor ≤ 1 − 1/(2·share) per claim: at most 2·share·ln(count) + 1 claims get it
        // below share, then at most share − 1 single items follow.
        Assert.True(chunks.Count <= 2 * share * Math.Log(Math.Max(count, 1)) + share, $"{chunks.Count} chunks for {count} items");
    }

    private sealed class ThreadRecordingJob : IParallelJob
    {
        public readonly int[] ByThread = new int[8];
        public void Execute(int start, int end, int threadIndex)
        {
            Interlocked.Add(ref ByThread[threadIndex], end - start);
            Thread.SpinWait(20000); // long enough that every thread gets a share
        }
    }

    [Fact]
    public void Run_UsesAllThreads_WithTheCallerAsThreadZero()
    {
        using var pool = new WorkerPool(3);
        var job = new ThreadRecordingJob();
        for (int i = 0; i < 10; i++) pool.Run(job, 48);
        Assert.Equal(480, job.ByThread.Sum());
        Assert.True(job.ByThread[0] > 0, "the calling thread takes part");
        Assert.True(job.ByThread[1] > 0 && job.ByThread[2] > 0, "workers take part");
    }

    private sealed class ThrowingJob : IParallelJob
    {
        public int Executed;
        public void Execute(int start, int end, int threadIndex)
        {
            Interlocked.Add(ref Executed, end - start);
            if (start <= 5 && 5 < end) throw new InvalidDataException("boom at 5");
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void Run_RethrowsJobExceptions_AndStaysUsable(int threads)
    {
        using var pool = new WorkerPool(threads);
        var e = Assert.Throws<InvalidDataException>(() => pool.Run(new ThrowingJob(), 1000));
        Assert.Equal("boom at 5", e.Message);
        Assert.Contains(nameof(ThrowingJob), e.StackTrace); // original stack kept

        var job = new CountingJob { Hits = new int[500], ThreadCount = threads };
        pool.Run(job, 500);
        Assert.All(job.Hits, h => Assert.Equal(1, h));
    }

    private sealed class SumJob : IParallelJob
    {
        public long Sum;
        public void Execute(int start, int end, int threadIndex)
        {
            long s = 0;
            for (int i = start; i < end; i++) s += i;
            Interlocked.Add(ref Sum, s);
        }
    }

    [Theory]
    [InlineData(200)] // default: spin, then block
    [InlineData(0)]   // block right away: exercises the sleeping hand-off on every run
    public void ManyBackToBackRuns_AllComplete(int spinMicroseconds)
    {
        using var pool = new WorkerPool(3) { SpinMicroseconds = spinMicroseconds };
        var job = new SumJob();
        const int runs = 20000;
        var sw = Stopwatch.StartNew();
        for (int r = 0; r < runs; r++) pool.Run(job, 64);
        sw.Stop();
        Assert.Equal(runs * (63L * 64 / 2), job.Sum);
        _output.WriteLine($"spin {spinMicroseconds} µs: {sw.Elapsed.TotalMicroseconds / runs:F2} µs per run");
    }

    [Fact]
    public void Runs_AfterIdlePauses_StillWakeTheWorkers()
    {
        using var pool = new WorkerPool(2) { SpinMicroseconds = 50 };
        var job = new SumJob();
        for (int r = 0; r < 5; r++)
        {
            Thread.Sleep(20); // workers are asleep by now
            pool.Run(job, 1000);
        }
        Assert.Equal(5 * (999L * 1000 / 2), job.Sum);
    }

    [Fact]
    public void Run_DoesNotAllocate()
    {
        using var pool = new WorkerPool(3);
        var job = new SumJob();
        for (int r = 0; r < 100; r++) pool.Run(job, 64);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int r = 0; r < 1000; r++) pool.Run(job, 64);
        Assert.Equal(before, GC.GetAllocatedBytesForCurrentThread());
    }

    private sealed class NestedJob(WorkerPool pool) : IParallelJob
    {
        public void Execute(int start, int end, int threadIndex) => pool.Run(new SumJob(), 10);
    }

    [Fact]
    public void NestedRun_IsRejected()
    {
        using var pool = new WorkerPool(2);
        Assert.Throws<InvalidOperationException>(() => pool.Run(new NestedJob(pool), 4));
    }

    [Fact]
    public void Dispose_StopsThreads_AndRunAfterwardsThrows()
    {
        var pool = new WorkerPool(4);
        pool.Run(new SumJob(), 100);
        pool.Dispose();
        pool.Dispose(); // idempotent
        Assert.Throws<ObjectDisposedException>(() => pool.Run(new SumJob(), 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => new WorkerPool(0));
    }

    [Fact]
    public void DefaultThreadCount_IsPhysicalCoresWithinLimits()
    {
        int n = WorkerPool.DefaultThreadCount;
        Assert.InRange(n, 1, Environment.ProcessorCount);
        _output.WriteLine($"DefaultThreadCount = {n}, ProcessorCount = {Environment.ProcessorCount}");
    }
}
