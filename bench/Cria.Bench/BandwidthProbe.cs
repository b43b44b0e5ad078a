using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Cria.Bench;

/// <summary>
/// Measures read bandwidth: <c>threads</c> threads each stream their slice of a memory region with 256-bit
/// loads (and software prefetches) and nothing else. The region is either a 1 GiB buffer of our own (larger than any L3 cache) or
/// memory the caller owns, such as the model's mapped weights: the same pages, with the same page sizes,
/// that decode streams. Each <see cref="Pass"/> reads the region once and returns bytes per second.
/// </summary>
internal sealed unsafe class BandwidthProbe : IDisposable
{
    private const int PrefetchAhead = 4096;
    private readonly int _threads;
    private readonly long _size;
    private readonly bool _owned;
    private byte* _buffer;

    /// <summary>A probe over a 1 GiB buffer of its own (allocated and touched now, freed by Dispose).</summary>
    public BandwidthProbe(int threads)
    {
        _threads = threads;
        _size = 1L << 30;
        _owned = true;
        _buffer = (byte*)NativeMemory.AlignedAlloc((nuint)_size, 4096);
        for (long o = 0; o < _size; o += 1 << 28) new Span<byte>(_buffer + o, 1 << 28).Fill(1); // touch every page before timing
    }

    /// <summary>A probe over <paramref name="length"/> bytes at <paramref name="region"/>, which the caller keeps alive.</summary>
    public BandwidthProbe(int threads, byte* region, long length)
    {
        _threads = threads;
        _size = length;
        _buffer = region;
    }

    public static string Describe(int threads) => $"{threads} threads streaming a 1 GiB buffer, prefetching 4 KiB ahead";

    /// <summary>One pass over the buffer; bytes per second.</summary>
    public double Pass()
    {
        ObjectDisposedException.ThrowIf(_buffer == null, this);
        long slice = _size / _threads & ~4095L;
        using var start = new Barrier(_threads + 1);
        var workers = new Thread[_threads];
        long sink = 0;
        for (int t = 0; t < _threads; t++)
        {
            byte* from = _buffer + t * slice;
            workers[t] = new Thread(() =>
            {
                start.SignalAndWait();
                var acc = Vector256<long>.Zero;
                // Software prefetch 4 KiB ahead, as the decode kernels prefetch: a plain loop read 3-8 % less
                // (23.4-23.8 against 24.1-25.8 GB/s, medians of 8 passes over 1 GiB, 2026-11-28), and the
                // yardstick should be the fastest plain read, not one decode can beat.
                for (long i = 0; i < slice; i += 128)
                {
                    if (Sse.IsSupported) { Sse.Prefetch0(from + i + PrefetchAhead); Sse.Prefetch0(from + i + PrefetchAhead + 64); }
                    acc += Vector256.Load((long*)(from + i)) + Vector256.Load((long*)(from + i + 32))
                         + Vector256.Load((long*)(from + i + 64)) + Vector256.Load((long*)(from + i + 96));
                }
                Interlocked.Add(ref sink, Vector256.Sum(acc));
            });
            workers[t].Start();
        }
        start.SignalAndWait();
        var sw = Stopwatch.StartNew();
        foreach (var w in workers) w.Join();
        double seconds = sw.Elapsed.TotalSeconds;
        if (sink == 42) Console.Write(""); // keep the reads
        return slice * _threads / seconds;
    }

    public void Dispose()
    {
        if (_buffer == null) return;
        if (_owned) NativeMemory.AlignedFree(_buffer);
        _buffer = null;
    }
}
