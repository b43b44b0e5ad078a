using System.Diagnostics;
using Cria.Gguf;
using Cria.Numerics.Threading;
using Cria.Tokenizers;

namespace Cria.Model;

/// <summary>Options for loading a model.</summary>
public sealed record ModelOptions
{
    /// <summary>Threads for matrix products (including the caller). Default: physical cores.</summary>
    public int Threads { get; init; } = WorkerPool.DefaultThreadCount;

    /// <summary>
    /// Copy the Q4_0, Q8_0, Q4_K and Q6_K matrices (Q4_K and Q6_K on CPUs with AVX2 and FMA) at load into eight-row groups, which decode
    /// and prompt processing read faster than the file's rows (the file's pages of those tensors are then
    /// never mapped in, so memory stays one copy). Off: every matrix is read from the mapping, and loading
    /// touches nothing. Results differ from the unrepacked ones by float rounding in decode (the batched
    /// order). Default: on.
    /// </summary>
    public bool RepackWeights { get; init; } = true;

    /// <summary>
    /// A directory for the repack cache, or null (the default) for none. With repacking on, a load maps the repacked
    /// matrices from a cache file made from the same model file (same length, modification time and GGUF header) in
    /// this directory instead of repacking them, which makes it about as fast as a load without repacking; when there
    /// is none (or it is stale or damaged), the load repacks in memory and writes one (as large as the repacked
    /// matrices) for later loads. A cache that cannot be written does not fail the load; see
    /// <see cref="LlamaWeights.RepackCacheMessage"/>.
    /// </summary>
    public string? RepackCacheDirectory { get; init; }
}

/// <summary>
/// A loaded Llama model: the memory-mapped GGUF file, its hyper-parameters, weights, vocabulary and
/// tokenizer, and the worker pool its contexts compute with. Create one or more
/// <see cref="LlamaContext"/> objects (each with its own KV cache) to run it.
/// </summary>
public sealed class LlamaModel : IDisposable
{
    private LlamaModel(GgufFile file, LlamaConfig config, LlamaWeights weights, ITokenizer tokenizer, WorkerPool pool, TimeSpan loadTime)
    {
        File = file;
        Config = config;
        Weights = weights;
        Tokenizer = tokenizer;
        Pool = pool;
        LoadTime = loadTime;
    }

    public GgufFile File { get; }
    public LlamaConfig Config { get; }
    public LlamaWeights Weights { get; }
    public ITokenizer Tokenizer { get; }
    public Vocabulary Vocabulary => Tokenizer.Vocabulary;
    public WorkerPool Pool { get; }
    public TimeSpan LoadTime { get; }
    public int Threads => Pool.ThreadCount;

    /// <summary>Serialises use of the worker pool by several contexts.</summary>
    internal object ComputeLock { get; } = new();

    /// <exception cref="FileNotFoundException">no such file</exception>
    /// <exception cref="GgufFormatException">not a well-formed GGUF file</exception>
    /// <exception cref="ModelLoadException">a GGUF file Cria cannot run</exception>
    public static LlamaModel Load(string path, ModelOptions? options = null)
    {
        options ??= new ModelOptions();
        if (options.Threads < 1) throw new ArgumentOutOfRangeException(nameof(options), "thread count must be at least 1");
        var sw = Stopwatch.StartNew();
        var file = GgufFile.Open(path);
        try
        {
            var config = LlamaConfig.FromGguf(file);
            Vocabulary vocabulary;
            try { vocabulary = Vocabulary.FromGguf(file); }
            catch (Exception e) when (e is InvalidDataException or NotSupportedException or KeyNotFoundException)
            { throw new ModelLoadException($"cannot read the tokenizer: {e.Message}"); }
            ITokenizer tokenizer;
            try { tokenizer = TokenizerFactory.Create(vocabulary); }
            catch (NotSupportedException e) { throw new ModelLoadException(e.Message); }
            var weights = LlamaWeights.FromGguf(file, config, options.RepackWeights ? options.Threads : 0, options.RepackCacheDirectory);
            var pool = new WorkerPool(options.Threads);
            return new LlamaModel(file, config, weights, tokenizer, pool, sw.Elapsed);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>Creates an inference context with its own KV cache.</summary>
    public LlamaContext CreateContext(ContextOptions? options = null) => new(this, options ?? new ContextOptions());

    public void Dispose()
    {
        Pool.Dispose();
        Weights.Dispose();
        File.Dispose();
    }
}
