namespace Bake.Core

open System
open System.IO
open System.Threading
open System.Text.Json.Nodes
open Bake.Core.Models
open Bake.Core.Distributed

/// <summary>The result of a training run.</summary>
[<NoComparison>]
type TrainingOutcome =
    { OutDir: string
      History: EpochSummary list
      /// <summary>Test metrics of the final epoch (None when cancelled before any evaluation).</summary>
      Final: EvalMetrics option
      /// <summary>The evaluated epoch with the best test top-1, and its metrics.</summary>
      Best: (int * EvalMetrics) option
      Classes: string[]
      /// <summary>True when the run stopped early on cancellation (a resumable checkpoint was written).</summary>
      Cancelled: bool }

/// <summary>The training engine in pycls's shape: <see cref="M:Bake.Core.Setup.Create"/> sets a run up,
/// <see cref="M:Bake.Core.Epoch.Train"/> trains one epoch, <see cref="M:Bake.Core.Evaluation.Evaluate"/> tests, and
/// <see cref="M:Bake.Core.Trainer.Run"/> is the short loop around them that keeps the run's files: log.jsonl,
/// summary.csv, figures, TensorBoard events and checkpoints.</summary>
[<RequireQualifiedAccess>]
module Trainer =

    /// <summary>The evaluated epoch with the best test top-1 (the earliest of equal ones).</summary>
    let private bestOf (history: EpochSummary list) =
        history
        |> List.choose (fun r -> r.Test |> Option.map (fun m -> r.Epoch, m))
        |> function
            | [] -> None
            | evaluated -> Some(evaluated |> List.maxBy (fun (epoch, m) -> m.Top1, -epoch))

    /// <summary>The summary row of a completed epoch.</summary>
    let private summaryOf epoch iterations lr (progress: EpochProgress) test seconds : EpochSummary =
        { Epoch = epoch + 1
          Iterations = iterations
          LearningRate = lr
          TrainLoss = progress.LossSum / float (max 1 iterations)
          TrainTerms = progress.TermSums |> List.map (fun (n, v) -> n, v / float (max 1 iterations))
          TrainTop1 = 100.0 * float progress.Correct / float (max 1L progress.Seen)
          Test = test
          Seconds = seconds }

    /// <summary>One warning when a per-class sampler meets classes with a single training image: it repeats such an
    /// image as its own partner (Sampling.bakeBatches, pairBatches), which gives it no same-class neighbour.</summary>
    let private warnSingletons (setup: TrainingSetup) emit =
        let settings = setup.Settings
        let usesClassSampler = settings.IntraImages > 0 || settings.Method.Sampler = Sampler.ClassPairs
        match Sampling.singletonClasses setup.Train.Labels with
        | singles when usesClassSampler && singles.Length > 0 ->
            let shown = singles |> Array.truncate 5 |> Array.map (fun c -> setup.Dataset.Classes[c])
            let names = String.concat ", " (if singles.Length > 5 then Array.append shown [| "…" |] else shown)
            emit (Warning $"{singles.Length} class(es) have a single training image ({names}): the per-class sampler repeats such an image as its own positive")
        | _ -> ()

    /// <summary>Trains a model as the settings say, writing config.yaml, log.jsonl, summary.csv, figures, TensorBoard
    /// events and checkpoints into <c>settings.OutDir</c>. With <paramref name="resume"/>, continues from the last
    /// checkpoint there (and ends with the same summary as an uninterrupted run). Cancellation stops after the current
    /// iteration and writes a resumable checkpoint. A non-finite loss stops the run with a
    /// <see cref="T:Bake.Core.BakeException"/> naming the iteration and the last good checkpoint.</summary>
    [<CompiledName("Run")>]
    let run (config: Config, settings: TrainingSettings, resume: bool, report: Action<TrainingEvent>, cancellation: CancellationToken) : TrainingOutcome =
        use setup = Setup.create (config, settings, resume)
        let runDir = setup.RunDir
        // On several processes (docs/distributed.md) rank 0 alone reports and writes the run directory.
        let root = World.Current.IsRoot
        let finished = setup.Resumed |> Option.exists (fun (_, state) -> state.Epoch >= settings.Epochs)
        // A finished run is only reported: it writes nothing, not even an empty TensorBoard event file.
        use tensorBoard = new TensorBoardLog(runDir, settings.LogPeriod, settings.TensorBoard && not finished && root)
        let emit event =
            tensorBoard.Record event
            if not (isNull report) && root then report.Invoke event
        let log (record: JsonObject) = if root then RunFiles.appendLog (Path.Combine(runDir, RunFiles.LogFile)) record
        let start = setup.Resumed |> Option.map snd
        let mutable history = start |> Option.map (fun s -> s.History) |> Option.defaultValue []
        let mutable lastCheckpoint = setup.Resumed |> Option.map fst
        let saveCheckpoint name pointers epoch progress =
            let state =
                { Epoch = epoch; Progress = progress; ConfigHash = setup.ConfigHash; Model = settings.Model; Classes = setup.Dataset.Classes
                  ImageShape = [| setup.Dataset.ImageShape[0]; setup.ImageSize; setup.ImageSize |]; Mean = setup.Dataset.Mean
                  Std = setup.Dataset.Std; History = history; Threads = TorchSharp.torch.get_num_threads () }
            if root then
                let path = Checkpoints.save (runDir, name, pointers, setup.Model, setup.Optimizer, setup.Carried, state)
                lastCheckpoint <- Some path
                emit (CheckpointWritten path)
        let mutable epoch = start |> Option.map (fun s -> s.Epoch) |> Option.defaultValue 0
        let mutable progress = start |> Option.map (fun s -> s.Progress) |> Option.defaultValue EpochProgress.Empty
        let epochs = if epoch >= settings.Epochs then $"finished ({settings.Epochs} epochs)" else $"epochs {epoch + 1}–{settings.Epochs}"
        let description =
            $"{settings.Method.Name} ({settings.Method.Options}) · {settings.Model} ({Classifier.parameterCount setup.Model:N0} parameters) · {setup.Dataset.Name}: "
            + $"{setup.Train.Count} train / {setup.TestDataset.Test.Count} test images, {setup.Classes} classes · {epochs} · out {runDir}"
        emit (Started(description, setup.Dataset.Classes))
        for warning in setup.Warnings do emit (Warning warning)
        warnSingletons setup emit
        // Each (re)start is marked in the log, so lines of an attempt that was killed after its last checkpoint are
        // told apart from the lines that replace them.
        if epoch < settings.Epochs then
            let record = JsonObject()
            record["phase"] <- JsonValue.Create "start"
            record["epoch"] <- JsonValue.Create(epoch + 1)
            record["iteration"] <- JsonValue.Create progress.Iterations
            record["threads"] <- JsonValue.Create(TorchSharp.torch.get_num_threads ())
            record["processes"] <- JsonValue.Create World.Current.Size
            log record
        // loss.png and accuracy.png take ~0.25 s to draw (docs/performance.md): after an epoch they are redrawn only
        // when that is at most 2% of the time since the last drawing (so every epoch of any run whose epochs take 12 s
        // or more), and always after the last epoch.
        let figuresClock = Diagnostics.Stopwatch.StartNew()
        let mutable figureSeconds = 0.25
        let drawFigures last =
            if last || figuresClock.Elapsed.TotalSeconds >= 50.0 * figureSeconds then
                let drawing = Diagnostics.Stopwatch.StartNew()
                // A convenience: a failure to draw them (no SkiaSharp natives, a full disk) must not stop training;
                // `bake plot <run dir>` redraws them and reports the error.
                (try Plots.summaryFigures runDir |> ignore with _ -> ())
                figureSeconds <- drawing.Elapsed.TotalSeconds
                figuresClock.Restart()
        let mutable cancelled = false
        while epoch < settings.Epochs && not cancelled do
            let clock = Diagnostics.Stopwatch.StartNew()
            let secondsBefore = progress.Seconds
            match Epoch.train (setup, epoch, progress, lastCheckpoint, emit, log, cancellation) with
            | Interrupted partial ->
                cancelled <- true
                saveCheckpoint (sprintf "epoch_%04d_iter_%05d" (epoch + 1) partial.Iterations) [ "last" ] epoch partial
            | Completed(trained, iterations) ->
                let evaluated = (epoch + 1) % settings.EvalPeriod = 0 || epoch + 1 = settings.Epochs
                let test =
                    if evaluated then
                        Runtime.releaseFreedMemory ()
                        let result = DataParallel.evaluate (World.Current, setup.Model, setup.TestDataset, setup.TestTransform, settings.TestBatchSize, setup.Device, settings.Workers)
                        Runtime.releaseFreedMemory ()
                        Some result
                    else None
                let lr = Schedules.learningRate (settings.Schedule, epoch, 0, iterations)
                // The epoch's seconds count its training and its evaluation (and any time before a mid-epoch checkpoint).
                let row = summaryOf epoch iterations lr trained test (secondsBefore + clock.Elapsed.TotalSeconds)
                history <- history @ [ row ]
                if root then
                    RunFiles.writeSummary (Path.Combine(runDir, Summary.FileName)) history
                    drawFigures (epoch + 1 = settings.Epochs)
                log (RunFiles.epochJson row)
                // Native memory some TorchSharp handles hold until their finalizers run: the managed heap of the default
                // job grows only ~11 MB an epoch, too little for a full collection on its own, while the process grew
                // ~40 MB an epoch. A collection per epoch (a few ms) keeps it flat (docs/performance.md, "Memory").
                GC.Collect()
                GC.WaitForPendingFinalizers()
                progress <- EpochProgress.Empty
                let isBest = match bestOf history, test with Some(bestEpoch, _), Some _ -> bestEpoch = row.Epoch | _ -> false
                let periodic = (epoch + 1) % settings.CheckpointPeriod = 0 || epoch + 1 = settings.Epochs
                if periodic || isBest then
                    let pointers = (if periodic then [ "last" ] else []) @ (if isBest then [ "best" ] else [])
                    saveCheckpoint (sprintf "epoch_%04d" (epoch + 1)) pointers (epoch + 1) EpochProgress.Empty
                emit (EpochFinished row)
                epoch <- epoch + 1
        { OutDir = runDir
          History = history
          Final = history |> List.tryLast |> Option.bind (fun r -> if r.Epoch = settings.Epochs then r.Test else None)
          Best = bestOf history
          Classes = setup.Dataset.Classes
          Cancelled = cancelled }
