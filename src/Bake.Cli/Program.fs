module Bake.Cli.Program

open System
open Argu
open Bake.Cli.Arguments

let private version () =
    let bake = typeof<Bake.Core.BakeOptions>.Assembly.GetName().Version
    printfn "bake %O" bake
    printfn "TorchSharp %s, libtorch %s" (typeof<TorchSharp.torch>.Assembly.GetName().Version.ToString()) TorchSharp.torch.__version__
    use ones = TorchSharp.torch.ones (3L, 3L)
    printfn "libtorch loaded: torch.ones(3, 3).sum() = %g" (ones.sum().item<float32> ())
    0

/// The command line's flag for a core parameter or key named by a usage error, as a hint after its message.
let private flagHint (e: Bake.Core.UsageException) =
    let byParameter =
        match e.Parameter with
        | "resume" -> Some "bake train --resume continues a run; --out DIR starts one elsewhere"
        | "calibrate" -> Some "--calibrate"
        | "dataset" -> Some "--dataset"
        | "count" -> Some "--count"
        | "out" -> Some "--out"
        | "batch" -> Some "bake targets --batch N"
        | "features" -> Some "--features"
        | "size" -> Some "--size"
        | "quality" -> Some "--quality"
        | "to" -> Some "--to"
        | "from" -> Some "--from"
        | _ -> None
    let byKey = if e.Message.Contains "OUT_DIR" && e.Parameter <> "resume" then Some "--out sets OUT_DIR" else None
    match Option.orElse byKey byParameter with
    | Some hint -> $" ({hint})"
    | None -> ""

let private run argv =
    Bake.Core.Runtime.usePassiveOpenMpWaitWhenBusy () |> ignore
    Bake.Core.Runtime.keepFreedMemory ()
    let parser = ArgumentParser.Create<BakeArgs>(programName = "bake")
    try
        let results = parser.ParseCommandLine(argv, raiseOnUsage = true)
        match results.GetSubCommand() with
        | Train args -> TrainCommand.train args
        | Eval args -> TrainCommand.eval args
        | Version _ -> version ()
        | Data args -> DataCommand.run args
        | Targets args -> TargetsCommand.run args
        | Plot args -> PlotCommand.run args
        | Predict args -> PredictCommand.run args
        | Info args -> InfoCommand.run args
        | Time args -> TimeCommand.run args
        | Export args -> ExportCommand.run args
        | Soft_Targets args -> SoftTargetsCommand.run args
    with
    | :? ArguParseException as e when e.ErrorCode = ErrorCode.HelpText ->
        printfn "%s" e.Message
        // Argu has no per-verb epilogue: the verb's examples follow its option list.
        match Array.tryHead argv with
        | Some "train" -> printfn "%s\n" TrainCommand.example
        | Some "targets" -> printfn "%s\n" TargetsCommand.example
        | Some "plot" -> printfn "%s\n" PlotCommand.example
        | Some "predict" -> printfn "%s\n" PredictCommand.example
        | Some "info" -> printfn "%s\n" InfoCommand.example
        | Some "time" -> printfn "%s\n" TimeCommand.example
        | Some "export" -> printfn "%s\n" ExportCommand.example
        | Some "soft-targets" -> printfn "%s\n" SoftTargetsCommand.example
        | _ -> ()
        0
    | :? ArguParseException as e ->
        // One clear line: Argu's first line names the mistake; the full usage is one --help away.
        let first = e.Message.Split('\n', StringSplitOptions.RemoveEmptyEntries) |> Array.tryHead |> Option.defaultValue e.Message
        eprintfn "bake: %s (see --help)" (first.Trim().Replace("ERROR: ", ""))
        2
    | :? Bake.Core.UsageException as e ->
        // Under mpirun every rank reads the same configuration: rank 0 alone reports a usage mistake.
        if not Bake.Core.Distributed.World.IsCreated || Bake.Core.Distributed.World.Current.IsRoot then
            eprintfn "bake: %s%s" e.Message (flagHint e)
        2
    | :? Bake.Core.Data.DatasetNotFetchedException as e ->
        eprintfn "bake: %s (bake data fetch %s)" e.Message e.Name
        1
    | :? Bake.Core.BakeException as e ->
        eprintfn "bake: %s" e.Message
        1
    | :? OperationCanceledException ->
        eprintfn "bake: cancelled"
        130
    | e ->
        // Whatever escaped the typed errors (a libtorch error, a bug) still ends with one line and exit 1, never with
        // an abort and a stack trace; BAKE_DEBUG=1 prints the trace for a bug report.
        // libtorch's errors carry its C++ backtrace after the first line ("Exception raised from …", "frame #0: …").
        let firstLine = e.Message.Split('\n', StringSplitOptions.RemoveEmptyEntries) |> Array.tryHead |> Option.defaultValue e.Message
        eprintfn "bake: %s: %s" (e.GetType().Name) (firstLine.Trim())
        if Environment.GetEnvironmentVariable "BAKE_DEBUG" = "1" then eprintfn "%O" e
        1

/// Under mpirun (docs/distributed.md) the exit goes through MPI: MPI_Finalize on success, MPI_Abort on a failure, so
/// that a rank that fails ends the ranks waiting for it in a collective.
[<EntryPoint>]
let main argv =
    // run reports every error itself (one line, an exit code), so a failing rank always reaches the exit below.
    let code = run argv
    if Bake.Core.Distributed.World.IsCreated then Bake.Core.Distributed.World.Current.Exit code else code
