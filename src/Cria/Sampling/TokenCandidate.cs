namespace Cria.Sampling;

/// <summary>One entry of the sampler's candidate list: token id, (transformed) logit and probability.</summary>
internal struct TokenCandidate
{
    public int Id;
    public float Logit;
    public float P;

    public TokenCandidate(int id, float logit, float p)
    {
        Id = id;
        Logit = logit;
        P = p;
    }

    public override readonly string ToString() => $"{{id={Id}, logit={Logit}, p={P}}}";
}
