module Bake.Core.Tests.TrainerTests

open System
open System.IO
open System.Threading
open Expecto
open TorchSharp
open Bake.Core
open Bake.Core.Tests.TestUtil
open Bake.Core.Tests.ConfigTests

/// A tiny run on the embedded dataset: 12 images per class, the tiny CNN, 2 epochs.
let tinyConfig (outDir: string) (extra: string list) =
    Configs.defaultJob (
        [ "MODEL.TYPE=cnn-tiny"; "TRAIN.PER_CLASS=12"; "TRAIN.BATCH_SIZE=16"; "OPTIM.MAX_EPOCH=2"; "TEST.BATCH_SIZE=500"
          "DATA_LOADER.NUM_WORKERS=1"; "LOG_PERIOD=2"; "OUT_DIR=" + outDir ] @ extra)

let withRunDir (body: string -> unit) =
    let dir = Directory.CreateTempSubdirectory("bake-run-").FullName
    try body dir finally (try Directory.Delete(dir, true) with _ -> ())

let runTiny outDir extra (report: TrainingEvent -> unit) (cancellation: CancellationToken) =
    let config = tinyConfig outDir extra
    Trainer.run (config, Settings.ofConfigOrThrow config, false, Action<TrainingEvent> report, cancellation)

/// summary.csv without the wall-clock `seconds` column, the only column that may differ between identical runs.
let summaryWithoutSeconds (runDir: string) =
    File.ReadAllLines(Path.Combine(runDir, "summary.csv")) |> Array.map (fun line -> line.Substring(0, line.LastIndexOf ','))

