namespace Bake.Core

open TorchSharp

/// <summary>Inter-sample affinities of a batch, paper Eq. (3)–(4).</summary>
[<RequireQualifiedAccess>]
module Affinity =

    /// <summary>σ(f) = f / ‖f‖₂ row by row, the normalisation inside Eq. (3).</summary>
    /// <param name="features">Encoded representations F(x), N×D.</param>
    /// <returns>A fresh N×D tensor of unit rows (an all-zero row stays zero). Gradients flow.</returns>
    [<CompiledName("Normalize")>]
    let normalize (features: torch.Tensor) : torch.Tensor =
        Tensors.requireMatrix "features" features
        torch.nn.functional.normalize (features, p = 2.0, dim = 1L)

    /// <summary>The cosine affinity A(i, j) = σ(F(xᵢ))ᵀ σ(F(xⱼ)), Eq. (3), including its diagonal.</summary>
    /// <param name="features">Encoded representations F(x), N×D.</param>
    /// <returns>A fresh symmetric N×N tensor with entries in [−1, 1]. Gradients flow.</returns>
    [<CompiledName("Cosine")>]
    let cosine (features: torch.Tensor) : torch.Tensor =
        Tensors.scoped (fun () ->
            let unit = normalize features
            unit.mm (unit.t ()))

    /// <summary>The row-normalised affinity Â of Eq. (4): a softmax over j ≠ i of A(i, j), with Â(i, i) = 0.</summary>
    /// <param name="features">Encoded representations F(x), N×D (N ≥ 1, D ≥ 1).</param>
    /// <returns>A fresh N×N tensor, same dtype and device as <paramref name="features"/>: zero diagonal,
    /// non-negative, rows summing to 1. For N = 1 there is no other sample, Â is the 1×1 zero matrix
    /// and propagation returns P unchanged. There is no temperature on the affinity (as in the official code).
    /// Gradients flow; BAKE itself calls this on detached features (see Propagation.softTargets).</returns>
    [<CompiledName("Normalized")>]
    let normalized (features: torch.Tensor) : torch.Tensor =
        Tensors.requireMatrix "features" features
        let n = features.shape[0]
        if n <= 1L then
            torch.zeros ([| n; n |], dtype = features.dtype, device = features.device)
        else
            Tensors.scoped (fun () ->
                let affinity = cosine features
                // Masking with −∞ gives exact zeros on the diagonal; the official code subtracts 1e9.
                let diagonal = torch.eye (n, dtype = torch.ScalarType.Bool, device = features.device)
                let masked = affinity.masked_fill (diagonal, System.Double.NegativeInfinity)
                torch.nn.functional.softmax (masked, dim = 1L))
