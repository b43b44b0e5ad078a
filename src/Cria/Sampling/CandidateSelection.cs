using System.Runtime.CompilerServices;
namespace Cria.Sampling;

/// <summary>
/// In-place, allocation-free partial selection of the best candidates. "Better" means a higher logit,
/// ties broken by the lower token id, which is a strict total order (logits are never NaN here), so
/// the result is fully deterministic.
/// </summary>
internal static class CandidateSelection
{
    public static bool Better(in TokenCandidate a, in TokenCandidate b) =>
        a.Logit > b.Logit || (a.Logit == b.Logit && a.Id < b.Id);

    /// <summary>
    /// Moves the <paramref name="k"/> best entries of <paramref name="items"/> to its front, sorted best
    /// first; the order of the remaining entries is unspecified. O(n log k) worst case: a min-heap of
    /// the k best seen so far is kept in <c>items[0..k)</c> and then heap-sorted.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void SelectTop(Span<TokenCandidate> items, int k)
    {
        int n = items.Length;
        if (k > n) k = n;
        if (k <= 0) return;

        // Heap whose root is the worst of the k kept entries.
        for (int i = k / 2 - 1; i >= 0; i--)
            SiftDown(items, i, k);

        // Most entries lose against the worst kept logit; test that first without touching the heap.
        float worstLogit = items[0].Logit;
        for (int i = k; i < n; i++)
        {
            float l = items[i].Logit;
            if (l < worstLogit) continue;
            if (Better(items[i], items[0]))
            {
                (items[i], items[0]) = (items[0], items[i]);
                SiftDown(items, 0, k);
                worstLogit = items[0].Logit;
            }
        }

        // Repeatedly move the worst remaining entry to the end of the shrinking heap: best first.
        for (int end = k - 1; end > 0; end--)
        {
            (items[0], items[end]) = (items[end], items[0]);
            SiftDown(items, 0, end);
        }
    }

    /// <summary>
    /// Top-p selection without a full sort. <paramref name="items"/> carry normalized probabilities in
    /// <c>P</c>, and <paramref name="accumulated"/> is the mass of better entries already kept elsewhere.
    /// Rearranges <paramref name="items"/> so that its first <c>m</c> entries are its <c>m</c> best and
    /// returns the smallest <c>m</c> with <c>accumulated + mass(best m) &gt;= target</c> (all entries if
    /// the target is never reached through rounding). The kept entries are not sorted. Expected O(n):
    /// quickselect on the candidate order, steered by the mass of the better side of each pivot.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static int SelectByMass(Span<TokenCandidate> items, double accumulated, double target)
    {
        const int SmallRange = 16;
        int lo = 0, hi = items.Length;
        // Invariant: items[0..lo) beat items[lo..), their mass plus 'accumulated' is below the target,
        // and the answer lies in (lo, hi].
        while (hi - lo > SmallRange)
        {
            int pivotIndex = MedianOfThree(items, lo, lo + (hi - lo) / 2, hi - 1);
            (items[pivotIndex], items[hi - 1]) = (items[hi - 1], items[pivotIndex]);
            TokenCandidate pivot = items[hi - 1];

            int store = lo;
            double betterMass = 0;
            for (int i = lo; i < hi - 1; i++)
            {
                if (Better(items[i], pivot))
                {
                    betterMass += items[i].P;
                    (items[i], items[store]) = (items[store], items[i]);
                    store++;
                }
            }
            (items[store], items[hi - 1]) = (items[hi - 1], items[store]);

            if (accumulated + betterMass >= target)
            {
                hi = store;
            }
            else
            {
                accumulated += betterMass + items[store].P;
                lo = store + 1;
                if (accumulated >= target) return lo;
            }
        }

        SelectTop(items[lo..hi], hi - lo);
        for (int i = lo; i < hi; i++)
        {
            accumulated += items[i].P;
            if (accumulated >= target) return i + 1;
        }
        return hi;
    }

    private static int MedianOfThree(Span<TokenCandidate> items, int a, int b, int c)
    {
        if (Better(items[b], items[a])) (a, b) = (b, a); // now a beats b
        if (Better(items[c], items[b]))
        {
            b = c;                                         // c beats b: median is the worse of a and c
            if (Better(items[b], items[a])) b = a;
        }
        return b;
    }

    private static void SiftDown(Span<TokenCandidate> heap, int i, int size)
    {
        while (true)
        {
            int left = 2 * i + 1;
            if (left >= size) return;
            int worst = left;
            int right = left + 1;
            if (right < size && Better(heap[left], heap[right])) worst = right;
            if (!Better(heap[i], heap[worst])) return;
            (heap[i], heap[worst]) = (heap[worst], heap[i]);
            i = worst;
        }
    }
}
