namespace Bake.Core

open System

/// <summary>How the soft targets are propagated through the batch (paper §3.2, Fig. 5).</summary>
type PropagationForm =
    /// <summary>Infinite propagation in closed form, Eq. (9) (the paper's and official code's default).</summary>
    | ClosedForm
    /// <summary>A single propagation step, Eq. (6).</summary>
    | OneStep
    /// <summary>t propagation steps of Eq. (7), starting from Q₀ = P.</summary>
    | Steps of steps: int

/// <summary>BAKE hyper-parameters. Defaults follow the paper (§4.2 "Training details").</summary>
[<NoComparison>]
type BakeOptions =
    {
        /// <summary>τ, the softmax temperature of Eq. (1) used for P and the KD term (paper: 4).</summary>
        Temperature: float
        /// <summary>ω, the ensembling weight of Eq. (6)–(9), in [0, 1) (paper: 0.5).</summary>
        Omega: float
        /// <summary>λ, the weight of the distillation term in Eq. (2) (paper: 1).</summary>
        Lambda: float
        /// <summary>The propagation form (closed form by default).</summary>
        Propagation: PropagationForm
    }

    /// <summary>τ = 4, ω = 0.5, λ = 1, closed-form propagation.</summary>
    static member Default = { Temperature = 4.0; Omega = 0.5; Lambda = 1.0; Propagation = ClosedForm }

    /// <summary>The number of propagation steps of Eq. (7) when steps are asked for without a count (3).</summary>
    static member DefaultSteps = 3

/// <summary>Label smoothing as in the Tf-KD code (docs/official-code.md): 1 − α on the true class, α/(K−1) elsewhere.</summary>
[<NoComparison>]
type LabelSmoothingOptions =
    {
        /// <summary>α, the probability mass moved off the true class (default 0.1).</summary>
        Alpha: float
    }

    /// <summary>α = 0.1.</summary>
    static member Default = { Alpha = 0.1 }

/// <summary>Tf-KD with a manually designed teacher (Tf-KD_reg, docs/official-code.md). Defaults: CIFAR-100 ResNet-18.</summary>
[<NoComparison>]
type TfKdRegOptions =
    {
        /// <summary>α, the weight of the regularisation term; CE gets 1 − α (default 0.1).</summary>
        Alpha: float
        /// <summary>T, the temperature applied to the designed teacher's probabilities (default 20).</summary>
        Temperature: float
        /// <summary>The multiplier that compensates KLDivLoss's element-wise mean (default 100).</summary>
        Multiplier: float
        /// <summary>The designed teacher's probability on the true class (default 0.99).</summary>
        Correct: float
    }

    /// <summary>α = 0.1, T = 20, multiplier = 100, correct-class probability 0.99.</summary>
    static member Default = { Alpha = 0.1; Temperature = 20.0; Multiplier = 100.0; Correct = 0.99 }

/// <summary>Class-wise self-knowledge distillation (CS-KD, docs/official-code.md).</summary>
[<NoComparison>]
type CsKdOptions =
    {
        /// <summary>T, the temperature of both sides of the KL term (default 4).</summary>
        Temperature: float
        /// <summary>λ, the weight of the KL term (default 1; the CUB example of CS-KD uses 3).</summary>
        Lambda: float
    }

    /// <summary>T = 4, λ = 1.</summary>
    static member Default = { Temperature = 4.0; Lambda = 1.0 }

/// <summary>PS-KD (Kim et al., ICCV 2021): progressive self-knowledge distillation. The target of a sample at epoch t
/// is (1 − αₜ)·y + αₜ·pₜ₋₁(x), with αₜ = α_T · t / T (docs/official-code.md).</summary>
[<NoComparison>]
type PsKdOptions =
    {
        /// <summary>α_T, the weight of the model's own past prediction at the last epoch, in [0, 1] (paper: 0.8).</summary>
        Alpha: float
    }

    /// <summary>α_T = 0.8.</summary>
    static member Default = { Alpha = 0.8 }

/// <summary>DLB (Shen et al., CVPR 2022): self-distillation from the last mini-batch (docs/official-code.md).</summary>
[<NoComparison>]
type DlbOptions =
    {
        /// <summary>τ, the temperature of both sides of the consistency term (paper: 3).</summary>
        Temperature: float
        /// <summary>α, the weight of the consistency term (paper: 1).</summary>
        Weight: float
    }

    /// <summary>τ = 3, α = 1.</summary>
    static member Default = { Temperature = 3.0; Weight = 1.0 }

