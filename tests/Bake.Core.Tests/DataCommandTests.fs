module Bake.Core.Tests.DataCommandTests

open System
open System.IO
open System.Diagnostics
open Argu
open Expecto
open Bake.Core
open Bake.Cli
open Bake.Cli.DataCommand
open Bake.Core.Tests.TestUtil
open Bake.Core.Tests.DataTestUtil

let parser = ArgumentParser.Create<DataArgs>(programName = "bake data")

/// Runs a `bake data` command line through the handlers; returns its output.
let runData (argv: string[]) : string =
    let args = parser.ParseCommandLine(argv, raiseOnUsage = true)
    use out = new StringWriter()
    let code =
        match args.GetSubCommand() with
        | Info a -> info a out
        | Fetch a -> fetch a out
        | Bench a -> bench a out
        | Downsample a -> downsample a out
    Expect.equal code 0 "exit code 0"
    out.ToString()

let usageError (argv: string[]) (fragment: string) =
    let e = throwsWith<UsageException> (fun () -> runData argv |> ignore)
    Expect.stringContains e.Message fragment "the message"

/// The built `bake` program next to the tests (the test project references Bake.Cli), run with `dotnet bake.dll`.
let runBake (argv: string) : int * string * string =
    let dll = Path.Combine(AppContext.BaseDirectory, "bake.dll")
    let start = ProcessStartInfo("dotnet", $"\"{dll}\" {argv}", RedirectStandardOutput = true, RedirectStandardError = true)
    use p = Process.Start start
    let out = p.StandardOutput.ReadToEndAsync()
    let err = p.StandardError.ReadToEnd()
    p.WaitForExit()
    p.ExitCode, out.Result, err

[<Tests>]
let tests =
    testList "Cli.data" [
        test "info prints the embedded dataset's classes, counts, shape and statistics" {
            let text = runData [| "info"; "embedded" |]
            for fragment in [ "fashion-mnist-subset"; "1×28×28"; "T-shirt/top"; "mean"; "8000 images" ] do
                Expect.stringContains text fragment fragment
        }

        test "info on a folder recognises its layout; --format forces one" {
            use dir = new TempDir()
            writeIdxDataset dir.Path true 6 2 3
            Expect.stringContains (runData [| "info"; dir.Path |]) "idx:" "recognised"
            Expect.stringContains (runData [| "info"; "--format"; "idx"; dir.Path |]) "6 images" "forced"
        }

        test "usage mistakes are UsageException (exit 2) naming the value" {
            usageError [| "info"; "imagenet-22k" |] "unknown dataset 'imagenet-22k'"
            usageError [| "info"; "embedded"; "--format"; "jpeg" |] "unknown dataset format 'jpeg'"
            usageError [| "info"; "embedded"; "--image-size"; "0" |] "--image-size must be >= 1"
            usageError [| "fetch"; "imagenet" |] "cannot fetch 'imagenet'"
            usageError [| "fetch"; "mnist"; "--base-url"; "ftp://mirror" |] "--base-url must be an http or https URL"
        }

        test "runtime failures are BakeException (exit 1) naming the file or URL" {
            let e = throwsWith<BakeException> (fun () -> runData [| "info"; "./no/such/folder" |] |> ignore)
            Expect.stringContains e.Message "dataset folder not found" "missing folder"
            use server = new FetchTests.LocalServer(dict [], None)
            use cache = new TempDir()
            let e = throwsWith<BakeException> (fun () -> runData [| "fetch"; "mnist"; "--cache"; cache.Path; "--base-url"; server.BaseUrl |] |> ignore)
            Expect.stringContains e.Message "train-images-idx3-ubyte.gz: HTTP 404" "the URL and status"
        }

        test "argument errors are Argu parse errors" {
            throwsWith<ArguParseException> (fun () -> runData [| "info" |] |> ignore) |> ignore
            throwsWith<ArguParseException> (fun () -> runData [| "fetch"; "mnist"; "--bogus" |] |> ignore) |> ignore
        }

        test "bench runs on the embedded dataset and reports loader and training rates" {
            let text = runData [| "bench"; "embedded"; "--batches"; "2"; "--batch-size"; "16"; "--workers"; "0,1" |]
            for fragment in [ "loader, 0 worker(s)"; "loader, 1 worker(s)"; "training step alone (cnn"; "waiting for data" ] do
                Expect.stringContains text fragment fragment
            usageError [| "bench"; "embedded"; "--workers"; "0,-1" |] "--workers must list counts >= 0"
        }

        test "the bake program: exit 2 with one line for usage errors, 1 for failures, 0 with help" {
            let code, _, err = runBake "data info no-such-dataset"
            Expect.equal code 2 "usage error"
            Expect.equal (err.Trim().Split('\n').Length) 1 "one line"
            Expect.stringContains err "unknown dataset" "the message"
            let code, _, err = runBake "data"
            Expect.equal code 2 "missing sub-verb"
            Expect.equal (err.Trim().Split('\n').Length) 1 "one line"
            let code, _, err = runBake "data info ./no/such/folder"
            Expect.equal code 1 "runtime failure"
            Expect.stringContains err "dataset folder not found" "the message"
            let code, out, _ = runBake "data fetch --help"
            Expect.equal code 0 "help"
            Expect.stringContains out "Examples" "examples in the help"
        }
    ]
