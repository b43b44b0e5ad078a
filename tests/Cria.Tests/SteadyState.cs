using Xunit;

namespace Cria.Tests;

/// <summary>Checks that code allocates nothing once warm.</summary>
public static class SteadyState
{
    /// <summary>
    /// Runs <paramref name="work"/> up to <paramref name="rounds"/> times and asserts that a round
    /// allocated nothing on this thread. Only the first rounds may allocate: the runtime's own
    /// one-time work (a method compiled again at a higher tier while the suite keeps other cores busy,
    /// a type initialised on a path first taken here) can land in a round, but code that allocates on
    /// every call allocates in every round and fails.
    /// </summary>
    public static void AllocatesNothing(Action work, int rounds = 3)
    {
        var allocated = new List<long>();
        for (int r = 0; r < rounds; r++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            work();
            long bytes = GC.GetAllocatedBytesForCurrentThread() - before;
            if (bytes == 0) return;
            allocated.Add(bytes);
        }
        Assert.Fail($"every round allocated: {string.Join(", ", allocated)} bytes");
    }
}
