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
    | Checkpoint of path: string
    | [<AltCommandLine("-w")>] Weights of path: string
    | Model of name: string
    | Dataset of spec: string
    | Batch_Size of size: int
    | Workers of count: int
    | Fgsm of epsilons: string
    | Corruption of names: string
    | Calibrate
    | Out of path: string
    interface IArgParserTemplate with
        member this.Usage =
            match this with
            | Weights _ -> "weights to evaluate instead of a checkpoint (.pth/.safetensors state dict, torchvision names, or an official BAKE/pycls checkpoint); needs --model and --dataset."
            | Model _ -> "with --weights: the registered model the weights belong to (bake info lists them)."
            | Checkpoint _ -> "a checkpoint folder, or a run directory (its last checkpoint: the final model; checkpoints/<folder> for another)."
            | Fgsm _ -> "FGSM accuracy at these ε (pixel units in [0, 1], comma-separated), e.g. --fgsm 0.01,0.03,0.1."
            | Corruption _ -> "accuracy under corruptions at severities 1–3: gaussian-noise, gaussian-blur (comma-separated)."
            | Calibrate -> "ECE after a temperature fitted on the run's held-out training images (TRAIN.HOLDOUT_PER_CLASS)."
            | Out _ -> "write the robustness report as JSON to this file (atomically)."
            | Dataset _ -> "dataset to evaluate on (default: the one the run evaluated on, TEST.DATASET else TRAIN.DATASET): embedded, fashion-mnist, cifar10, a folder…"
            | Batch_Size _ -> "evaluation batch size (default 256)."
            | Workers _ -> "decoding workers (default 2)."

/// What `bake train --help` adds below the options: the methods of the table, with their own keys.
let example =
    let methods =
        Methods.all
        |> List.map (fun m ->
            let keys = if m.Keys.IsEmpty then "" else "\n      keys: " + (m.Keys |> List.map (fun k -> k.Key) |> String.concat ", ")
            $"  {m.Name,-16} {m.Summary}{keys}")
        |> String.concat "\n"
    "Methods (--set METHOD.NAME=<name>):\n" + methods + "\n\n"
    + "Examples:\n  bake train\n  bake train --config configs/fashion-mnist/BAKE-cnn.yaml --set TRAIN.OMEGA=0.3 --out runs/omega03\n"
    + "  bake train --set METHOD.NAME=dlb --set TRAIN.USE_BAKE=False --set TRAIN.INTRA_IMGS=0 --out runs/dlb\n"
    + "  bake train --out runs/omega03 --resume\n"
    + "(The default job is BAKE with TRAIN.USE_BAKE=True and M = 1: another method needs TRAIN.USE_BAKE=False, and CS-KD and DLB M = 0.)"

/// Resolves the configuration from the arguments: file or default job, then --set, --out, --weights, --device.
let resolveConfig (args: ParseResults<TrainArgs>) : Config =
    let overrides =
        args.GetResults Set
        @ (args.TryGetResult TrainArgs.Out |> Option.map (fun d -> Keys.OUT_DIR.Name + "=" + d) |> Option.toList)
        @ (args.TryGetResult TrainArgs.Weights |> Option.map (fun w -> Keys.TRAIN.WEIGHTS.Name + "=" + w) |> Option.toList)
        @ (args.TryGetResult Device |> Option.map (fun d -> Keys.DEVICE.Name + "=" + d) |> Option.toList)
    match args.TryGetResult Config with
    | Some path -> Configs.load (path, overrides)
    | None -> Configs.defaultJob overrides

let train (args: ParseResults<TrainArgs>) : int =
    let config = resolveConfig args
    let settings = Settings.ofConfigOrThrow config
    if args.Contains Dry_Run then
        printfn "%s" (DryRun.describe (config, settings))
        0
    else
        use cancellation = new CancellationTokenSource()
        Console.CancelKeyPress.Add(fun e ->
            if not cancellation.IsCancellationRequested then
                eprintfn "\nstopping after this iteration and writing a checkpoint (Ctrl-C again to abort)…"
                e.Cancel <- true
                cancellation.Cancel())
        let outcome = Trainer.run (config, settings, args.Contains Resume, Terminal.trainingReporter settings.LogPeriod, cancellation.Token)
        if Distributed.World.Current.IsRoot then Terminal.printOutcome outcome
        if outcome.Cancelled then 130 else 0

