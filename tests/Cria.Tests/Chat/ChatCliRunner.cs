using System.Diagnostics;
using System.Text;

namespace Cria.Tests.Chat;

/// <summary>Runs <c>cria</c> (cria.dll beside the tests) as a child process with the given standard input.</summary>
public static class ChatCliRunner
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    public static Result Run(string stdin, params string[] args)
    {
        // CRIA_CLI_DLL points at another build of the program (e.g. one with new verbs registered).
        string dll = Environment.GetEnvironmentVariable("CRIA_CLI_DLL") is { Length: > 0 } other
            ? other
            : Path.Combine(AppContext.BaseDirectory, "cria.dll");
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
            StandardInputEncoding = new UTF8Encoding(false),
        };
        psi.ArgumentList.Add("exec");
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var output = p.StandardOutput.ReadToEndAsync();
        var error = p.StandardError.ReadToEndAsync();
        p.StandardInput.Write(stdin);
        p.StandardInput.Close();
        if (!p.WaitForExit(120_000))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException("cria did not finish within 120 s: " + string.Join(' ', args));
        }
        return new Result(p.ExitCode, output.Result, error.Result);
    }
}
