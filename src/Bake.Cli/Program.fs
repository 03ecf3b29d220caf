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

[<EntryPoint>]
let main argv =
    let parser = ArgumentParser.Create<BakeArgs>(programName = "bake")
    try
        let results = parser.ParseCommandLine(argv, raiseOnUsage = true)
        match results.GetSubCommand() with
        | Version _ -> version ()
        | Data args -> DataCommand.run args
    with
    | :? ArguParseException as e when e.ErrorCode = ErrorCode.HelpText ->
        printfn "%s" e.Message
        0
    | :? ArguParseException as e ->
        // One clear line: Argu's first line names the mistake; the full usage is one --help away.
        let first = e.Message.Split('\n', StringSplitOptions.RemoveEmptyEntries) |> Array.tryHead |> Option.defaultValue e.Message
        eprintfn "bake: %s (see --help)" (first.Trim().Replace("ERROR: ", ""))
        2
    | :? Bake.Core.UsageException as e ->
        eprintfn "bake: %s" e.Message
        2
    | :? Bake.Core.BakeException as e ->
        eprintfn "bake: %s" e.Message
        1
