namespace Bake.Core

open System

/// <summary>Learning-rate policies (pycls <c>lr_policy</c>): a pure function of the training position.</summary>
type LrPolicy =
    /// <summary>Cosine decay from the base rate to 0 over the run (pycls <c>cos</c>).</summary>
    | Cosine
    /// <summary>Multiply by <c>factor</c> at each listed epoch (pycls <c>steps</c>, PyTorch MultiStepLR).</summary>
    | MultiStep of milestones: int list * factor: float
    /// <summary>Constant rate.</summary>
    | Constant

/// <summary>A complete learning-rate schedule.</summary>
[<NoComparison>]
type Schedule =
    {
        /// <summary>The rate after warmup, before decay (already scaled if the scaling rule is used).</summary>
        BaseLr: float
        /// <summary>The decay policy.</summary>
        Policy: LrPolicy
        /// <summary>Total epochs of the run.</summary>
        Epochs: int
        /// <summary>Linear warmup length in epochs (0 = none).</summary>
        WarmupEpochs: int
        /// <summary>The warmup starts at BaseLr × WarmupFactor (pycls: 0.1).</summary>
        WarmupFactor: float
        /// <summary>Update the rate every iteration (true) or once per epoch like pycls (false).</summary>
        PerIteration: bool
    }

/// <summary>Learning-rate schedules: cosine with linear warmup, multi-step, constant; per epoch or per iteration.</summary>
[<RequireQualifiedAccess>]
module Schedules =

    /// <summary>The paper's linear scaling rule (§4.2): base_lr × batch / 256.</summary>
    [<CompiledName("ScaleLr")>]
    let scaleLr (baseLr: float, batchSize: int) : float = baseLr * float batchSize / 256.0

    /// <summary>The decay factor at a (possibly fractional) epoch, without warmup.</summary>
    let private decay (schedule: Schedule) (epoch: float) =
        match schedule.Policy with
        | Constant -> 1.0
        | Cosine -> 0.5 * (1.0 + Math.Cos(Math.PI * epoch / float schedule.Epochs))
        | MultiStep (milestones, factor) ->
            let passed = milestones |> List.filter (fun m -> epoch >= float m) |> List.length
            Math.Pow(factor, float passed)

    /// <summary>The learning rate at <paramref name="epoch"/> (0-based) and iteration <paramref name="iteration"/>
    /// of <paramref name="iterationsPerEpoch"/>. Per-epoch schedules ignore the iteration (pycls
    /// <c>get_epoch_lr</c>); per-iteration schedules use the fractional epoch. Warmup multiplies linearly
    /// from WarmupFactor to 1 over WarmupEpochs.</summary>
    [<CompiledName("LearningRate")>]
    let learningRate (schedule: Schedule, epoch: int, iteration: int, iterationsPerEpoch: int) : float =
        let position =
            if schedule.PerIteration && iterationsPerEpoch > 0 then
                float epoch + float iteration / float iterationsPerEpoch
            else
                float epoch
        let warmup =
            if position < float schedule.WarmupEpochs then
                let alpha = position / float schedule.WarmupEpochs
                schedule.WarmupFactor * (1.0 - alpha) + alpha
            else
                1.0
        schedule.BaseLr * decay schedule position * warmup
