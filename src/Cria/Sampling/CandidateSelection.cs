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
    public static void SelectTop(Span<TokenCandidate> items, int k)
    {
        int n = items.Length;
        if (k > n) k = n;
        if (k <= 0) return;

        // Heap whose root is the worst of the k kept entries.
        for (int i = k / 2 - 1; i >= 0; i--)
            SiftDown(items, i, k);

        for (int i = k; i < n; i++)
        {
            if (Better(items[i], items[0]))
            {
                (items[i], items[0]) = (items[0], items[i]);
                SiftDown(items, 0, k);
            }
        }

        // Repeatedly move the worst remaining entry to the end of the shrinking heap: best first.
        for (int end = k - 1; end > 0; end--)
        {
            (items[0], items[end]) = (items[end], items[0]);
            SiftDown(items, 0, end);
        }
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
