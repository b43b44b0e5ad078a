namespace Cria.Tests; public class SmokeTests { [Xunit.Fact] public void Version() => Xunit.Assert.Equal("0.1.0", Cria.CriaInfo.Version); }
