module Bake.Core.Tests.DistributedTests

open System
open System.Diagnostics
open System.IO
open System.Runtime.InteropServices
open Expecto
open Bake.Core
open Bake.Core.Distributed

/// Why the MPI tests cannot run here, if they cannot: Open MPI's launcher and library come from the Debian packages
/// openmpi-bin and libopenmpi3 (.ci/run installs them).
let private mpiMissing =
    lazy (
        let onPath =
            (Environment.GetEnvironmentVariable "PATH").Split(':', StringSplitOptions.RemoveEmptyEntries)
            |> Array.exists (fun dir -> File.Exists(Path.Combine(dir, "mpirun")))
        let library =
            match NativeLibrary.TryLoad "libmpi.so.40" with
            | true, handle -> NativeLibrary.Free handle; true
            | _ -> false
        if onPath && library then None
        else Some "Open MPI is not installed (apt-get install openmpi-bin libopenmpi3): MPI tests skipped")

/// mpirun's options for every test: root is allowed (CI runs as root), only shared memory and loopback (never another
/// network interface: tests must not reach or open anything outside the machine), no core binding (the two ranks
/// share the machine's cores with libtorch's threads), and two ranks even where fewer slots are detected.
let mpirunOptions =
    "--allow-run-as-root --oversubscribe --bind-to none --mca btl self,vader --mca oob_tcp_if_include lo --mca btl_tcp_if_include lo"

/// Runs `mpirun -np 2 dotnet <dll> <args>` (bounded in time), with one intra-op thread per rank; returns the exit
/// code and the output of both streams.
let runMpi (ranks: int) (dll: string) (args: string) (timeoutSeconds: int) : int * string =
    let start = ProcessStartInfo("mpirun", $"{mpirunOptions} -np {ranks} -x OMP_NUM_THREADS=1 dotnet \"{dll}\" {args}", RedirectStandardOutput = true, RedirectStandardError = true)
    start.Environment["OMP_WAIT_POLICY"] <- "PASSIVE"
    use p = Process.Start start
    let out = p.StandardOutput.ReadToEndAsync()
    let err = p.StandardError.ReadToEndAsync()
    if not (p.WaitForExit(timeoutSeconds * 1000)) then
        p.Kill true
        p.WaitForExit()
        failtestf "mpirun %s did not finish within %d s:\n%s\n%s" args timeoutSeconds out.Result err.Result
    p.WaitForExit()
    p.ExitCode, out.Result + err.Result

/// A test that needs Open MPI: skipped with the reason printed when it is absent.
let mpiTest (name: string) (body: unit -> unit) =
    test name {
        match mpiMissing.Force() with
        | Some reason ->
            eprintfn "%s: %s" name reason
            skiptest reason
        | None -> body ()
    }

/// Runs a case of MpiWorker on 2 ranks; both must print ok.
let private workerCase (case: string) =
    let dll = Path.Combine(AppContext.BaseDirectory, "Bake.Core.Tests.dll")
    let clock = Stopwatch.StartNew()
    let code, output = runMpi 2 dll $"--mpi-worker {case}" 120
    for line in output.Split('\n') |> Array.filter (fun l -> l.StartsWith "rank ") do printfn "    %s" line
    printfn "    (%s on 2 ranks: %.1f s)" case clock.Elapsed.TotalSeconds
    Expect.equal code 0 $"mpirun exit code 0:\n{output}"
    for rank in 0 .. 1 do Expect.stringContains output $"rank {rank}: ok" $"rank {rank} passed:\n{output}"

/// summary.csv without the wall-clock `seconds` column.
let private summaryWithoutSeconds (runDir: string) =
    File.ReadAllLines(Path.Combine(runDir, "summary.csv")) |> Array.map (fun line -> line.Substring(0, line.LastIndexOf ','))

