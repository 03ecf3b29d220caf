namespace Bake.Core

open System
open System.Diagnostics
open TorchSharp
open Bake.Core.Models

/// <summary>What <see cref="M:Bake.Core.Timing.Measure(Bake.Core.TimingOptions)"/> times: a model on random images.</summary>
[<NoComparison>]
type TimingOptions =
    {
        /// <summary>A model registry name.</summary>
        Model: string
        /// <summary>K, the width of the logits.</summary>
        Classes: int
        /// <summary>Image channels.</summary>
        Channels: int
        /// <summary>The side of the square images.</summary>
        ImageSize: int
        /// <summary>N, images per batch.</summary>
        Batch: int
        /// <summary>Timed iterations per measurement (the median is reported).</summary>
        Iterations: int
        /// <summary>Untimed iterations before each measurement.</summary>
        Warmup: int
        /// <summary>Some options: also time the BAKE step and its soft targets + KD term; None: the CE baseline only.</summary>
        Bake: BakeOptions option
        /// <summary>Channels-last images, weights and buffers (TRAIN.CHANNELS_LAST), or the standard layout.</summary>
        ChannelsLast: bool
    }

    /// <summary>Batch 128 of 3×32×32 images, 10 classes, 20 timed iterations after 3 warm-up ones, BAKE with the
    /// paper's defaults, channels-last (training's default).</summary>
    static member Default(model: string) =
        { Model = model; Classes = 10; Channels = 3; ImageSize = 32; Batch = 128; Iterations = 20; Warmup = 3; Bake = Some BakeOptions.Default
          ChannelsLast = Keys.TRAIN.CHANNELS_LAST.Default }

/// <summary>Median wall-clock times of one step, in milliseconds (like pycls' <c>time_model</c>).</summary>
[<NoComparison>]
type TimingResult =
    {
        /// <summary>What was timed.</summary>
        Options: TimingOptions
        /// <summary>The model's parameter count.</summary>
        Parameters: int64
        /// <summary>The libtorch intra-op threads used.</summary>
        Threads: int
        /// <summary>Forward pass in eval mode without autograd (inference).</summary>
        ForwardMs: float
        /// <summary>Forward pass in train mode + cross-entropy + backward (a vanilla training step without the
        /// optimizer update).</summary>
        TrainStepMs: float
        /// <summary>Forward (features and logits) + the BAKE loss + backward, when BAKE was timed.</summary>
        BakeStepMs: float option
        /// <summary>What BAKE adds to a step, timed on its own: the soft targets (affinity, linear solve) from the
        /// batch's features and logits, the KD term and its backward to the logits, when BAKE was timed.</summary>
        SoftTargetsKdMs: float option
    }

    /// <summary>BAKE's extra computation as a percentage of a vanilla training step.</summary>
    member this.OverheadPercent = this.SoftTargetsKdMs |> Option.map (fun ms -> 100.0 * ms / this.TrainStepMs)

