/// A run directory belongs to one run: one training at a time, an identity fixed by its first write, checkpoints
/// that are never removed before their replacement, no leftovers, and a finished run that is only reported.
module Bake.Core.Tests.RunDirectoryTests

open System
open System.IO
open System.Threading
open System.Threading.Tasks
open Expecto
open Bake.Core
open Bake.Core.Data
open Bake.Core.Tests.TestUtil
open Bake.Core.Tests.TrainerTests

/// A PNG of the given size and channels (1 gray, 3 RGB, 4 RGBA with a transparent half), pixels from a seed.
let private writePng (path: string) (width: int) (height: int) (channels: int) (seed: int) =
    let random = Random seed
    let colorType = if channels = 1 then SkiaSharp.SKColorType.Gray8 else SkiaSharp.SKColorType.Rgba8888
    let alpha = if channels = 4 then SkiaSharp.SKAlphaType.Unpremul else SkiaSharp.SKAlphaType.Opaque
    use bitmap = new SkiaSharp.SKBitmap(SkiaSharp.SKImageInfo(width, height, colorType, alpha))
    let bytes = Array.init (bitmap.ByteCount) (fun i -> if channels = 4 && i % 4 = 3 then (if i / 4 % width < width / 2 then 0uy else 255uy) else byte (random.Next 256))
    Runtime.InteropServices.Marshal.Copy(bytes, 0, bitmap.GetPixels(), bytes.Length)
    use image = SkiaSharp.SKImage.FromBitmap bitmap
    use data = image.Encode(SkiaSharp.SKEncodedImageFormat.Png, 100)
    File.WriteAllBytes(path, data.ToArray())

let private run (config: Config) resume report (token: CancellationToken) =
    Trainer.run (config, Settings.ofConfigOrThrow config, resume, Action<TrainingEvent> report, token)

