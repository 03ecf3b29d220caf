// Where an epoch of a training job spends its time: the parts of Trainer.run and Epoch.train timed one by one on the
// job's own setup (docs/performance.md, "The loop").
//
//     dotnet build Bake.sln -c Release
//     dotnet fsi benchmarks/profile-epoch.fsx [--set KEY=VALUE ...]
//
// Without --set it profiles the default job (configs/embedded/BAKE-cnn.yaml); the keys of `bake train --set` apply.
// Run it on an idle machine without OMP_WAIT_POLICY (or with the value you train with): it is a throughput measurement.
#load "../scripts/Bake.fsx"

open System
open System.Diagnostics
open System.IO
open System.Threading
open TorchSharp
open Bake.Core
open Bake.Core.Data

let overrides =
    fsi.CommandLineArgs |> Array.skip 1 |> Array.pairwise |> Array.choose (fun (a, b) -> if a = "--set" then Some b else None) |> List.ofArray
let outDir = Path.Combine(Path.GetTempPath(), $"bake-profile-{Guid.NewGuid():N}")
let config = Configs.defaultJob (overrides @ [ $"OUT_DIR={outDir}" ])
let settings = Settings.ofConfigOrThrow config

/// Median ms of `repeats` runs of `action` after one warm-up run.
let time repeats (action: unit -> unit) =
    action ()
    let times = Array.init repeats (fun _ -> let c = Stopwatch.StartNew() in action (); c.Elapsed.TotalMilliseconds)
    Array.sortInPlace times
    times[repeats / 2]

let report (what: string) (ms: float) = printfn "  %-58s %10.3f ms" what ms

do
    use setup = Setup.create (config, settings, false)
    let plan = Epoch.plan (settings, setup.Train.Labels, 0)
    printfn "profile: %s, %s, %d iterations per epoch, batch %d, %d threads, OMP_WAIT_POLICY=%s, channels-last %b"
        settings.Model setup.Dataset.Name plan.Length settings.BatchSize (torch.get_num_threads ())
        (Environment.GetEnvironmentVariable "OMP_WAIT_POLICY" |> Option.ofObj |> Option.defaultValue "(unset)") settings.ChannelsLast
    // The whole epoch as Trainer.run trains it (its first, untimed here, warms up).
    let quiet _ = ()
    let epoch e = Epoch.train (setup, e, EpochProgress.Empty, None, quiet, quiet, CancellationToken.None) |> ignore
    epoch 0
    let epochClock = Stopwatch.StartNew()
    epoch 1
    let epochMs = epochClock.Elapsed.TotalMilliseconds
    report "training epoch (Epoch.train), per iteration" (epochMs / float plan.Length)
    for workers in [ 0; settings.Workers ] |> List.distinct do
        let loaderMs =
            time 3 (fun () ->
                for batch in Loader.epoch (setup.Train, plan, setup.TrainTransform, settings.Seed, 0, workers) do
                    (batch :> IDisposable).Dispose())
        report $"loader alone ({workers} workers), per batch" (loaderMs / float plan.Length)
    // One step's parts on a fixed batch.
    use batch = Loader.makeBatch (setup.Train, plan[0], setup.TrainTransform, settings.Seed, 0, 0)
    let forwardLoss () =
        settings.Method.Step setup.Carried
            { Model = setup.Model; Images = batch.Images; Labels = batch.Labels; MixedTargets = None; Indices = plan[0]; Epoch = 0; Epochs = settings.Epochs }
    let stepMs = time 20 (fun () ->
        use _ = torch.NewDisposeScope()
        setup.Optimizer.zero_grad ()
        let result = forwardLoss ()
        result.Loss.Total.backward ()
        setup.Optimizer.step () |> ignore)
    report "step: zero_grad + method forward/loss + backward + SGD" stepMs
    let backwardOnlyMs = time 20 (fun () ->
        use _ = torch.NewDisposeScope()
        setup.Optimizer.zero_grad ()
        (forwardLoss ()).Loss.Total.backward ())
    report "  of which SGD update (step − the same without it)" (stepMs - backwardOnlyMs)
    let optimizerMs = time 50 (fun () -> use _ = torch.NewDisposeScope() in setup.Optimizer.step () |> ignore)
    report "  SGD update alone (TorchSharp's per-parameter loop)" optimizerMs
    use result = (forwardLoss ()).Loss.Total.detach ()
    let itemMs = time 200 (fun () -> use _ = torch.NewDisposeScope() in result.to_type(torch.float64).item<float> () |> ignore)
    report "one .item() read of the loss" itemMs
    setup.Model.eval ()
    for size in [ 100; 250; 500; 1000; 2000 ] do
        let evalMs = time 3 (fun () -> Evaluation.evaluate (setup.Model, setup.TestDataset, setup.TestTransform, size, setup.Device, settings.Workers) |> ignore)
        report $"evaluation of {setup.TestDataset.Test.Count} test images, batch {size}" evalMs
    setup.Model.train ()
    let row = { Epoch = 1; Iterations = plan.Length; LearningRate = 0.1; TrainLoss = 1.0; TrainTerms = [ "ce", 0.9; "kd", 0.1 ]; TrainTop1 = 50.0; Test = None; Seconds = 1.0 }
    RunFiles.writeSummary (Path.Combine(setup.RunDir, Summary.FileName)) [ row; { row with Epoch = 2 } ]
    report "figures (Plots.summaryFigures: loss.png + accuracy.png)" (time 5 (fun () -> Plots.summaryFigures setup.RunDir |> ignore))
    let state =
        { Epoch = 1; Progress = EpochProgress.Empty; ConfigHash = setup.ConfigHash; Model = settings.Model; Classes = setup.Dataset.Classes
          ImageShape = setup.Dataset.ImageShape; Mean = setup.Dataset.Mean; Std = setup.Dataset.Std; History = [ row ] }
    report "checkpoint (Checkpoints.save)" (time 5 (fun () -> Checkpoints.save (setup.RunDir, "epoch_0001", [ "last" ], setup.Model, setup.Optimizer, setup.Carried, state) |> ignore))
    use tensorBoard = new TensorBoardLog(setup.RunDir, settings.LogPeriod, true)
    report "TensorBoard event (one iteration record)" (time 50 (fun () -> tensorBoard.Record(Iteration(1, settings.LogPeriod, plan.Length, 1.0, 50.0, 1000.0, 0.1))))
Directory.Delete(outDir, true)
