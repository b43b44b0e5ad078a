using Cria.Sampling;
using Xunit;

namespace Cria.Tests.Sampling;

public class SamplerOptionsTests
{
    [Fact]
    public void Defaults_MatchLlamaCpp()
    {
        var o = new SamplerOptions();
        Assert.Equal(0.8f, o.Temperature);
        Assert.Equal(40, o.TopK);
        Assert.Equal(0.95f, o.TopP);
        Assert.Equal(0.05f, o.MinP);
        Assert.Equal(1.0f, o.RepeatPenalty);
        Assert.Equal(0f, o.FrequencyPenalty);
        Assert.Equal(0f, o.PresencePenalty);
        Assert.Equal(64, o.PenaltyLastN);
        Assert.Null(o.Seed);
        Assert.False(o.IsGreedy);
        o.Validate();
    }

    [Fact]
    public void Greedy_HasZeroTemperature()
    {
        Assert.Equal(0f, SamplerOptions.Greedy.Temperature);
        Assert.True(SamplerOptions.Greedy.IsGreedy);
        Assert.Equal(new SamplerOptions() with { Temperature = 0f }, SamplerOptions.Greedy);
        SamplerOptions.Greedy.Validate();
    }

    public static TheoryData<string, float, int, float, float, float, float, float, int> BadOptions => new()
    {
        // name, temperature, topK, topP, minP, repeat, frequency, presence, lastN
        { "Temperature", float.NaN, 40, 0.95f, 0.05f, 1f, 0f, 0f, 64 },
        { "Temperature", float.PositiveInfinity, 40, 0.95f, 0.05f, 1f, 0f, 0f, 64 },
        { "Temperature", float.NegativeInfinity, 40, 0.95f, 0.05f, 1f, 0f, 0f, 64 },
        { "TopP", 0.8f, 40, 0f, 0.05f, 1f, 0f, 0f, 64 },
        { "TopP", 0.8f, 40, -0.1f, 0.05f, 1f, 0f, 0f, 64 },
        { "TopP", 0.8f, 40, 1.01f, 0.05f, 1f, 0f, 0f, 64 },
        { "TopP", 0.8f, 40, float.NaN, 0.05f, 1f, 0f, 0f, 64 },
        { "MinP", 0.8f, 40, 0.95f, -0.01f, 1f, 0f, 0f, 64 },
        { "MinP", 0.8f, 40, 0.95f, 1.5f, 1f, 0f, 0f, 64 },
        { "MinP", 0.8f, 40, 0.95f, float.NaN, 1f, 0f, 0f, 64 },
        { "RepeatPenalty", 0.8f, 40, 0.95f, 0.05f, 0f, 0f, 0f, 64 },
        { "RepeatPenalty", 0.8f, 40, 0.95f, 0.05f, -1.1f, 0f, 0f, 64 },
        { "RepeatPenalty", 0.8f, 40, 0.95f, 0.05f, float.NaN, 0f, 0f, 64 },
        { "RepeatPenalty", 0.8f, 40, 0.95f, 0.05f, float.PositiveInfinity, 0f, 0f, 64 },
        { "FrequencyPenalty", 0.8f, 40, 0.95f, 0.05f, 1f, float.NaN, 0f, 64 },
        { "FrequencyPenalty", 0.8f, 40, 0.95f, 0.05f, 1f, float.PositiveInfinity, 0f, 64 },
        { "PresencePenalty", 0.8f, 40, 0.95f, 0.05f, 1f, 0f, float.NaN, 64 },
        { "PresencePenalty", 0.8f, 40, 0.95f, 0.05f, 1f, 0f, float.NegativeInfinity, 64 },
        { "PenaltyLastN", 0.8f, 40, 0.95f, 0.05f, 1f, 0f, 0f, -2 },
    };

    [Theory]
    [MemberData(nameof(BadOptions))]
    public void Validate_RejectsBadValues(string property, float temperature, int topK, float topP, float minP,
        float repeat, float frequency, float presence, int lastN)
    {
        var o = new SamplerOptions
        {
            Temperature = temperature, TopK = topK, TopP = topP, MinP = minP, RepeatPenalty = repeat,
            FrequencyPenalty = frequency, PresencePenalty = presence, PenaltyLastN = lastN,
        };
        var ex = Assert.Throws<ArgumentException>(o.Validate);
        Assert.Equal(property, ex.ParamName);
        Assert.Contains(property, ex.Message);

        // The sampler validates too.
        Assert.Throws<ArgumentException>(() => new Sampler(o, 10, 16));
    }

    [Fact]
    public void Validate_AcceptsBoundaryValues()
    {
        new SamplerOptions { Temperature = -1f }.Validate();          // greedy, like llama.cpp temp <= 0
        new SamplerOptions { Temperature = 0f }.Validate();
        new SamplerOptions { TopK = 0 }.Validate();
        new SamplerOptions { TopK = -5 }.Validate();
        new SamplerOptions { TopP = 1f }.Validate();
        new SamplerOptions { TopP = 1e-6f }.Validate();
        new SamplerOptions { MinP = 0f }.Validate();
        new SamplerOptions { MinP = 1f }.Validate();
        new SamplerOptions { RepeatPenalty = 0.5f }.Validate();
        new SamplerOptions { FrequencyPenalty = -0.5f, PresencePenalty = -0.5f }.Validate();
        new SamplerOptions { PenaltyLastN = -1 }.Validate();
        new SamplerOptions { PenaltyLastN = 0 }.Validate();
        new SamplerOptions { Seed = ulong.MaxValue }.Validate();
    }

    [Fact]
    public void Sampler_RejectsBadConstructorArguments()
    {
        Assert.Throws<ArgumentNullException>(() => new Sampler(null!, 10, 16));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Sampler(new SamplerOptions(), 0, 16));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Sampler(new SamplerOptions(), 10, 0));
    }
}
