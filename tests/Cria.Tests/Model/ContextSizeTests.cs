using Cria.Model;
using Xunit;

namespace Cria.Tests.Model;

public class ContextSizeTests
{
    [Fact]
    public void A128KTrainingContextIsNotAllocatedUnlessAsked()
    {
        string path = Path.Combine(Path.GetTempPath(), $"cria-ctx-{Guid.NewGuid():N}.gguf");
        try
        {
            SyntheticModel.Write(new SyntheticModel.SyntheticModelSpec
            {
                EmbeddingLength = 64, FeedForwardLength = 128, BlockCount = 1, HeadCount = 4, KvHeadCount = 2,
                ContextLength = 131072, RopeFreqBase = 500000, TiedEmbeddings = true,
            }, path);
            using var model = LlamaModel.Load(path, new ModelOptions { Threads = 1 });
            Assert.Equal(131072, model.Config.ContextLength);
            Assert.Equal(500000f, model.Config.RopeFrequencyBase);
            Assert.True(model.Weights.OutputIsTied);
            using var byDefault = model.CreateContext();
            Assert.Equal(ContextOptions.DefaultMaximum, byDefault.ContextSize);
            using var asked = model.CreateContext(new ContextOptions { ContextSize = 8192 });
            Assert.Equal(8192, asked.ContextSize);
            Assert.Throws<ContextOverflowException>(() => byDefault.Evaluate(new int[ContextOptions.DefaultMaximum + 1]));
        }
        finally { File.Delete(path); }
    }
}
