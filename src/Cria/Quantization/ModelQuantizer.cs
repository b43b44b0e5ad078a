using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Cria.Gguf;
using Cria.Numerics;
using Cria.Numerics.Formats;
using Cria.Numerics.Kernels;

namespace Cria.Quantization;

/// <summary>Settings of one quantization run (llama-quantize's parameters).</summary>
public sealed record QuantizationOptions
{
    /// <summary>The target file type (llama-quantize's TYPE argument).</summary>
    public required LlamaFileType FileType { get; init; }

    /// <summary>Worker threads for the row-parallel conversion (0: all processors).</summary>
    public int Threads { get; init; }

    /// <summary>Every quantizable tensor gets the base type: no per-tensor mix and no fallbacks (<c>--pure</c>).</summary>
    public bool Pure { get; init; }

    /// <summary>Type for output.weight (<c>--output-tensor-type</c>), or null for the mix's choice.</summary>
    public GgmlType? OutputTensorType { get; init; }

    /// <summary>Type for token_embd.weight (<c>--token-embedding-type</c>), or null for the mix's choice.</summary>
    public GgmlType? TokenEmbeddingType { get; init; }

    /// <summary>Allow converting tensors that are already quantized (llama-quantize's --allow-requantize).</summary>
    public bool AllowRequantize { get; init; }
}

/// <summary>What a finished run did.</summary>
public sealed record QuantizationResult(int TensorCount, int ConvertedCount, int FallbackCount, long InputBytes, long OutputBytes, TimeSpan Elapsed);

