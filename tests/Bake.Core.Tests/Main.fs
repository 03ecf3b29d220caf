module Bake.Core.Tests.Main

open Expecto
open Expecto.Impl
open TorchSharp

[<EntryPoint>]
let main argv =
    // Before any torch call: tests run in parallel, so OpenMP must not busy-wait (see Runtime.usePassiveOpenMpWait).
    Bake.Core.Runtime.usePassiveOpenMpWait ()
    // CI machines have 2 cores.
    torch.set_num_threads 2
    match argv with
    | [| "--mpi-worker"; case |] -> MpiWorker.run case
    | _ ->
        let mutable counts = None
        let printer = TestPrinters.defaultPrinter
        let recording =
            { printer with
                summary =
                    fun config (result: TestRunSummary) ->
                        async {
                            // The default printer acknowledges its output, so the closing line comes after all of it.
                            do! printer.summary config result
                            // Every test that ran, so the properties checked are visible in CI logs.
                            for test, _ in result.passed do
                                System.Console.Out.WriteLine("  passed  " + String.concat "/" test.name)
                            for test, _ in result.failed @ result.errored do
                                System.Console.Out.WriteLine("  FAILED  " + String.concat "/" test.name)
                            counts <- Some(result.passed.Length, result.failed.Length + result.errored.Length)
                        } }
        // Plain output when redirected (CI, log files).
        let plain = if System.Console.IsOutputRedirected then [ CLIArguments.Colours 0; CLIArguments.No_Spinner ] else []
        let exitCode = runTestsInAssemblyWithCLIArgs (CLIArguments.Printer recording :: plain) argv
        // After Expecto has finished writing (it resets the terminal colours last), so this is the closing line.
        match counts with
        | Some (passed, failed) -> System.Console.Out.Write(sprintf "\n%d passed, %d failed\n" passed failed)
        | None -> ()
        System.Console.Out.Flush()
        exitCode