/// `bake train` of a tiny BAKE run on 2 ranks (GLOBAL_KE, the default, and SyncBN): 3 epochs of 10 images per class,
/// batch 16 (8 per rank).
let private trainArgs (outDir: string) =
    [ "MODEL.TYPE=cnn-tiny"; "TRAIN.PER_CLASS=10"; "TRAIN.BATCH_SIZE=16"; "OPTIM.MAX_EPOCH=3"; "TRAIN.SYNC_BN=True"; "TEST.BATCH_SIZE=500"; "DATA_LOADER.NUM_WORKERS=1" ]
    |> List.map (fun s -> $"--set {s}")
    |> String.concat " "
    |> sprintf "train --out \"%s\" %s" outDir

/// Starts `mpirun -np 2 dotnet bake.dll train …` and kills the whole process tree (mpirun and both ranks, SIGKILL)
/// as soon as the first epoch's checkpoint is complete.
let private trainKilledAfterFirstCheckpoint (bake: string) (outDir: string) =
    let start = ProcessStartInfo("mpirun", $"{mpirunOptions} -np 2 -x OMP_NUM_THREADS=1 dotnet \"{bake}\" {trainArgs outDir}", RedirectStandardOutput = true, RedirectStandardError = true)
    start.Environment["OMP_WAIT_POLICY"] <- "PASSIVE"
    use p = Process.Start start
    let out = p.StandardOutput.ReadToEndAsync()
    let err = p.StandardError.ReadToEndAsync()
    let clock = Stopwatch.StartNew()
    while not p.HasExited && clock.Elapsed.TotalSeconds < 120.0 && (Checkpoints.resolve (outDir, "last")).IsNone do
        Threading.Thread.Sleep 20
    let killed = not p.HasExited
    if killed then p.Kill true
    p.WaitForExit()
    out.Result |> ignore
    err.Result |> ignore
    killed

