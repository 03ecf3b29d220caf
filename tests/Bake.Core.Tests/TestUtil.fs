module Bake.Core.Tests.TestUtil

open System
open System.IO
open TorchSharp
open Expecto

/// The repository root (the folder holding Bake.sln), found from the test binary's location.
let repoRoot =
    let rec up (dir: DirectoryInfo) =
        if isNull dir then failwith "Bake.sln not found above the test binary"
        elif File.Exists(Path.Combine(dir.FullName, "Bake.sln")) then dir.FullName
        else up dir.Parent
    up (DirectoryInfo AppContext.BaseDirectory)

/// A dtype under test with its tolerance: float64 tight, float32 loose.
type Precision = { Name: string; DType: torch.ScalarType; Tolerance: float }

let float64 = { Name = "float64"; DType = torch.float64; Tolerance = 1e-9 }
let float32 = { Name = "float32"; DType = torch.float32; Tolerance = 2e-4 }
let precisions = [ float64; float32 ]

let tensor (precision: Precision) (rows: int) (cols: int) (values: float[]) : torch.Tensor =
    torch.tensor(values, dtype = torch.float64).reshape(int64 rows, int64 cols).to_type precision.DType

let toArray (t: torch.Tensor) : float[] =
    t.detach().to_type(torch.float64).contiguous().data<float>().ToArray()

let maxAbsDiff (a: torch.Tensor) (b: torch.Tensor) : float =
    use _ = torch.no_grad ()
    use d = a.to_type(torch.float64).sub(b.to_type torch.float64).abs().max()
    d.item<float> ()

/// Fails with both tensors' largest difference when they differ by more than the tolerance.
let expectClose (tolerance: float) (message: string) (actual: torch.Tensor) (expected: torch.Tensor) =
    Expect.sequenceEqual actual.shape expected.shape $"{message}: shapes"
    let diff = maxAbsDiff actual expected
    Expect.isTrue (diff <= tolerance) $"{message}: max |difference| = {diff} > {tolerance}"

/// Runs a test body in its own dispose scope so native tensors are freed deterministically.
let scoped (body: unit -> 'a) : 'a =
    use _ = torch.NewDisposeScope()
    body ()

/// Runs the action, expecting an exception of type 'E, and returns it for checks of its message.
let throwsWith<'E when 'E :> exn> (action: unit -> unit) : 'E =
    try
        action ()
        failtestf "expected %s, but nothing was thrown" typeof<'E>.Name
    with
    | :? 'E as e -> e

/// A fresh temporary directory, deleted (with everything in it) after the body.
let withTempDir (body: string -> 'a) : 'a =
    let dir = Path.Combine(Path.GetTempPath(), "bake-tests-" + Guid.NewGuid().ToString "N")
    Directory.CreateDirectory dir |> ignore
    try
        body dir
    finally
        try Directory.Delete(dir, true) with _ -> ()

/// Runs the `bake` CLI in-process (callers use testSequenced: it redirects the console); returns the exit code, stdout and stderr.
let bake (args: string list) : int * string * string =
    let out, err = new StringWriter(), new StringWriter()
    let savedOut, savedErr = Console.Out, Console.Error
    Console.SetOut out
    Console.SetError err
    try
        let code = Bake.Cli.Program.main (Array.ofList args)
        code, out.ToString(), err.ToString()
    finally
        Console.SetOut savedOut
        Console.SetError savedErr

/// Runs `bake` in-process and checks its exit code and that its output contains a fragment.
let expectExit (expected: int) (args: string list) (fragment: string) =
    let code, stdout, stderr = bake args
    let command = String.concat " " args
    Expect.equal code expected $"exit code of bake {command} (stderr: {stderr})"
    Expect.stringContains (stdout + stderr) fragment "message"
