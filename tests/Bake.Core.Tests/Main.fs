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
                        let failed = result.failed.Length + result.errored.Length
                        System.Console.Out.Write(sprintf "\n%d passed, %d failed\n" result.passed.Length failed)
                        System.Console.Out.Flush()
                    } }
    // Plain output when redirected (CI, log files).
    let plain = if System.Console.IsOutputRedirected then [ CLIArguments.Colours 0; CLIArguments.No_Spinner ] else []
    runTestsInAssemblyWithCLIArgs (CLIArguments.Printer recording :: plain) argv