[<Tests>]
let tests =
    testList "Distributed" [
        testList "sharding" [
            test "each rank takes a contiguous run of anchors with all their positives, in the sampler's layout" {
                // 6 anchors (0..5) with 2 positives each: anchor a's positives are 10a+1, 10a+2.
                let batch = Array.append [| 0 .. 5 |] [| for a in 0 .. 5 do yield! [| 10 * a + 1; 10 * a + 2 |] |]
                let shards = [ for r in 0 .. 3 -> (DataParallel.shardBatch (batch, 2, 4, r)).Value ]
                Expect.equal shards[0] [| 0; 1; 2 |] "rank 0: anchor 0 and its positives"
                for shard in shards do
                    let anchors = shard.Length / 3
                    for i in 0 .. anchors - 1 do
                        let a = shard[i]
                        Expect.equal shard[anchors + 2 * i .. anchors + 2 * i + 1] [| 10 * a + 1; 10 * a + 2 |] "positives follow their anchor"
                Expect.sequenceEqual (shards |> Seq.concat |> Seq.sort) (Seq.sort batch) "the shards partition the batch"
                Expect.equal (shards |> List.map Array.length) [ 3; 6; 3; 6 ] "anchor runs differ by at most one"
                Expect.isNone (DataParallel.shardBatch (batch, 2, 7, 0)) "fewer anchors than ranks: no shard"
            }
            test "plain batches are split into contiguous halves; a batch that is not anchors × (M + 1) is refused" {
                Expect.equal (DataParallel.shardBatch ([| 5; 6; 7; 8; 9 |], 0, 2, 1)).Value [| 7; 8; 9 |] "rank 1 of a plain batch"
                Expect.throwsT<ArgumentException> (fun () -> DataParallel.shardBatch ([| 1; 2; 3 |], 1, 2, 0) |> ignore) "3 is not anchors × 2"
            }
            test "without Open MPI, a run of several processes stops naming the Debian packages" {
                let e = Expect.throwsC (fun () -> Mpi.Require "libmpi-not-installed.so.40" |> ignore) id
                Expect.isTrue (e :? BakeException) "a BakeException (exit 1, no stack trace)"
                Expect.stringContains e.Message "apt-get install openmpi-bin libopenmpi3" "names the packages"
            }
            test "one process: the world is the identity and loads no MPI" {
                let world = World.Single
                Expect.equal (world.Rank, world.Size, world.IsDistributed) (0, 1, false) "rank 0 of 1"
                use t = TorchSharp.torch.ones (3L)
                world.AllReduceSum t
                Expect.equal (t.sum().item<float32> ()) 3.0f "unchanged"
                Expect.isFalse (world.Any false) "any of one"
            }
        ]
        testSequenced <| testList "on 2 MPI ranks (loopback)" [
            mpiTest "the binding: all-reduce, broadcast, all-gather(v), barrier on tensors" (fun () -> workerCase "collectives")
            mpiTest "(a) one step on 2 ranks × N/2 = one process × N (BN in eval mode; vanilla and BAKE with GLOBAL_KE)" (fun () -> workerCase "step")
            mpiTest "(b) GLOBAL_KE: every sample's soft targets equal the single-process batch's" (fun () -> workerCase "targets")
            mpiTest "(c) SyncBN: BN statistics, logits and the step's weights equal the full batch's" (fun () -> workerCase "syncbn")
            mpiTest "bake train on 2 ranks refuses DLB (its batches cannot be sharded): exit 2, one message, nothing trained" (fun () ->
                let bake = Path.Combine(AppContext.BaseDirectory, "bake.dll")
                let dir = Directory.CreateTempSubdirectory("bake-mpi-dlb-").FullName
                try
                    let code, output = runMpi 2 bake $"train --out \"{dir}\" --set METHOD.NAME=dlb --set TRAIN.USE_BAKE=False --set TRAIN.INTRA_IMGS=0" 120
                    Expect.equal code 2 $"usage exit code:\n{output}"
                    let messages = output.Split('\n') |> Array.filter (fun l -> l.Contains "bake: METHOD.NAME dlb")
                    Expect.hasLength messages 1 $"rank 0 alone reports it:\n{output}"
                    Expect.isNone (Checkpoints.resolve (dir, "last")) "nothing trained"
                finally
                    try Directory.Delete(dir, true) with _ -> ())
            mpiTest "bake train on 2 ranks: rank 0 alone writes the run; killed after a checkpoint, the same command resumes it to the uninterrupted run's summary" (fun () ->
                let bake = Path.Combine(AppContext.BaseDirectory, "bake.dll")
                let whole = Directory.CreateTempSubdirectory("bake-mpi-whole-").FullName
                let split = Directory.CreateTempSubdirectory("bake-mpi-split-").FullName
                try
                    let clock = Stopwatch.StartNew()
                    let code, output = runMpi 2 bake (trainArgs whole) 180
                    printfn "    uninterrupted 2-rank run: %.1f s" clock.Elapsed.TotalSeconds
                    Expect.equal code 0 $"uninterrupted run:\n{output}"
                    let finals = output.Split('\n') |> Array.filter (fun l -> l.StartsWith "final epoch")
                    Expect.hasLength finals 1 "one rank reports"
                    let starts = File.ReadAllLines(Path.Combine(whole, "log.jsonl")) |> Array.filter (fun l -> l.Contains "\"start\"")
                    Expect.hasLength starts 1 "one start line (rank 0 alone writes log.jsonl)"
                    Expect.stringContains starts[0] "\"processes\":2" "the start line records 2 processes"
                    Expect.hasLength (summaryWithoutSeconds whole) 4 "header and 3 epochs"
                    Expect.isTrue (trainKilledAfterFirstCheckpoint bake split) "killed during training"
                    Expect.isLessThan (summaryWithoutSeconds split).Length 4 "the killed run did not finish"
                    let code, output = runMpi 2 bake (trainArgs split) 180
                    Expect.equal code 0 $"resumed run:\n{output}"
                    Expect.sequenceEqual (summaryWithoutSeconds split) (summaryWithoutSeconds whole) "resumed = uninterrupted"
                finally
                    for dir in [ whole; split ] do (try Directory.Delete(dir, true) with _ -> ()))
        ]
    ]