[<Tests>]
let tests =
    testSequenced <| testList "Run directory" [
        test "a second training on the same directory is refused, naming the holder, while the first runs" {
            withRunDir (fun dir ->
                use started = new ManualResetEventSlim(false)
                use release = new ManualResetEventSlim(false)
                let hold event =
                    match event with
                    | Iteration (1, 1, _, _, _, _, _) ->
                        started.Set()
                        release.Wait()
                    | _ -> ()
                let first = Task.Run(fun () -> runTiny dir [] hold CancellationToken.None)
                Expect.isTrue (started.Wait(TimeSpan.FromMinutes 2.0)) "the first training started"
                let error = throwsWith<UsageException> (fun () -> runTiny dir [] ignore CancellationToken.None |> ignore)
                release.Set()
                Expect.stringContains error.Message "is in use by another training" "refused"
                Expect.stringContains error.Message $"process {Environment.ProcessId}" "names the holder"
                Expect.hasLength first.Result.History 2 "the first training finished undisturbed"
                // Released with the run: the directory can be used again (and the finished run is reported).
                Expect.hasLength (runTiny dir [] ignore CancellationToken.None).History 2 "released")
        }

        test "the identity is fixed by the first write: another configuration is refused even before any checkpoint" {
            withRunDir (fun dir ->
                // What a run killed before its first checkpoint leaves: its config.yaml.
                RunDirectory.writeConfig (dir, tinyConfig dir [ "TRAIN.OMEGA=0.3" ])
                let error = throwsWith<UsageException> (fun () -> runTiny dir [] ignore CancellationToken.None |> ignore)
                Expect.stringContains error.Message "another configuration" "refused"
                Expect.hasLength (runTiny dir [ "TRAIN.OMEGA=0.3" ] ignore CancellationToken.None).History 2 "the same run starts")
        }

        test "the identity is what changes results: OUT_DIR's spelling, workers, log period and TensorBoard may change on resume" {
            withRunDir (fun dir ->
                use cancellation = new CancellationTokenSource()
                let stopAt event = match event with Iteration (1, 3, _, _, _, _, _) -> cancellation.Cancel() | _ -> ()
                Expect.isTrue (runTiny dir [] stopAt cancellation.Token).Cancelled "stopped mid-epoch"
                let relative = Path.GetRelativePath(Environment.CurrentDirectory, dir) + string Path.DirectorySeparatorChar
                let again =
                    Configs.defaultJob
                        [ "MODEL.TYPE=cnn-tiny"; "TRAIN.PER_CLASS=12"; "TRAIN.BATCH_SIZE=16"; "OPTIM.MAX_EPOCH=2"; "TEST.BATCH_SIZE=500"
                          "DATA_LOADER.NUM_WORKERS=0"; "LOG_PERIOD=5"; "LOGGING.TENSORBOARD=False"; "OUT_DIR=" + relative ]
                Expect.equal (Configs.hash again) (Configs.hash (tinyConfig dir [])) "same identity"
                Expect.hasLength (run again true ignore CancellationToken.None).History 2 "resumed and finished")
        }

        test "a checkpoint re-saved under its name never removes the old one first; last.json always names a complete one" {
            withRunDir (fun dir ->
                use cancellation = new CancellationTokenSource()
                let stopAt event = match event with Iteration (1, 3, _, _, _, _, _) -> cancellation.Cancel() | _ -> ()
                runTiny dir [] stopAt cancellation.Token |> ignore
                let first = Checkpoints.ofPath dir
                // Resumed and stopped again before its first iteration: the same position is saved again.
                use already = new CancellationTokenSource()
                already.Cancel()
                Expect.isTrue (run (tinyConfig dir []) true ignore already.Token).Cancelled "stopped at once"
                let second = Checkpoints.ofPath dir
                Expect.notEqual second first "a new folder"
                Expect.isTrue (File.Exists(Path.Combine(second, "state.json"))) "complete"
                Expect.isFalse (Directory.Exists first) "the old one is gone once nothing names it"
                Expect.hasLength (run (tinyConfig dir []) true ignore CancellationToken.None).History 2 "and it resumes")
        }

        test "leftovers of killed writers are removed; a finished run is reported without writing anything" {
            withRunDir (fun dir ->
                runTiny dir [] ignore CancellationToken.None |> ignore
                let checkpoints = Path.Combine(dir, "checkpoints")
                let staleFolder = Path.Combine(checkpoints, ".epoch_0003.0123abcd.tmp")
                let staleFile = Path.Combine(dir, ".summary.csv.0123abcd.tmp")
                Directory.CreateDirectory staleFolder |> ignore
                File.WriteAllText(staleFile, "half")
                let tbFiles () = if Directory.Exists(Path.Combine(dir, "tb")) then Directory.GetFiles(Path.Combine(dir, "tb")).Length else 0
                let before = tbFiles ()
                let log = File.ReadAllLines(Path.Combine(dir, RunFiles.LogFile)).Length
                let mutable description = ""
                let record event = match event with Started (text, _) -> description <- text | _ -> ()
                let again = runTiny dir [] record CancellationToken.None
                Expect.hasLength again.History 2 "reported"
                Expect.stringContains description "finished (2 epochs)" "says it is finished"
                Expect.isFalse (Directory.Exists staleFolder) "stale checkpoint folder removed"
                Expect.isFalse (File.Exists staleFile) "stale file removed"
                Expect.equal (tbFiles ()) before "no new TensorBoard file"
                Expect.equal (File.ReadAllLines(Path.Combine(dir, RunFiles.LogFile)).Length) log "nothing logged")
        }

        test "checkpoints record the intra-op thread count" {
            withRunDir (fun dir ->
                runTiny dir [ "OPTIM.MAX_EPOCH=1" ] ignore CancellationToken.None |> ignore
                Expect.equal (Checkpoints.readState (Checkpoints.ofPath dir)).Threads (TorchSharp.torch.get_num_threads ()) "threads")
        }
    
        test "SIGKILL at random moments, resumed each time by the same command: the summary equals an uninterrupted run's" {
            // The short version of scripts/fault-injection.sh: the CLI as a child process, killed three times.
            let bake = Path.Combine(AppContext.BaseDirectory, "bake.dll")
            let job dir =
                [ "train"; "--set"; "MODEL.TYPE=cnn-tiny"; "--set"; "TRAIN.PER_CLASS=30"; "--set"; "TRAIN.BATCH_SIZE=16"
                  "--set"; "OPTIM.MAX_EPOCH=4"; "--set"; "DATA_LOADER.NUM_WORKERS=1"; "--set"; "TEST.BATCH_SIZE=500"
                  "--set"; "LOGGING.TENSORBOARD=False"; "--out"; dir ]
            let start dir =
                let info = Diagnostics.ProcessStartInfo("dotnet", RedirectStandardOutput = true, RedirectStandardError = true)
                info.ArgumentList.Add bake
                for a in job dir do info.ArgumentList.Add a
                info.Environment["OMP_WAIT_POLICY"] <- "PASSIVE"
                let p = Diagnostics.Process.Start info
                p.OutputDataReceived.Add ignore
                p.ErrorDataReceived.Add ignore
                p.BeginOutputReadLine()
                p.BeginErrorReadLine()
                p
            withRunDir (fun reference ->
                withRunDir (fun killed ->
                    let watch = Diagnostics.Stopwatch.StartNew()
                    use whole = start reference
                    Expect.isTrue (whole.WaitForExit 300000) "the reference run finished"
                    Expect.equal whole.ExitCode 0 "reference run"
                    let seconds = watch.Elapsed.TotalSeconds
                    let random = Random 7
                    let mutable kills = 0
                    let mutable attempts = 0
                    while kills < 3 && attempts < 12 do
                        attempts <- attempts + 1
                        use p = start killed
                        if not (p.WaitForExit(int (1000.0 * (0.3 + random.NextDouble() * seconds)))) then
                            p.Kill true
                            p.WaitForExit()
                            kills <- kills + 1
                    Expect.equal kills 3 "three kills of a running training"
                    use last = start killed
                    Expect.isTrue (last.WaitForExit 300000) "the killed run finished"
                    Expect.equal last.ExitCode 0 "resumed"
                    Expect.sequenceEqual (summaryWithoutSeconds killed) (summaryWithoutSeconds reference) "killed and resumed = uninterrupted"
                    Expect.isEmpty (Directory.GetFileSystemEntries(killed, ".*.tmp", SearchOption.AllDirectories)) "no temporary file left"))
        }
    
        test "an ImageFolder of mixed sizes, aspect ratios, gray and RGBA images trains (each stored at a common square size)" {
            withTempDir (fun root ->
                let sizes = [| 40, 30, 3; 50, 70, 1; 64, 48, 4; 36, 36, 3; 90, 33, 1; 45, 60, 4 |]
                for split in [ "train"; "test" ] do
                    for c in [ "cat"; "dog" ] do
                        let folder = Path.Combine(root, split, c)
                        Directory.CreateDirectory folder |> ignore
                        sizes |> Array.iteri (fun i (w, h, channels) -> writePng (Path.Combine(folder, $"{i}.png")) w h channels (i + c.Length))
                let dataset = Datasets.loadFolder root None ImageFolder.defaultOptions
                Expect.sequenceEqual dataset.ImageShape [| 3; 30; 30 |] "the smallest side, square"
                Expect.stringContains dataset.Source "images of different sizes" "says what it did"
                (dataset :> IDisposable).Dispose()
                let out = Path.Combine(root, "run")
                let config =
                    Configs.defaultJob
                        [ "TRAIN.DATASET=" + root; "MODEL.TYPE=cnn-tiny"; "OPTIM.MAX_EPOCH=1"; "TRAIN.BATCH_SIZE=4"; "TEST.BATCH_SIZE=12"
                          "DATA_LOADER.NUM_WORKERS=0"; "LOGGING.TENSORBOARD=False"; "OUT_DIR=" + out ]
                let outcome = run config false ignore CancellationToken.None
                Expect.hasLength outcome.History 1 "trained an epoch"
                Expect.equal outcome.Final.Value.Count 12L "tested on every test image")
            Expect.equal (ImageFolder.storageSize 375) 256 "large images: 256, whose center 224 crop is the official test view"
        }
    ]