/// <summary>Timing of models and of BAKE's extra work per training step, on random images of a chosen shape.</summary>
[<RequireQualifiedAccess>]
module Timing =

    /// <summary>The median of a non-empty array.</summary>
    let private median (values: float[]) =
        let sorted = Array.sort values
        let n = sorted.Length
        if n % 2 = 1 then sorted[n / 2] else (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0

    /// <summary>Runs every step <c>warmup</c> times, then <c>iterations</c> rounds that time each step once, in turn;
    /// the median of each step in ms. Interleaving gives every step the same share of a busy machine's slow moments,
    /// so their ratios stay meaningful. Each run has its own dispose scope, so its tensors are freed before the next.</summary>
    let private timeInterleaved (warmup: int) (iterations: int) (steps: (unit -> unit) list) : float list =
        let once (step: unit -> unit) =
            use _ = torch.NewDisposeScope()
            step ()
        for _ in 1 .. warmup do
            steps |> List.iter once
        let times = steps |> List.map (fun _ -> ResizeArray<float>())
        for _ in 1 .. iterations do
            for step, measured in List.zip steps times do
                let clock = Stopwatch.StartNew()
                once step
                measured.Add clock.Elapsed.TotalMilliseconds
        times |> List.map (fun measured -> median (measured.ToArray()))

    let private validate (options: TimingOptions) =
        let problems =
            [ if options.Batch < 1 then $"batch {options.Batch}: expected at least 1 image"
              if options.Iterations < 1 then $"iterations {options.Iterations}: expected at least 1"
              if options.Warmup < 0 then $"warm-up iterations {options.Warmup}: expected 0 or more"
              if options.Channels < 1 then $"channels {options.Channels}: expected at least 1"
              if options.Classes < 1 then $"classes {options.Classes}: expected at least 1"
              if options.ImageSize < 1 then $"image size {options.ImageSize}: expected at least 1 pixel"
              match options.Bake |> Option.map Validate.bake with
              | Some (Error bakeProblems) -> yield! bakeProblems
              | _ -> () ]
        if not problems.IsEmpty then raise (UsageException(String.Join("; ", problems)))

    /// <summary>Times a model on random images (CPU, float32): inference, a vanilla training step and, for BAKE, the
    /// BAKE step and BAKE's own soft-target + KD computation. The median of <c>Iterations</c> timed runs after
    /// <c>Warmup</c> untimed ones, the steps interleaved; the optimizer update is not included (as in pycls).</summary>
    /// <exception cref="T:Bake.Core.UsageException">An unknown model, or a count or size out of range.</exception>
    [<CompiledName("Measure")>]
    let measure (options: TimingOptions) : TimingResult =
        validate options
        Runtime.keepFreedMemory ()
        torch.manual_seed 0L |> ignore
        use model = Models.create (options.Model, options.Classes, options.Channels, options.ImageSize)
        Classifier.useChannelsLast (model, options.ChannelsLast)
        let n, c, s = int64 options.Batch, int64 options.Channels, int64 options.ImageSize
        // In the model's layout, as the training loop hands them over.
        use images = using (torch.randn (n, c, s, s)) (fun drawn -> if options.ChannelsLast then MemoryFormat.channelsLast drawn else drawn.alias ())
        use labels = torch.randint (int64 options.Classes, [| n |], dtype = torch.int64)
        // Frees the fixed features and logits of the BAKE measurement at the end.
        use _ = torch.NewDisposeScope()
        // Inference in eval mode; the training steps switch the model back to train mode.
        let forward () =
            model.eval ()
            use _ = torch.no_grad ()
            model.forward images |> ignore
        let trainStep () =
            model.train ()
            model.zero_grad ()
            (Losses.vanilla (model.forward images, labels)).Total.backward ()
        let bakeSteps =
            match options.Bake with
            | None -> []
            | Some bake ->
                let bakeStep () =
                    model.train ()
                    model.zero_grad ()
                    let output = Classifier.featuresAndLogits (model, images)
                    (Losses.bake (output.Features, output.Logits, labels, bake)).Total.backward ()
                // BAKE's own work on one batch's (fixed) features and logits: what a step pays on top of CE.
                let output = using (torch.no_grad ()) (fun _ -> Classifier.featuresAndLogits (model, images))
                let logits = output.Logits.detach().clone().requires_grad_ true
                let softTargetsKd () =
                    logits.grad <- null
                    let targets = Propagation.softTargets (output.Features, logits, bake)
                    (Losses.distillation (logits, targets, bake.Temperature)).backward ()
                [ bakeStep; softTargetsKd ]
        let medians = timeInterleaved options.Warmup options.Iterations ([ forward; trainStep ] @ bakeSteps)
        let forward, trainStep = medians[0], medians[1]
        let bakeStep, softTargetsKd =
            match medians with
            | [ _; _; step; extra ] -> Some step, Some extra
            | _ -> None, None
        { Options = options
          Parameters = Classifier.parameterCount model
          Threads = torch.get_num_threads ()
          ForwardMs = forward
          TrainStepMs = trainStep
          BakeStepMs = bakeStep
          SoftTargetsKdMs = softTargetsKd }