[<Tests>]
let tests =
    // Sequenced: the leak test counts every live tensor in the process.
    testSequenced <| testList "Trainer" [
        testList "every method runs end to end on tiny data" [
            for name, extra in
                [ "vanilla", [ "TRAIN.USE_BAKE=False"; "TRAIN.INTRA_IMGS=0" ]
                  "label-smoothing", [ "TRAIN.USE_BAKE=False"; "TRAIN.INTRA_IMGS=0"; "METHOD.NAME=label-smoothing" ]
                  "tfkd-reg", [ "TRAIN.USE_BAKE=False"; "TRAIN.INTRA_IMGS=0"; "METHOD.NAME=tfkd-reg" ]
                  "cskd", [ "TRAIN.USE_BAKE=False"; "TRAIN.INTRA_IMGS=0"; "METHOD.NAME=cskd" ]
                  "bake", []
                  "bake M=3 one-step", [ "TRAIN.INTRA_IMGS=3"; "METHOD.PROPAGATION=one-step" ]
                  "bake with CutMix", [ "TRAIN.IS_CUTMIX=True"; "CUTMIX.OFF_EPOCH=1" ]
                  "vanilla with CutMix", [ "TRAIN.USE_BAKE=False"; "TRAIN.INTRA_IMGS=0"; "TRAIN.IS_CUTMIX=True" ]
                  "vanilla at BAKE's steps", [ "TRAIN.USE_BAKE=False"; "TRAIN.INTRA_IMGS=0"; "METHOD.EQUAL_STEPS_M=1" ]
                  "pskd", [ "TRAIN.USE_BAKE=False"; "TRAIN.INTRA_IMGS=0"; "METHOD.NAME=pskd" ]
                  "dlb", [ "TRAIN.USE_BAKE=False"; "TRAIN.INTRA_IMGS=0"; "METHOD.NAME=dlb" ] ] ->
                test name {
                    withRunDir (fun dir ->
                        let outcome = runTiny dir extra ignore CancellationToken.None
                        Expect.hasLength outcome.History 2 "two epochs"
                        Expect.isSome outcome.Final "final metrics"
                        Expect.isSome outcome.Best "best epoch"
                        let header = (File.ReadAllLines(Path.Combine(dir, "summary.csv")))[0]
                        Expect.stringStarts header "epoch,iterations,lr,train_loss,train_" "summary header"
                        Expect.isTrue (File.Exists(Path.Combine(dir, "config.yaml"))) "config.yaml"
                        Expect.isTrue (File.ReadAllLines(Path.Combine(dir, "log.jsonl")).Length > 2) "log.jsonl"
                        Expect.isSome (Checkpoints.resolve (dir, "last")) "last checkpoint"
                        let iterations = outcome.History.Head.Iterations
                        if name = "vanilla" then Expect.equal iterations 8 "120 images / 16"
                        if name = "bake" || name = "vanilla at BAKE's steps" || name = "dlb" then Expect.equal iterations 15 "120 images / 8 anchors (DLB: 8 new images per batch)"
                        if name = "pskd" then Expect.equal iterations 8 "120 images / 16"
                        let carried = File.Exists(Path.Combine(Checkpoints.ofPath dir, Checkpoints.MethodStateFile))
                        Expect.equal carried (name = "pskd" || name = "dlb") "only PS-KD and DLB carry state in their checkpoints")
                }
        ]

        test "the same config and seed give the same summary (every column but wall-clock seconds)" {
            withRunDir (fun a ->
                withRunDir (fun b ->
                    runTiny a [] ignore CancellationToken.None |> ignore
                    runTiny b [] ignore CancellationToken.None |> ignore
                    Expect.sequenceEqual (summaryWithoutSeconds b) (summaryWithoutSeconds a) "identical runs"))
        }

        testList "a run cancelled mid-epoch and resumed ends with the same summary as an uninterrupted run" [
            for name, extra in
                [ "bake", []
                  "pskd (carried predictions)", [ "TRAIN.USE_BAKE=False"; "TRAIN.INTRA_IMGS=0"; "METHOD.NAME=pskd" ]
                  "dlb (carried last batch)", [ "TRAIN.USE_BAKE=False"; "TRAIN.INTRA_IMGS=0"; "METHOD.NAME=dlb" ] ] ->
                test name {
                    withRunDir (fun whole ->
                        withRunDir (fun split ->
                            let extra = extra @ [ "OPTIM.MAX_EPOCH=3" ]
                            runTiny whole extra ignore CancellationToken.None |> ignore
                            use cancellation = new CancellationTokenSource()
                            let stopAt event =
                                match event with
                                | Iteration (2, 5, _, _, _, _, _) -> cancellation.Cancel()
                                | _ -> ()
                            let first = runTiny split extra stopAt cancellation.Token
                            Expect.isTrue first.Cancelled "cancelled"
                            Expect.hasLength first.History 1 "one epoch finished before the stop"
                            let config = tinyConfig split extra
                            let resumed = Trainer.run (config, Settings.ofConfigOrThrow config, true, null, CancellationToken.None)
                            Expect.hasLength resumed.History 3 "three epochs"
                            Expect.sequenceEqual (summaryWithoutSeconds split) (summaryWithoutSeconds whole) "resumed = uninterrupted"))
                }
        ]

        test "classes with a single training image are trained (anchor repeated) with one warning" {
            withRunDir (fun dir ->
                let warnings = Collections.Generic.List<string>()
                let record event = match event with Warning message -> warnings.Add message | _ -> ()
                let outcome = runTiny dir [ "TRAIN.PER_CLASS=1"; "OPTIM.MAX_EPOCH=2" ] record CancellationToken.None
                Expect.hasLength outcome.History 2 "trained"
                Expect.hasLength warnings 1 "warned once"
                Expect.stringContains warnings[0] "10 class(es) have a single training image" "says how many")
        }

        test "an already cancelled token trains nothing and leaves a resumable checkpoint" {
            withRunDir (fun dir ->
                use cancellation = new CancellationTokenSource()
                cancellation.Cancel()
                let steps = ref 0
                let count event = match event with Iteration _ -> steps.Value <- steps.Value + 1 | _ -> ()
                let outcome = runTiny dir [] count cancellation.Token
                Expect.isTrue outcome.Cancelled "cancelled"
                Expect.equal steps.Value 0 "no SGD step"
                Expect.isSome (Checkpoints.resolve (dir, "last")) "a checkpoint to resume from")
        }

        test "native tensors and process memory do not grow over a few hundred iterations" {
            withRunDir (fun dir ->
                let live = Collections.Generic.List<int64>()
                let memory = Collections.Generic.List<int64>()
                let record event =
                    match event with
                    | EpochFinished _ ->
                        GC.Collect()
                        GC.WaitForPendingFinalizers()
                        live.Add(torch.Tensor.TotalCount)
                        use proc = Diagnostics.Process.GetCurrentProcess()
                        memory.Add(proc.WorkingSet64)
                    | _ -> ()
                // 40 images per class, batch 16 (8 anchors + 8 positives): 50 iterations per epoch, 6 epochs.
                runTiny dir [ "TRAIN.PER_CLASS=40"; "OPTIM.MAX_EPOCH=6"; "TRAIN.EVAL_PERIOD=100" ] record CancellationToken.None |> ignore
                // The first epoch warms caches up; from epoch 2 on nothing may accumulate (the last epoch also evaluates).
                let counts = List.ofSeq live
                Expect.equal live[live.Count - 2] live[1] $"live tensors after each epoch: {counts}"
                Expect.isLessThanOrEqual live[live.Count - 1] live[1] $"live tensors after the evaluated last epoch: {counts}"
                let growth = float (memory[memory.Count - 1] - memory[1]) / 1048576.0
                Expect.isLessThan growth 64.0 $"working set growth {growth:F1} MB over 4 epochs; per epoch: {List.ofSeq memory}")
        }

        test "a non-finite loss stops the run naming the iteration and the last good checkpoint" {
            withRunDir (fun dir ->
                let error = throwsWith<BakeException> (fun () -> runTiny dir [ "OPTIM.BASE_LR=1e30" ] ignore CancellationToken.None |> ignore)
                Expect.stringContains error.Message "non-finite loss" "says what happened"
                Expect.stringContains error.Message "iteration" "names the iteration"
                Expect.stringContains error.Message "checkpoint" "names the last checkpoint")
        }

        test "an existing run continues (TRAIN.AUTO_RESUME) or is refused without --resume; --resume needs a checkpoint" {
            withRunDir (fun dir ->
                let first = runTiny dir [ "OPTIM.MAX_EPOCH=1" ] ignore CancellationToken.None
                let again = runTiny dir [ "OPTIM.MAX_EPOCH=1" ] ignore CancellationToken.None
                Expect.equal (again.History |> List.map (fun r -> r.TrainLoss)) (first.History |> List.map (fun r -> r.TrainLoss)) "a finished run is reported, not retrained"
                let error = throwsWith<UsageException> (fun () -> runTiny dir [ "OPTIM.MAX_EPOCH=1"; "TRAIN.AUTO_RESUME=False" ] ignore CancellationToken.None |> ignore)
                Expect.stringContains error.Message "resume it or choose another OUT_DIR" "says what to do"
                Expect.equal error.Parameter "resume" "names the parameter (the command line adds --resume)"
                let error = throwsWith<UsageException> (fun () -> runTiny dir [ "OPTIM.MAX_EPOCH=1"; "TRAIN.OMEGA=0.3" ] ignore CancellationToken.None |> ignore)
                Expect.stringContains error.Message "another configuration" "refuses a different configuration")
            withRunDir (fun dir ->
                let config = tinyConfig dir []
                let error = throwsWith<UsageException> (fun () -> Trainer.run (config, Settings.ofConfigOrThrow config, true, null, CancellationToken.None) |> ignore)
                Expect.stringContains error.Message "no checkpoint" "explains")
        }

        test "TRAIN.IM_SIZE other than the native size trains on random-resized crops and evaluates at that size" {
            withRunDir (fun dir ->
                let outcome = runTiny dir [ "OPTIM.MAX_EPOCH=1"; "TRAIN.IM_SIZE=20" ] ignore CancellationToken.None
                let state = Checkpoints.readState (Checkpoints.ofPath dir)
                Expect.sequenceEqual state.ImageShape [| 1; 20; 20 |] "the model was built for 20×20"
                let _, metrics = CheckpointEvaluation.evaluateCheckpoint (dir, None, 1, 500)
                Expect.floatClose Accuracy.veryHigh metrics.Top1 outcome.Final.Value.Top1 "eval uses the run's test transform")
        }

        test "unsupported pycls settings are refused, not ignored" {
            let problems = problemsOf (Settings.ofConfig (tinyConfig "unused" [ "TRAIN.SPLIT=val"; "TEST.SPLIT=train"; "BN.USE_PRECISE_STATS=True" ]))
            Expect.hasLength problems 3 $"three problems: {problems}"
        }

        test "BN settings Bake cannot honour are refused, not ignored" {
            let problems = problemsOf (Settings.ofConfig (tinyConfig "unused" [ "BN.ZERO_INIT_FINAL_GAMMA=True"; "BN.EPS=1e-3"; "BN.MOM=0" ]))
            Expect.hasLength problems 3 $"three problems: {problems}"
            for key in [ "BN.ZERO_INIT_FINAL_GAMMA"; "BN.EPS"; "BN.MOM" ] do
                Expect.exists problems (fun p -> p.Contains key) $"names {key}"
        }

        test "BN.MOM reaches the model's BatchNorm layers (the running statistics, hence the test metrics, change)" {
            withRunDir (fun usual ->
                withRunDir (fun other ->
                    let a = runTiny usual [ "OPTIM.MAX_EPOCH=1" ] ignore CancellationToken.None
                    let b = runTiny other [ "OPTIM.MAX_EPOCH=1"; "BN.MOM=1.0" ] ignore CancellationToken.None
                    Expect.notEqual b.Final.Value.Nll a.Final.Value.Nll "test NLL with BN.MOM 1.0 vs 0.1"))
        }

        test "a run directory evaluates by default on the dataset the run evaluated on (TEST.DATASET)" {
            withRunDir (fun dir ->
                // A test dataset other than the training one: the embedded files with its training images as the test split.
                let testData = Path.Combine(dir, "test-data")
                Directory.CreateDirectory testData |> ignore
                let embedded = Data.Datasets.embeddedDirectory ()
                for file in [ "train-images-idx3-ubyte.gz"; "train-labels-idx1-ubyte.gz" ] do
                    File.Copy(Path.Combine(embedded, file), Path.Combine(testData, file))
                    File.Copy(Path.Combine(embedded, file), Path.Combine(testData, file.Replace("train", "t10k")))
                let outcome = runTiny (Path.Combine(dir, "run")) [ "OPTIM.MAX_EPOCH=1"; "TEST.DATASET=" + testData ] ignore CancellationToken.None
                let _, metrics = CheckpointEvaluation.evaluateCheckpoint (Path.Combine(dir, "run"), None, 1, 500)
                Expect.equal metrics.Count outcome.Final.Value.Count "the same test images"
                Expect.floatClose Accuracy.veryHigh metrics.Top1 outcome.Final.Value.Top1 "the same top-1")
        }

        test "a TEST.DATASET with another class count or channel count is refused before training" {
            withRunDir (fun dir ->
                // The embedded images as an image folder (decoded as RGB), with some of the classes.
                let folderOf (classes: int) =
                    let root = Path.Combine(dir, $"{classes}-classes")
                    use embedded = Data.Datasets.embedded ()
                    for split in [ "train"; "test" ] do
                        for c in 0 .. classes - 1 do
                            let folder = Directory.CreateDirectory(Path.Combine(root, split, $"class{c}")).FullName
                            let index = embedded.Train.Labels |> Array.findIndex ((=) c)
                            use image = embedded.Train.Load [| index |]
                            use first = image[0L]
                            Data.ImageFolder.savePng (Path.Combine(folder, "0.png"), first)
                    root
                for classes, expected in [ 3, "has 3 classes"; 10, "3-channel images" ] do
                    let error =
                        throwsWith<UsageException> (fun () ->
                            runTiny (Path.Combine(dir, $"run{classes}")) [ "TEST.DATASET=" + folderOf classes ] ignore CancellationToken.None |> ignore)
                    Expect.stringContains error.Message expected "names the mismatch")
        }

        test "a malformed checkpoint pointer is a BakeException naming the file" {
            withRunDir (fun dir ->
                Directory.CreateDirectory(Path.Combine(dir, "checkpoints")) |> ignore
                let pointer = Path.Combine(dir, "checkpoints", "last.json")
                for text in [ "{ not json"; "{\"folder\": 3}"; "{}"; "{\"folder\": \"\"}" ] do
                    File.WriteAllText(pointer, text)
                    let error = throwsWith<BakeException> (fun () -> Checkpoints.ofPath dir |> ignore)
                    Expect.stringContains error.Message pointer $"names the pointer file ({text})")
        }

        test "MODEL.NUM_CLASSES other than the dataset's class count is refused before training" {
            withRunDir (fun dir ->
                let error = throwsWith<UsageException> (fun () -> runTiny dir [ "MODEL.NUM_CLASSES=12" ] ignore CancellationToken.None |> ignore)
                Expect.stringContains error.Message "MODEL.NUM_CLASSES = 12" "names the key and value"
                Expect.isNone (Checkpoints.resolve (dir, "last")) "nothing trained")
            withRunDir (fun dir ->
                let outcome = runTiny dir [ "MODEL.NUM_CLASSES=10"; "OPTIM.MAX_EPOCH=1" ] ignore CancellationToken.None
                Expect.isSome outcome.Final "the dataset's own count is accepted")
        }

        test "an unwritable run directory is a clear error" {
            let error = throwsWith<BakeException> (fun () -> runTiny "/proc/bake-cannot-write" [] ignore CancellationToken.None |> ignore)
            Expect.stringContains error.Message "/proc/bake-cannot-write" "names the directory"
        }

        test "a checkpoint evaluates to the metrics the run reported" {
            withRunDir (fun dir ->
                let outcome = runTiny dir [] ignore CancellationToken.None
                let _, metrics = CheckpointEvaluation.evaluateCheckpoint (Path.Combine(dir, "checkpoints", "epoch_0002"), Some "embedded", 1, 500)
                Expect.floatClose Accuracy.veryHigh metrics.Top1 outcome.Final.Value.Top1 "same top-1")
        }

        testList "--dry-run builds every shipped and official config without data" [
            for path in Array.append shippedConfigs officialConfigs do
                let name = Path.GetFileName path
                if not (name.StartsWith "BAKE-S-" || name.StartsWith "S-") then
                    yield test (Path.GetRelativePath(Path.Combine(repoRoot, ".."), path)) {
                        let config = Configs.load (path, [])
                        let text = DryRun.describe (config, Settings.ofConfigOrThrow config)
                        Expect.stringContains text "MODEL:" "prints the resolved config"
                        Expect.stringContains text "parameters" "prints the model summary"
                    }
        ]
    ]
