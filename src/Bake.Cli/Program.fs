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
        | _ -> None
    let byKey = if e.Message.Contains "OUT_DIR" && e.Parameter <> "resume" then Some "--out sets OUT_DIR" else None
    match Option.orElse byKey byParameter with
    | Some hint -> $" ({hint})"
    | None -> ""

[<EntryPoint>]
let main argv =
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
        eprintfn "bake: %s%s" e.Message (flagHint e)
        2
    | :? Bake.Core.Data.DatasetNotFetchedException as e ->
        eprintfn "bake: %s (bake data fetch %s)" e.Message e.Name
        1
    | :? Bake.Core.BakeException as e ->
        eprintfn "bake: %s" e.Message
        1
