using System.Diagnostics;
using System.Text;

namespace Cria.Tests.Cli;

/// <summary>Runs the real <c>cria</c> program (cria.dll beside the tests) as a child process.</summary>
public static class CliRunner
{
    public sealed record Result(int ExitCode, byte[] StdoutBytes, string Stderr)
    {
        public string Stdout => Encoding.UTF8.GetString(StdoutBytes);
    }

    public static Result Run(params string[] args) => RunWithInput("", args);

    /// <summary>Runs cria with <paramref name="stdin"/> written to its standard input, then closed.</summary>
    public static Result RunWithInput(string stdin, params string[] args)
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "cria.dll");
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            StandardErrorEncoding = Encoding.UTF8,
            StandardInputEncoding = new UTF8Encoding(false),
        };
        psi.ArgumentList.Add("exec");
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var ms = new MemoryStream();
        var copy = p.StandardOutput.BaseStream.CopyToAsync(ms);
        var err = p.StandardError.ReadToEndAsync();
        p.StandardInput.Write(stdin);
        p.StandardInput.Close();
        if (!p.WaitForExit(120_000))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException("cria did not finish within 120 s: " + string.Join(' ', args));
        }
        copy.Wait();
        return new Result(p.ExitCode, ms.ToArray(), err.Result);
    }
}