let private parseList (option: string) (text: string) (parse: string -> 'T option) (expected: string) : 'T list =
    text.Split(',', StringSplitOptions.RemoveEmptyEntries ||| StringSplitOptions.TrimEntries)
    |> Array.map (fun item ->
        match parse item with
        | Some value -> value
        | None -> raise (UsageException $"{option} {text}: '{item}' is invalid: expected {expected}"))
    |> List.ofArray

let private parseEpsilon (item: string) =
    match Double.TryParse(item, Globalization.NumberStyles.Float, Globalization.CultureInfo.InvariantCulture) with
    | true, v when v >= 0.0 && v <= 1.0 -> Some v
    | _ -> None

let private parseCorruption (item: string) =
    match item.ToLowerInvariant() with
    | "gaussian-noise" -> Some GaussianNoise
    | "gaussian-blur" -> Some GaussianBlur
    | _ -> None

let private robustness (args: ParseResults<EvalArgs>) : int =
    // Found before the evaluation, not after it.
    args.TryGetResult EvalArgs.Out
    |> Option.iter (fun path ->
        let folder = IO.Path.GetDirectoryName(IO.Path.GetFullPath path)
        if not (IO.Directory.Exists folder) then raise (UsageException $"--out {path}: the folder {folder} does not exist"))
    let fgsm = args.TryGetResult Fgsm |> Option.map (fun t -> parseList "--fgsm" t parseEpsilon "a number in [0, 1]") |> Option.defaultValue []
    let corruptions =
        args.TryGetResult Corruption
        |> Option.map (fun t -> parseList "--corruption" t parseCorruption "gaussian-noise or gaussian-blur")
        |> Option.defaultValue []
    let report =
        Robustness.evaluate (args.GetResult EvalArgs.Checkpoint, fgsm, corruptions, args.Contains Calibrate, args.GetResult(Batch_Size, 256), args.GetResult(Workers, 2))
    let line (label: string) (m: EvalMetrics) =
        printfn "%-28s top-1 %6.2f%%  top-5 %6.2f%%  NLL %.4f  ECE %5.2f%%" label m.Top1 m.Top5 m.Nll m.Ece
    printfn "%s" report.Checkpoint
    line "clean" report.Clean
    report.Calibrated |> Option.iter (fun (t, m) -> line (sprintf "temperature-scaled (T=%.3f)" t) m)
    for epsilon, m in report.Fgsm do line (sprintf "FGSM ε=%g" epsilon) m
    for corruption, severity, m in report.Corruptions do line (sprintf "%s, severity %d" corruption.Name severity) m
    args.TryGetResult EvalArgs.Out |> Option.iter (fun path -> Files.writeAllTextAtomic path (Robustness.toJson report))
    0

let private printMetrics (what: string) (model: string) (classes: string[]) (metrics: EvalMetrics) =
    printfn "%s (%s, %d images): top-1 %.2f%%  top-5 %.2f%%  NLL %.4f  ECE %.2f%%" what model metrics.Count metrics.Top1 metrics.Top5 metrics.Nll metrics.Ece
    Terminal.printPerClass classes metrics

let eval (args: ParseResults<EvalArgs>) : int =
    let workers, batchSize = args.GetResult(Workers, 2), args.GetResult(Batch_Size, 256)
    if batchSize < 1 then raise (UsageException $"--batch-size {batchSize}: expected at least 1")
    if workers < 0 then raise (UsageException $"--workers {workers}: expected 0 or more")
    match args.TryGetResult Checkpoint, args.TryGetResult EvalArgs.Weights with
    | Some _, Some _ -> raise (UsageException "eval: give either --checkpoint or --weights, not both")
    | None, None -> raise (UsageException "eval: give --checkpoint PATH (a run or checkpoint folder) or --weights PATH --model NAME --dataset SPEC")
    | None, Some weights ->
        match args.TryGetResult Model, args.TryGetResult Dataset with
        | Some model, Some dataset ->
            let classes, metrics = CheckpointEvaluation.evaluateWeights (weights, model, dataset, workers, batchSize)
            printMetrics weights model classes metrics
            0
        | _ -> raise (UsageException "eval --weights needs --model NAME and --dataset SPEC (the weights carry neither)")
    | Some checkpoint, None ->
        if args.Contains Fgsm || args.Contains Corruption || args.Contains Calibrate || args.Contains EvalArgs.Out then
            // The robustness report needs the run's own data (its held-out images for --calibrate): another dataset would be ignored.
            if args.Contains Dataset then
                raise (UsageException "eval: --dataset cannot be combined with --fgsm, --corruption, --calibrate or --out (the robustness report uses the run's dataset)")
            robustness args
        else
            let state, metrics = CheckpointEvaluation.evaluateCheckpoint (checkpoint, args.TryGetResult Dataset, workers, batchSize)
            printMetrics checkpoint state.Model state.Classes metrics
            0
