module Bake.Core.Tests.Main

open System.Runtime.InteropServices
open Expecto
open Expecto.Impl
open TorchSharp

[<DllImport("libc", SetLastError = true)>]
extern int setenv(string name, string value, int overwrite)

[<EntryPoint>]
let main argv =
    // OpenMP reads OMP_WAIT_POLICY from the native environment when libtorch starts: without PASSIVE, small
    // ops stall in 4 ms steps while other test threads use the CPU (ENVIRONMENT.md). Set it before any torch call.
    if RuntimeInformation.IsOSPlatform OSPlatform.Linux && isNull (System.Environment.GetEnvironmentVariable "OMP_WAIT_POLICY") then
        setenv ("OMP_WAIT_POLICY", "PASSIVE", 0) |> ignore
    // CI machines have 2 cores; small ops must not stall behind a busy-waiting OpenMP pool.
    torch.set_num_threads 2
    let printer = TestPrinters.defaultPrinter
    let summary =
        { printer with
            summary =
                fun config (result: TestRunSummary) ->
                    async {
                        do! printer.summary config result
                        let failed = result.failed.Length + result.errored.Length
                        printfn "%d passed, %d failed" result.passed.Length failed
                    } }
    runTestsInAssemblyWithCLIArgs [ CLIArguments.Printer summary ] argv
