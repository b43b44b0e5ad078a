namespace Cria; public static class CriaInfo { public const string Version = "0.1.0"; }
