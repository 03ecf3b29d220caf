/// `bake train` and `bake eval`: parse, then call Bake.Core.
module Bake.Cli.TrainCommand

open System
open System.Threading
open Argu
open Bake.Core

type TrainArgs =
    | [<AltCommandLine("-c")>] Config of path: string
    | [<AltCommandLine("-s")>] Set of assignment: string
    | Out of directory: string
    | Resume
    | Dry_Run
    | Weights of path: string
    | Device of device: string
    interface IArgParserTemplate with
        member this.Usage =
            match this with
            | Config _ -> "pycls-schema YAML config (default: the embedded BAKE job, configs/embedded/BAKE-cnn.yaml)."
            | Set _ -> "override a key, e.g. --set TRAIN.OMEGA=0.3 (repeatable; unknown keys are errors)."
            | Out _ -> "run directory (OUT_DIR)."
            | Resume -> "continue the run in the run directory from its last checkpoint."
            | Dry_Run -> "print the resolved config and the model summary, then exit without reading data."
            | Weights _ -> "initial weights (.safetensors, .pth, or an official BAKE/pycls checkpoint)."
            | Device _ -> "cpu, cuda or cuda:N (default cpu)."

type EvalArgs =
    | [<Mandatory>] Checkpoint of path: string
    | Dataset of spec: string
    | Batch_Size of size: int
    | Workers of count: int
    interface IArgParserTemplate with
        member this.Usage =
            match this with
            | Checkpoint _ -> "a checkpoint folder or a run directory (its best checkpoint, else its last)."
            | Dataset _ -> "dataset to evaluate on (default: the run's TRAIN.DATASET): embedded, fashion-mnist, cifar10, a folder…"
            | Batch_Size _ -> "evaluation batch size (default 256)."
            | Workers _ -> "decoding workers (default 2)."

/// Resolves the configuration from the arguments: file or default job, then --set, --out, --weights, --device.
let resolveConfig (args: ParseResults<TrainArgs>) : Config =
    let overrides =
        args.GetResults Set
        @ (args.TryGetResult Out |> Option.map (fun d -> "OUT_DIR=" + d) |> Option.toList)
        @ (args.TryGetResult Weights |> Option.map (fun w -> "TRAIN.WEIGHTS=" + w) |> Option.toList)
        @ (args.TryGetResult Device |> Option.map (fun d -> "DEVICE=" + d) |> Option.toList)
    match args.TryGetResult Config with
    | Some path -> Configs.load path overrides
    | None -> Configs.defaultJob overrides

let train (args: ParseResults<TrainArgs>) : int =
    let config = resolveConfig args
    let settings = Settings.ofConfigOrThrow config
    if args.Contains Dry_Run then
        printfn "%s" (Trainer.dryRun (config, settings))
        0
    else
        use cancellation = new CancellationTokenSource()
        Console.CancelKeyPress.Add(fun e ->
            if not cancellation.IsCancellationRequested then
                eprintfn "\nstopping after this iteration and writing a checkpoint (Ctrl-C again to abort)…"
                e.Cancel <- true
                cancellation.Cancel())
        let outcome = Trainer.run (config, settings, args.Contains Resume, Terminal.trainingReporter settings.LogPeriod, cancellation.Token)
        Terminal.printOutcome outcome
        if outcome.Cancelled then 130 else 0

let eval (args: ParseResults<EvalArgs>) : int =
    let state, metrics =
        Trainer.evaluateCheckpoint (args.GetResult Checkpoint, args.TryGetResult Dataset, args.GetResult(Workers, 2), args.GetResult(Batch_Size, 256))
    printfn "%s (%s, %d images): top-1 %.2f%%  top-5 %.2f%%  NLL %.4f  ECE %.2f%%" (args.GetResult Checkpoint) state.Model metrics.Count metrics.Top1 metrics.Top5 metrics.Nll metrics.Ece
    Terminal.printPerClass state.Classes metrics
    0
