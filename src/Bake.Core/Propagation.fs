namespace Bake.Core

open TorchSharp

/// <summary>Batch knowledge propagation and ensembling, paper Eq. (5)–(9): soft targets Q from P and Â.</summary>
/// <remarks>All functions take Â (N×N, zero diagonal, rows summing to 1) and P (N×K, rows summing to 1) and
/// return a fresh N×K tensor whose rows sum to 1. They run without autograd on detached inputs, so no
/// gradient ever reaches the targets (paper, below Eq. 9). ω must lie in [0, 1).</remarks>
[<RequireQualifiedAccess>]
module Propagation =

    let private check (affinity: torch.Tensor) (probs: torch.Tensor) (omega: float) =
        Tensors.requireMatrix "affinity" affinity
        Tensors.requireMatrix "probs" probs
        if affinity.shape[0] <> affinity.shape[1] then
            invalidArg "affinity" $"affinity must be square (N×N), got {Tensors.describe affinity}"
        Tensors.requireSameRows ("affinity", affinity) ("probs", probs)
        Validate.requireOmega omega

    /// <summary>Runs <paramref name="compute"/> on detached inputs without autograd; for N ≤ 1 returns a copy of P.</summary>
    let private detachedTargets (affinity: torch.Tensor) (probs: torch.Tensor) (omega: float) compute =
        check affinity probs omega
        use _ = torch.no_grad ()
        if probs.shape[0] <= 1L then
            probs.detach().clone ()
        else
            Tensors.scoped (fun () -> compute (affinity.detach ()) (probs.detach ()))

    /// <summary>One propagation step, Eq. (6): Q = ω Â P + (1 − ω) P.</summary>
    /// <param name="affinity">Â, N×N.</param>
    /// <param name="probs">P^τ, N×K.</param>
    /// <param name="omega">ω ∈ [0, 1).</param>
    [<CompiledName("OneStep")>]
    let oneStep (affinity: torch.Tensor, probs: torch.Tensor, omega: float) : torch.Tensor =
        detachedTargets affinity probs omega (fun a p -> a.mm(p).mul(Tensors.scalar omega).add (p.mul (Tensors.scalar (1.0 - omega))))

    /// <summary>t propagation steps, Eq. (7): Q₍ₜ₎ = ω Â Q₍ₜ₋₁₎ + (1 − ω) P with Q₍₀₎ = P.</summary>
    /// <param name="affinity">Â, N×N.</param>
    /// <param name="probs">P^τ, N×K.</param>
    /// <param name="omega">ω ∈ [0, 1).</param>
    /// <param name="steps">t ≥ 0 (t = 0 returns P, t = 1 equals Eq. 6).</param>
    [<CompiledName("Iterate")>]
    let iterate (affinity: torch.Tensor, probs: torch.Tensor, omega: float, steps: int) : torch.Tensor =
        if steps < 0 then invalidArg "steps" $"steps must be >= 0, got {steps}"
        detachedTargets affinity probs omega (fun a p ->
            let scaled = a.mul (Tensors.scalar omega)
            let anchor = p.mul (Tensors.scalar (1.0 - omega))
            let mutable targets = p.alias ()
            for _ in 1..steps do
                targets <- scaled.mm(targets).add anchor
            targets)

    /// <summary>Infinite propagation in closed form, Eq. (9): Q = (1 − ω)(I − ωÂ)⁻¹ P.</summary>
    /// <remarks>Solved as the linear system (I − ωÂ) Q = (1 − ω) P with <c>linalg.solve</c>, never by forming the
    /// inverse; I − ωÂ is strictly diagonally dominant for ω &lt; 1. Q is clamped at 0 against round-off
    /// (exact Q is non-negative because (I − ωÂ)⁻¹ = Σₖ (ωÂ)ᵏ is), a deliberate deviation from the official
    /// code, whose tiny negative entries can turn the KL term into NaN (docs/official-code.md §2.1).</remarks>
    /// <param name="affinity">Â, N×N.</param>
    /// <param name="probs">P^τ, N×K.</param>
    /// <param name="omega">ω ∈ [0, 1).</param>
    [<CompiledName("ClosedForm")>]
    let closedForm (affinity: torch.Tensor, probs: torch.Tensor, omega: float) : torch.Tensor =
        detachedTargets affinity probs omega (fun a p ->
            let n = a.shape[0]
            let system = torch.eye(n, dtype = a.dtype, device = a.device).sub (a.mul (Tensors.scalar omega))
            torch.linalg.solve(system, p.mul (Tensors.scalar (1.0 - omega))).clamp_min (Tensors.scalar 0.0))

    /// <summary>P^τ = softmax(z / τ) row by row, Eq. (1). Gradients flow.</summary>
    /// <param name="logits">z, N×K.</param>
    /// <param name="temperature">τ &gt; 0.</param>
    [<CompiledName("TemperedProbabilities")>]
    let temperedProbabilities (logits: torch.Tensor, temperature: float) : torch.Tensor =
        Tensors.requireMatrix "logits" logits
        Tensors.scoped (fun () -> torch.nn.functional.softmax (logits.div (Tensors.scalar temperature), dim = 1L))

    /// <summary>BAKE soft targets for a batch: Â from the features (Eq. 3–4), P = softmax(z/τ) (Eq. 1) and
    /// the propagation form of the options (Eq. 9 by default).</summary>
    /// <param name="features">F(x), N×D; used detached.</param>
    /// <param name="logits">z, N×K; used detached.</param>
    /// <param name="options">τ, ω and the propagation form (λ is not used here).</param>
    /// <returns>A fresh N×K tensor Q, rows summing to 1, with no autograd history.</returns>
    [<CompiledName("SoftTargets")>]
    let softTargets (features: torch.Tensor, logits: torch.Tensor, options: BakeOptions) : torch.Tensor =
        let options = Validate.bake options |> Validate.orThrow "BAKE options"
        Tensors.requireMatrix "features" features
        Tensors.requireMatrix "logits" logits
        Tensors.requireSameRows ("features", features) ("logits", logits)
        use _ = torch.no_grad ()
        Tensors.scoped (fun () ->
            // The ensemble runs in the logits' precision, but never below float32.
            let dtype =
                if logits.dtype = torch.float16 || logits.dtype = torch.bfloat16 then torch.float32 else logits.dtype
            let affinity = Affinity.normalized (features.detach().to_type dtype)
            let probs = temperedProbabilities (logits.detach().to_type dtype, options.Temperature)
            match options.Propagation with
            | ClosedForm -> closedForm (affinity, probs, options.Omega)
            | OneStep -> oneStep (affinity, probs, options.Omega)
            | Steps steps -> iterate (affinity, probs, options.Omega, steps))