/// <summary>
/// Converts a Llama GGUF model to one of llama-quantize's file types, byte-identical to
/// llama-quantize (llama.cpp c392e5094) without an importance matrix: the tensor types come from
/// <see cref="QuantizationPlan"/>, every converted tensor is decoded to float (F16/BF16 widened
/// exactly) and encoded row by row with ggml's reference quantizers (the Formats' Quantize
/// methods), the metadata is copied in order with <c>general.quantization_version</c> = 2 and
/// <c>general.file_type</c> appended (split keys dropped), and the tensors are written in the
/// loader's order (layer, then name) with 32-byte alignment. Rows are quantized in parallel;
/// tensors are streamed one at a time into a temporary file that is renamed into place at the end,
/// so a failure never leaves a partial output.
/// </summary>
public static class ModelQuantizer
{
    /// <summary>
    /// Quantizes <paramref name="inputPath"/> into <paramref name="outputPath"/>. Progress and
    /// fallback warnings go to <paramref name="log"/> (null: silent): one line per tensor, or, with
    /// <paramref name="progressOnOneLine"/> (for a terminal), one line rewritten in place. Throws
    /// <see cref="QuantizationException"/> for inputs llama-quantize rejects.
    /// </summary>
    public static QuantizationResult Quantize(string inputPath, string outputPath, QuantizationOptions options, TextWriter? log = null,
        CancellationToken cancellationToken = default, bool progressOnOneLine = false)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!Enum.IsDefined(options.FileType)) throw new QuantizationException($"unsupported file type {(int)options.FileType}");
        if (!File.Exists(inputPath)) throw new FileNotFoundException($"input file not found: {inputPath}", inputPath);
        if (Directory.Exists(outputPath)) throw new QuantizationException($"output {outputPath} is a directory");
        if (string.Equals(Path.GetFullPath(inputPath), Path.GetFullPath(outputPath), StringComparison.Ordinal))
            throw new QuantizationException("the output file must differ from the input file");
        ArgumentOutOfRangeException.ThrowIfNegative(options.Threads);

        var sw = Stopwatch.StartNew();
        using var input = GgufFile.Open(inputPath);
        var plan = QuantizationPlan.Create(input, options);
        int threads = options.Threads > 0 ? options.Threads : Environment.ProcessorCount;

        var writer = new GgufWriter();
        // gguf_set_kv copies every key in order; gguf_set_val_u32 then removes and re-appends these two.
        foreach (var kv in input.MetadataList)
            if (kv.Key is not ("general.quantization_version" or "general.file_type" or "split.no" or "split.count" or "split.tensors.count"))
                writer.Set(kv.Key, kv.Value);
        writer.Set("general.quantization_version", 2u);
        writer.Set("general.file_type", (uint)options.FileType);

        if (plan.Tensors.Any(p => p.Convert && QuantizationPlan.IsQuantized(p.Source.Type)))
            log?.WriteLine("warning: requantizing already-quantized tensors; the result is worse than quantizing from F32/F16");
        foreach (var p in plan.Tensors)
            if (p.Fallback != null) log?.WriteLine($"warning: {p.Fallback}");

        int total = plan.Tensors.Count, done = 0, converted = 0;
        long inBytes = 0, outBytes = 0;
        foreach (var p in plan.Tensors)
        {
            var t = p.Source;
            var plan1 = p;
            writer.AddTensor(t.Name, p.Type, t.Dimensions, stream =>
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (plan1.Convert)
                {
                    ConvertTensor(input, t, plan1.Type, threads, stream);
                    converted++;
                }
                else
                {
                    stream.Write(input.GetTensorBytes(t));
                }
                done++;
                inBytes += t.ByteSize;
                outBytes += GgmlTypeInfo.RowBytes(plan1.Type, t.Dimensions[0]) * (t.ElementCount / Math.Max(1, t.Dimensions[0]));
                string line = string.Format(CultureInfo.InvariantCulture, "[{0}/{1}] {2,-32} {3,6} -> {4,-6} {5:F1} -> {6:F1} MiB",
                    done, total, Truncate(t.Name, 32), GgmlTypeInfo.Name(t.Type), GgmlTypeInfo.Name(plan1.Type),
                    inBytes / 1048576.0, outBytes / 1048576.0);
                if (progressOnOneLine) log?.Write("\r" + line + "   ");
                else log?.WriteLine(line);
            });
        }

        try
        {
            writer.Write(outputPath);
        }
        finally
        {
            if (done > 0 && progressOnOneLine) log?.WriteLine();
        }
        if (plan.FallbackCount > 0)
            log?.WriteLine($"{plan.FallbackCount} of {converted} quantized tensor(s) required fallback quantization");
        sw.Stop();
        long size = new FileInfo(outputPath).Length;
        log?.WriteLine(string.Format(CultureInfo.InvariantCulture, "quantized {0} tensors ({1} converted) to {2}: {3:F2} MiB -> {4:F2} MiB in {5:F1} s",
            total, converted, LlamaFileTypes.Name(options.FileType), input.FileSize / 1048576.0, size / 1048576.0, sw.Elapsed.TotalSeconds));
        return new QuantizationResult(total, converted, plan.FallbackCount, input.FileSize, size, sw.Elapsed);
    }

    private static string Truncate(string s, int n) => s.Length <= n ? s : s[..(n - 3)] + "...";

    /// <summary>Decodes one tensor to floats and encodes it as <paramref name="type"/>, in row chunks over the threads.</summary>
    private static unsafe void ConvertTensor(GgufFile input, GgufTensorInfo t, GgmlType type, int threads, Stream destination)
    {
        long cols = t.Dimensions[0];
        long rows = t.ElementCount / Math.Max(1, cols);
        if (cols > int.MaxValue) throw new QuantizationException($"tensor {t.Name}: rows of {cols} values are too long");
        long srcRowBytes = GgmlTypeInfo.RowBytes(t.Type, cols);
        long dstRowBytes = GgmlTypeInfo.RowBytes(type, cols);
        byte* src = input.GetTensorData(t);
        // Work in slabs so a large tensor never needs more than ~64 MiB of output buffer.
        long rowsPerSlab = Math.Max(1, Math.Min(rows, (64L << 20) / Math.Max(1, Math.Max(dstRowBytes, cols * 4))));
        byte[] buffer = new byte[checked((int)(rowsPerSlab * dstRowBytes))];
        int n = (int)cols;
        for (long r0 = 0; r0 < rows; r0 += rowsPerSlab)
        {
            long r1 = Math.Min(rows, r0 + rowsPerSlab);
            long count = r1 - r0;
            long first = r0;
            var po = new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, threads) };
            int chunks = (int)Math.Min(count, Math.Max(1, threads) * 4L);
            fixed (byte* dst = buffer)
            {
                byte* d0 = dst;
                long badRow = -1;
                Parallel.For(0, chunks, po, () => new float[n], (c, _, row) =>
                {
                    long a = count * c / chunks, b = count * (c + 1) / chunks;
                    for (long r = a; r < b; r++)
                    {
                        DecodeRow(t.Type, src + (first + r) * srcRowBytes, row);
                        if (!AllFinite(row))
                        {
                            Interlocked.CompareExchange(ref badRow, first + r, -1);
                            break;
                        }
                        RowEncoder.Encode(type, row, new Span<byte>(d0 + r * dstRowBytes, (int)dstRowBytes));
                    }
                    return row;
                }, _ => { });
                if (badRow >= 0)
                    throw new QuantizationException($"tensor {t.Name}: row {badRow} contains NaN or infinite values");
                if (type == GgmlType.F16 && !HalvesFinite(new ReadOnlySpan<ushort>(dst, (int)(count * dstRowBytes / 2))))
                    throw new QuantizationException($"tensor {t.Name}: values beyond the F16 range (±65504) become infinite");
            }
            destination.Write(buffer, 0, (int)(count * dstRowBytes));
        }
    }

    /// <summary>llama-quantize validates every quantized row (ggml_validate_row_data); non-finite inputs fail it.</summary>
    private static bool AllFinite(float[] x)
    {
        foreach (float v in x) if (!float.IsFinite(v)) return false;
        return true;
    }

    private static bool HalvesFinite(ReadOnlySpan<ushort> h)
    {
        foreach (ushort v in h) if ((v & 0x7C00) == 0x7C00) return false;
        return true;
    }

    private static unsafe void DecodeRow(GgmlType type, byte* src, float[] dst)
    {
        int n = dst.Length;
        if (type == GgmlType.F32)
        {
            new ReadOnlySpan<float>(src, n).CopyTo(dst);
            return;
        }
        fixed (float* d = dst)
        {
            switch (type)
            {
                case GgmlType.F16: Fp16Format.ToSingle((ushort*)src, d, n); break;
                case GgmlType.BF16: Bf16Format.ToSingle((ushort*)src, d, n); break;
                default:
                    var w = new WeightMatrix(type, src, 1, n);
                    MatMul.GetRow(w, 0, dst);
                    break;
            }
        }
    }
}
