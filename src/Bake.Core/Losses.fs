namespace Bake.Core

open TorchSharp

/// <summary>One named term of a loss: Total = Σ Weight · Value.</summary>
/// <remarks>Value is the unweighted term (a scalar tensor with autograd history where it has one).</remarks>
[<NoComparison; NoEquality>]
type LossTerm =
    {
        /// <summary>Short lowercase name used in logs, e.g. "ce" or "kd".</summary>
        Name: string
        /// <summary>The weight of the term in the total.</summary>
        Weight: float
        /// <summary>The unweighted value, a scalar tensor.</summary>
        Value: torch.Tensor
    }

/// <summary>A loss and its named terms, so every term can be logged separately (torchdistill style).</summary>
[<NoComparison; NoEquality>]
type Loss =
    {
        /// <summary>Σ Weight · Value over the terms, a scalar tensor to call backward() on.</summary>
        Total: torch.Tensor
        /// <summary>The terms, in order.</summary>
        Terms: LossTerm[]
    }

/// <summary>The paper's losses (Eq. 1–2) and the baselines' losses (docs/official-code.md §8–9).</summary>
/// <remarks>All reductions are batch means. Every function returns fresh tensors and never disposes its inputs.</remarks>
[<RequireQualifiedAccess>]
module Losses =

    /// <summary>Cross-entropy −log p(y) averaged over the N samples, the first term of Eq. (2).</summary>
    /// <param name="logits">z, N×K. Gradients flow.</param>
    /// <param name="labels">y, int64 vector of N class indices.</param>
    [<CompiledName("CrossEntropy")>]
    let crossEntropy (logits: torch.Tensor, labels: torch.Tensor) : torch.Tensor =
        Tensors.requireMatrix "logits" logits
        Tensors.requireLabels labels logits
        torch.nn.functional.cross_entropy (logits, labels)

    /// <summary>Cross-entropy against soft targets, −Σₖ targetsₖ log softmax(z)ₖ averaged over the batch.</summary>
    /// <param name="logits">z, N×K. Gradients flow.</param>
    /// <param name="targets">N×K probability rows; no gradient reaches them.</param>
    [<CompiledName("SoftCrossEntropy")>]
    let softCrossEntropy (logits: torch.Tensor, targets: torch.Tensor) : torch.Tensor =
        Tensors.requireMatrix "logits" logits
        Tensors.requireMatrix "targets" targets
        Tensors.scoped (fun () ->
            let logProbs = torch.nn.functional.log_softmax (logits, dim = 1L)
            targets.detach().mul(logProbs).sum(dim = 1L).mean().neg ())

    /// <summary>The distillation term of Eq. (2): τ² · (1/N) Σᵢ KL(qᵢ ‖ softmax(zᵢ/τ)), exactly the official
    /// reduction (KLDivLoss with reduction "sum", times τ², divided by the batch size N; docs/official-code.md §2.1).</summary>
    /// <param name="logits">z, N×K. Gradients flow through log softmax(z/τ) only; the gradient with respect to
    /// z is τ (softmax(z/τ) − Q) / N.</param>
    /// <param name="targets">Q, N×K probability rows (entries ≥ 0, 0 · log 0 = 0); detached here.</param>
    /// <param name="temperature">τ &gt; 0.</param>
    /// <returns>A fresh scalar tensor, ≥ 0, and 0 when Q = softmax(z/τ).</returns>
    [<CompiledName("Distillation")>]
    let distillation (logits: torch.Tensor, targets: torch.Tensor, temperature: float) : torch.Tensor =
        Tensors.requireMatrix "logits" logits
        Tensors.requireMatrix "targets" targets
        if logits.shape <> targets.shape then
            invalidArg "targets" $"targets {Tensors.describe targets} must have the shape of logits {Tensors.describe logits}"
        if not (temperature > 0.0) then invalidArg "temperature" $"temperature must be > 0, got {temperature}"
        Tensors.scoped (fun () ->
            let logProbs = torch.nn.functional.log_softmax (logits.div (Tensors.scalar temperature), dim = 1L)
            let q = targets.detach ()
            // TorchSharp's kl_div defaults to log_target = true, so spell KL(q‖p) out; xlogy gives 0·log 0 = 0.
            let kl = torch.xlogy(q, q).sub(q.mul logProbs).sum ()
            kl.mul(Tensors.scalar (temperature * temperature)).div (Tensors.scalar (float logits.shape[0])))

    /// <summary>Rows with <paramref name="onTrue"/> at each label and <paramref name="offTrue"/> elsewhere, N×K.</summary>
    let private labelTargets (labels: torch.Tensor) (logits: torch.Tensor) (onTrue: float) (offTrue: float) =
        Tensors.scoped (fun () ->
            let oneHot = torch.nn.functional.one_hot(labels, logits.shape[1]).``to``(logits.dtype, logits.device)
            oneHot.mul(Tensors.scalar (onTrue - offTrue)).add (Tensors.scalar offTrue))

    let private weighted (terms: LossTerm[]) : Loss =
        let total =
            Tensors.scoped (fun () ->
                terms
                |> Array.map (fun term -> term.Value.mul (Tensors.scalar term.Weight))
                |> Array.reduce (fun a b -> a.add b))
        { Total = total; Terms = terms }

    /// <summary>The vanilla loss: cross-entropy alone, as a one-term <see cref="T:Bake.Core.Loss"/> named "ce".</summary>
    [<CompiledName("Vanilla")>]
    let vanilla (logits: torch.Tensor, labels: torch.Tensor) : Loss =
        weighted [| { Name = "ce"; Weight = 1.0; Value = crossEntropy (logits, labels) } |]

    /// <summary>The BAKE loss towards soft targets computed elsewhere (over the global batch of data-parallel
    /// training, <c>BakeMethod</c>): the CE term given, plus λ·τ²·KL(Q ‖ softmax(z/τ)) averaged over the N rows here.</summary>
    /// <param name="ce">The CE term (hard or soft labels).</param>
    /// <param name="logits">z, N×K.</param>
    /// <param name="targets">Q, N×K; used detached.</param>
    /// <param name="options">τ and λ.</param>
    [<CompiledName("BakeTowards")>]
    let bakeTowards (ce: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor, options: BakeOptions) : Loss =
        let kd = distillation (logits, targets, options.Temperature)
        weighted [| { Name = "ce"; Weight = 1.0; Value = ce }; { Name = "kd"; Weight = options.Lambda; Value = kd } |]

    /// <summary>CE plus λ·KD towards the BAKE targets of the batch, for a given CE term.</summary>
    let private bakeWith (ce: torch.Tensor) (features: torch.Tensor) (logits: torch.Tensor) (options: BakeOptions) : Loss =
        use targets = Propagation.softTargets (features, logits, options)
        bakeTowards (ce, logits, targets, options)

    /// <summary>The BAKE loss, Eq. (2) with the soft targets of Eq. (9): CE(z, y) + λ · τ² · KL(Q ‖ softmax(z/τ)).</summary>
    /// <param name="features">F(x), N×D (anchors and their positives together); used detached for Q.</param>
    /// <param name="logits">z, N×K. Gradients flow through both terms.</param>
    /// <param name="labels">y, int64 vector of N class indices. CE is averaged over all N images.</param>
    /// <param name="options">τ, ω, λ and the propagation form.</param>
    /// <returns>Terms "ce" (weight 1) and "kd" (weight λ) and their total.</returns>
    [<CompiledName("Bake")>]
    let bake (features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, options: BakeOptions) : Loss =
        let options = Validate.bake options |> Validate.orThrow "BAKE options"
        bakeWith (crossEntropy (logits, labels)) features logits options

    /// <summary>The BAKE loss with soft label targets in the CE term (CutMix's λ·y_a + (1 − λ)·y_b): the official
    /// ImageNet code's SoftCrossEntropyLoss, with the BAKE targets computed from the (mixed) images' own predictions.</summary>
    /// <param name="features">F(x), N×D; used detached for Q.</param>
    /// <param name="logits">z, N×K.</param>
    /// <param name="labelTargets">N×K rows of label probabilities.</param>
    /// <param name="options">τ, ω, λ and the propagation form.</param>
    [<CompiledName("BakeSoftLabels")>]
    let bakeSoftLabels (features: torch.Tensor, logits: torch.Tensor, labelTargets: torch.Tensor, options: BakeOptions) : Loss =
        let options = Validate.bake options |> Validate.orThrow "BAKE options"
        bakeWith (softCrossEntropy (logits, labelTargets)) features logits options

    /// <summary>Cross-entropy against soft label targets as a one-term loss named "ce" (vanilla training with CutMix).</summary>
    [<CompiledName("SoftLabels")>]
    let softLabels (logits: torch.Tensor, labelTargets: torch.Tensor) : Loss =
        weighted [| { Name = "ce"; Weight = 1.0; Value = softCrossEntropy (logits, labelTargets) } |]

    /// <summary>The Tf-KD form of label smoothing: targets 1 − α on the true class and α/(K − 1) on every other
    /// class, loss −Σ targets · log softmax(z) averaged over the batch (docs/official-code.md §9).</summary>
    /// <param name="logits">z, N×K with K ≥ 2.</param>
    /// <param name="labels">y, int64 vector of N class indices.</param>
    /// <param name="options">α.</param>
    [<CompiledName("LabelSmoothing")>]
    let labelSmoothing (logits: torch.Tensor, labels: torch.Tensor, options: LabelSmoothingOptions) : Loss =
        let options = Validate.labelSmoothing options |> Validate.orThrow "label smoothing options"
        Tensors.requireMatrix "logits" logits
        Tensors.requireLabels labels logits
        let classes = logits.shape[1]
        if classes < 2L then invalidArg "logits" "label smoothing needs at least 2 classes"
        let smoothed =
            Tensors.scoped (fun () ->
                let targets = labelTargets labels logits (1.0 - options.Alpha) (options.Alpha / float (classes - 1L))
                softCrossEntropy (logits, targets))
        weighted [| { Name = "smoothed_ce"; Weight = 1.0; Value = smoothed } |]

    /// <summary>Tf-KD_reg (docs/official-code.md §9): (1 − α) CE + α · multiplier · mean over N·K elements of
    /// KL(softmax(p^d / T) ‖ softmax(z)), where the designed teacher p^d puts <c>Correct</c> on the true class and
    /// (1 − Correct)/(K − 1) elsewhere. The student side has no temperature (as in the official code).</summary>
    /// <param name="logits">z, N×K with K ≥ 2.</param>
    /// <param name="labels">y, int64 vector of N class indices.</param>
    /// <param name="options">α, T, multiplier and the correct-class probability.</param>
    /// <returns>Terms "ce" (weight 1 − α) and "reg" (weight α · multiplier).</returns>
    [<CompiledName("TfKdReg")>]
    let tfKdReg (logits: torch.Tensor, labels: torch.Tensor, options: TfKdRegOptions) : Loss =
        let options = Validate.tfKdReg options |> Validate.orThrow "Tf-KD_reg options"
        let ce = crossEntropy (logits, labels)
        let classes = logits.shape[1]
        if classes < 2L then invalidArg "logits" "Tf-KD_reg needs at least 2 classes"
        let reg =
            Tensors.scoped (fun () ->
                let designed = labelTargets labels logits options.Correct ((1.0 - options.Correct) / float (classes - 1L))
                let teacher = torch.nn.functional.softmax (designed.div (Tensors.scalar options.Temperature), dim = 1L)
                let logProbs = torch.nn.functional.log_softmax (logits, dim = 1L)
                torch.xlogy(teacher, teacher).sub(teacher.mul logProbs).mean ())
        weighted
            [| { Name = "ce"; Weight = 1.0 - options.Alpha; Value = ce }
               { Name = "reg"; Weight = options.Alpha * options.Multiplier; Value = reg } |]

    /// <summary>CS-KD (docs/official-code.md §8): CE on the anchors plus λ · T² · (1/B) Σ KL(softmax(z'/T) ‖ softmax(z/T)),
    /// where z' are the logits of a same-class partner of each anchor, computed without gradient.</summary>
    /// <param name="logits">z of the B anchors, B×K. Gradients flow.</param>
    /// <param name="partnerLogits">z' of their partners, B×K; detached here.</param>
    /// <param name="labels">The anchors' labels, int64 vector of B class indices.</param>
    /// <param name="options">T and λ.</param>
    /// <returns>Terms "ce" (weight 1) and "kd" (weight λ).</returns>
    [<CompiledName("CsKd")>]
    let csKd (logits: torch.Tensor, partnerLogits: torch.Tensor, labels: torch.Tensor, options: CsKdOptions) : Loss =
        let options = Validate.csKd options |> Validate.orThrow "CS-KD options"
        Tensors.requireMatrix "partnerLogits" partnerLogits
        let ce = crossEntropy (logits, labels)
        let kd =
            Tensors.scoped (fun () ->
                let targets =
                    using (torch.no_grad ()) (fun _ ->
                        torch.nn.functional.softmax (partnerLogits.detach().div (Tensors.scalar options.Temperature), dim = 1L))
                distillation (logits, targets, options.Temperature))
        weighted [| { Name = "ce"; Weight = 1.0; Value = ce }; { Name = "kd"; Weight = options.Lambda; Value = kd } |]

    /// <summary>PS-KD's progressive weight αₜ = α_T · t / T at the 0-based <paramref name="epoch"/> of
    /// <paramref name="epochs"/> (t = epoch + 1, so the last epoch uses α_T itself).</summary>
    [<CompiledName("PsKdAlpha")>]
    let psKdAlpha (options: PsKdOptions, epoch: int, epochs: int) : float =
        if epochs < 1 then invalidArg "epochs" $"epochs must be >= 1, got {epochs}"
        options.Alpha * float (epoch + 1) / float epochs

    /// <summary>PS-KD (Kim et al. 2021): cross-entropy against the progressively refined target
    /// (1 − αₜ)·y + αₜ·pₜ₋₁(x), averaged over the batch, where pₜ₋₁(x) is the model's own softmax prediction for the
    /// same training image at its previous visit (the one-hot label before the first).</summary>
    /// <param name="logits">z, N×K. Gradients flow.</param>
    /// <param name="labels">y, int64 vector of N class indices.</param>
    /// <param name="previous">pₜ₋₁(x), N×K probability rows; no gradient reaches them.</param>
    /// <param name="alpha">αₜ ∈ [0, 1] (see <see cref="M:Bake.Core.Losses.PsKdAlpha"/>).</param>
    /// <returns>One term, "soft_ce" (weight 1).</returns>
    [<CompiledName("PsKd")>]
    let psKd (logits: torch.Tensor, labels: torch.Tensor, previous: torch.Tensor, alpha: float) : Loss =
        Tensors.requireMatrix "logits" logits
        Tensors.requireLabels labels logits
        if previous.shape <> logits.shape then
            invalidArg "previous" $"previous predictions {Tensors.describe previous} must have the shape of logits {Tensors.describe logits}"
        if not (alpha >= 0.0 && alpha <= 1.0) then invalidArg "alpha" $"alpha must be in [0, 1], got {alpha}"
        let softCe =
            Tensors.scoped (fun () ->
                let targets = (labelTargets labels logits (1.0 - alpha) 0.0).add (previous.detach().``to``(logits.dtype).mul (Tensors.scalar alpha))
                softCrossEntropy (logits, targets))
        weighted [| { Name = "soft_ce"; Weight = 1.0; Value = softCe } |]

    /// <summary>DLB (Shen et al. 2022): cross-entropy over all N images plus α · τ² · (1/r) Σ KL(p̃ᵢ ‖ softmax(zᵢ/τ))
    /// over the first r images of the batch, the ones the previous iteration also trained on, where p̃ᵢ is that
    /// iteration's softened prediction softmax(z'ᵢ/τ), kept without gradient. With r = 0 (the run's first batch) the
    /// consistency term is 0.</summary>
    /// <param name="logits">z, N×K. Gradients flow through both terms.</param>
    /// <param name="labels">y, int64 vector of N class indices.</param>
    /// <param name="previous">p̃, r×K probability rows (r ≤ N) for the batch's first r images; detached here.</param>
    /// <param name="options">τ and α.</param>
    /// <returns>Terms "ce" (weight 1) and "kd" (weight α).</returns>
    [<CompiledName("Dlb")>]
    let dlb (logits: torch.Tensor, labels: torch.Tensor, previous: torch.Tensor, options: DlbOptions) : Loss =
        let options = Validate.dlb options |> Validate.orThrow "DLB options"
        Tensors.requireMatrix "previous" previous
        let repeated = previous.shape[0]
        if repeated > logits.shape[0] || previous.shape[1] <> logits.shape[1] then
            invalidArg "previous" $"previous predictions {Tensors.describe previous} must cover at most the {logits.shape[0]} rows of logits {Tensors.describe logits}"
        let ce = crossEntropy (logits, labels)
        let kd =
            if repeated = 0L then Tensors.scoped (fun () -> logits.sum().mul (Tensors.scalar 0.0))
            else distillation (logits.narrow (0L, 0L, repeated), previous, options.Temperature)
        weighted [| { Name = "ce"; Weight = 1.0; Value = ce }; { Name = "kd"; Weight = options.Weight; Value = kd } |]