/// <summary>Validation of the option records: each function reports every invalid field at once.</summary>
[<RequireQualifiedAccess>]
module Validate =
    let private finite (v: float) = not (Double.IsNaN v || Double.IsInfinity v)

    let private check (problems: ResizeArray<string>) condition (message: string) =
        if not condition then problems.Add message

    let private result value (problems: ResizeArray<string>) =
        if problems.Count = 0 then Ok value else Error(List.ofSeq problems)

    /// <summary>The problem with an ensembling weight ω, if any: it must lie in [0, 1); ω = 1 makes
    /// I − ωÂ singular (paper §4.4) and ω &gt; 1 makes propagation diverge.</summary>
    [<CompiledName("OmegaProblem")>]
    let omegaProblem (omega: float) : string option =
        if finite omega && omega >= 0.0 && omega < 1.0 then None
        elif omega = 1.0 then
            Some "Omega = 1 is not allowed: I − ωÂ is singular at ω = 1 (expected a value in [0, 1), paper default 0.5)"
        else
            Some $"Omega = {Tensors.fmt omega} is out of range: expected a value in [0, 1) (paper default 0.5)"

    /// <summary>Throws <see cref="T:System.ArgumentOutOfRangeException"/> when ω is not in [0, 1).</summary>
    [<CompiledName("RequireOmega")>]
    let requireOmega (omega: float) : unit =
        match omegaProblem omega with
        | Some message -> raise (ArgumentOutOfRangeException("omega", omega, message))
        | None -> ()

    let private positive (problems: ResizeArray<string>) (name: string) (value: float) (expected: string) =
        check problems (finite value && value > 0.0) $"{name} = {Tensors.fmt value} is invalid: expected {expected}"

    /// <summary>Checks τ &gt; 0, ω ∈ [0, 1), λ ≥ 0 and a step count ≥ 1; lists every problem.</summary>
    [<CompiledName("Bake")>]
    let bake (options: BakeOptions) : Result<BakeOptions, string list> =
        let problems = ResizeArray()
        positive problems "Temperature" options.Temperature "a finite number > 0 (paper default 4)"
        omegaProblem options.Omega |> Option.iter problems.Add
        check problems (finite options.Lambda && options.Lambda >= 0.0)
            $"Lambda = {Tensors.fmt options.Lambda} is invalid: expected a finite number >= 0 (paper default 1)"
        match options.Propagation with
        | Steps steps when steps < 1 ->
            problems.Add $"Propagation steps = {steps} is invalid: expected at least 1 step"
        | _ -> ()
        result options problems

    /// <summary>Checks α ∈ [0, 1).</summary>
    [<CompiledName("LabelSmoothing")>]
    let labelSmoothing (options: LabelSmoothingOptions) : Result<LabelSmoothingOptions, string list> =
        let problems = ResizeArray()
        check problems (finite options.Alpha && options.Alpha >= 0.0 && options.Alpha < 1.0)
            $"Alpha = {Tensors.fmt options.Alpha} is invalid: expected a value in [0, 1) (default 0.1)"
        result options problems

    /// <summary>Checks α ∈ [0, 1], T &gt; 0, multiplier &gt; 0 and the correct-class probability in (0, 1].</summary>
    [<CompiledName("TfKdReg")>]
    let tfKdReg (options: TfKdRegOptions) : Result<TfKdRegOptions, string list> =
        let problems = ResizeArray()
        check problems (finite options.Alpha && options.Alpha >= 0.0 && options.Alpha <= 1.0)
            $"Alpha = {Tensors.fmt options.Alpha} is invalid: expected a value in [0, 1] (default 0.1)"
        positive problems "Temperature" options.Temperature "a finite number > 0 (default 20)"
        positive problems "Multiplier" options.Multiplier "a finite number > 0 (default 100)"
        check problems (finite options.Correct && options.Correct > 0.0 && options.Correct <= 1.0)
            $"Correct = {Tensors.fmt options.Correct} is invalid: expected a probability in (0, 1] (default 0.99)"
        result options problems

    /// <summary>Checks T &gt; 0 and λ ≥ 0.</summary>
    [<CompiledName("CsKd")>]
    let csKd (options: CsKdOptions) : Result<CsKdOptions, string list> =
        let problems = ResizeArray()
        positive problems "Temperature" options.Temperature "a finite number > 0 (default 4)"
        check problems (finite options.Lambda && options.Lambda >= 0.0)
            $"Lambda = {Tensors.fmt options.Lambda} is invalid: expected a finite number >= 0 (default 1)"
        result options problems

    /// <summary>Checks α_T ∈ [0, 1].</summary>
    [<CompiledName("PsKd")>]
    let psKd (options: PsKdOptions) : Result<PsKdOptions, string list> =
        let problems = ResizeArray()
        check problems (finite options.Alpha && options.Alpha >= 0.0 && options.Alpha <= 1.0)
            $"Alpha = {Tensors.fmt options.Alpha} is invalid: expected a value in [0, 1] (paper default 0.8)"
        result options problems

    /// <summary>Checks τ &gt; 0 and α ≥ 0.</summary>
    [<CompiledName("Dlb")>]
    let dlb (options: DlbOptions) : Result<DlbOptions, string list> =
        let problems = ResizeArray()
        positive problems "Temperature" options.Temperature "a finite number > 0 (paper default 3)"
        check problems (finite options.Weight && options.Weight >= 0.0)
            $"Weight = {Tensors.fmt options.Weight} is invalid: expected a finite number >= 0 (paper default 1)"
        result options problems

    /// <summary>Returns the options or throws one <see cref="T:System.ArgumentException"/> listing every problem.</summary>
    [<CompiledName("OrThrow")>]
    let orThrow (what: string) (validated: Result<'T, string list>) : 'T =
        match validated with
        | Ok value -> value
        | Error problems -> invalidArg what ($"Invalid {what}:" + String.concat "" (problems |> List.map (fun p -> "\n  - " + p)))
