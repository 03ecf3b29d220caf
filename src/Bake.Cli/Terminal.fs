/// Terminal output for long runs: a one-line progress bar in a terminal, plain periodic lines when redirected.
module Bake.Cli.Terminal

open System
open Bake.Core

let private interactive = not Console.IsOutputRedirected

let private bar (fraction: float) (width: int) =
    let filled = int (Math.Round(fraction * float width))
    String('█', filled) + String('·', width - filled)

let private metricsText (m: EvalMetrics) =
    $"test top-1 {m.Top1:F2}%% top-5 {m.Top5:F2}%% NLL {m.Nll:F4} ECE {m.Ece:F2}%%"

/// Prints training events: a progress bar redrawn in place in a terminal; otherwise a line every
/// `logPeriod` iterations and one per epoch.
let trainingReporter (logPeriod: int) : Action<TrainingEvent> =
    Action<TrainingEvent>(fun event ->
        match event with
        | Started (description, _) -> printfn "bake train: %s" description
        | Iteration (epoch, iteration, iterations, loss, top1, imagesPerSecond, lr) ->
            if interactive then
                let line =
                    sprintf "\repoch %d %s %d/%d  loss %.4f  top-1 %.2f%%  %.0f img/s  lr %.4g " epoch (bar (float iteration / float iterations) 24)
                        iteration iterations loss top1 imagesPerSecond lr
                Console.Write line
            elif iteration % logPeriod = 0 || iteration = iterations then
                printfn "epoch %d iter %d/%d loss %.4f top-1 %.2f%% %.0f img/s lr %.4g" epoch iteration iterations loss top1 imagesPerSecond lr
        | EpochFinished row ->
            if interactive then Console.Write("\r" + String(' ', 100) + "\r")
            let terms = row.TrainTerms |> List.map (fun (n, v) -> sprintf "%s %.4f" n v) |> String.concat " "
            let test = row.Test |> Option.map metricsText |> Option.defaultValue "not evaluated"
            printfn "epoch %d: train loss %.4f (%s) top-1 %.2f%% | %s | %.1fs" row.Epoch row.TrainLoss terms row.TrainTop1 test row.Seconds
        | CheckpointWritten path -> if not interactive then printfn "checkpoint %s" path
        | Warning message -> eprintfn "warning: %s" message)

/// Prints per-class accuracy as a table.
let printPerClass (classes: string[]) (m: EvalMetrics) =
    printfn "per-class top-1:"
    for i in 0 .. min (classes.Length - 1) (m.PerClassTop1.Length - 1) do
        printfn "  %-24s %6.2f%%" classes[i] m.PerClassTop1[i]

/// Prints the final and best-epoch results of a run, labelled.
let printOutcome (outcome: TrainingOutcome) =
    if outcome.Cancelled then
        printfn "stopped: a resumable checkpoint is in %s (continue with --resume)" outcome.OutDir
    match outcome.Final with
    | Some m ->
        printPerClass outcome.Classes m
        printfn "final epoch %d: %s" outcome.History.Length (metricsText m)
    | None -> ()
    match outcome.Best with
    | Some (epoch, m) -> printfn "best epoch %d: %s" epoch (metricsText m)
    | None -> ()
    printfn "run directory: %s" outcome.OutDir
