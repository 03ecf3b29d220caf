namespace Bake.Core

open System
open System.Diagnostics
open System.IO
open System.Threading
open System.Text.Json.Nodes
open TorchSharp
open Bake.Core.Data
open Bake.Core.Models

/// <summary>The result of a training run.</summary>
[<NoComparison>]
type TrainingOutcome =
    { OutDir: string
      History: EpochSummary list
      /// <summary>Test metrics of the final epoch (None when cancelled before any evaluation).</summary>
      Final: EvalMetrics option
      /// <summary>The evaluated epoch with the best test top-1, and its metrics.</summary>
      Best: (int * EvalMetrics) option
      Classes: string[]
      /// <summary>True when the run stopped early on cancellation (a resumable checkpoint was written).</summary>
      Cancelled: bool }

/// <summary>The training engine: one SGD step per batch for every method, evaluation, run files and checkpoints.</summary>
[<RequireQualifiedAccess>]
module Trainer =

    /// <summary>The soft-target/term loss of one batch for the method, plus the logits used for training accuracy
    /// and the labels they belong to.</summary>
    let private batchLoss (settings: TrainingSettings) (model: Classifier) (images: torch.Tensor) (labels: torch.Tensor) (mixedTargets: torch.Tensor option) : Loss * torch.Tensor * torch.Tensor =
        match settings.Method, mixedTargets with
        | Bake options, Some targets ->
            // CutMix: soft CE on the mixed labels; the BAKE targets come from the mixed images (REFERENCE.md §2.2).
            let output = Classifier.featuresAndLogits (model, images)
            Losses.bakeSoftLabels (output.Features, output.Logits, targets, options), output.Logits, labels
        | _, Some targets ->
            let logits = model.forward images
            Losses.softLabels (logits, targets), logits, labels
        | _, None ->
        match settings.Method with
        | CsKd options ->
            // CS-KD: anchors first, partners second; the partners' forward runs without gradient but in train mode,
            // so BN statistics see both halves, as in the official code (REFERENCE.md §8).
            let half = images.shape[0] / 2L
            let anchors, partners = images.narrow (0L, 0L, half), images.narrow (0L, half, half)
            let anchorLabels = labels.narrow (0L, 0L, half)
            let logits = model.forward anchors
            let partnerLogits = using (torch.no_grad ()) (fun _ -> model.forward partners)
            Losses.csKd (logits, partnerLogits, anchorLabels, options), logits, anchorLabels
        | Bake options ->
            let output = Classifier.featuresAndLogits (model, images)
            Losses.bake (output.Features, output.Logits, labels, options), output.Logits, labels
        | Vanilla ->
            let logits = model.forward images
            Losses.vanilla (logits, labels), logits, labels
        | LabelSmoothing options ->
            let logits = model.forward images
            Losses.labelSmoothing (logits, labels, options), logits, labels
        | TfKdReg options ->
            let logits = model.forward images
            Losses.tfKdReg (logits, labels, options), logits, labels

    /// <summary>The batches (index lists) of one training epoch for the method's sampler.</summary>
    [<CompiledName("EpochPlan")>]
    let epochPlan (settings: TrainingSettings, labels: int[], epoch: int) : int[][] =
        let seed = settings.Seed
        match settings.Method with
        | CsKd _ -> Sampling.pairBatches (labels, settings.BatchSize / 2, seed, epoch)
        | _ when settings.IntraImages > 0 ->
            Sampling.bakeBatches (labels, settings.Anchors, settings.IntraImages, seed, epoch)
        | _ ->
            let iterations =
                if settings.EqualStepsM > 0 then
                    let anchors = settings.BatchSize / (settings.EqualStepsM + 1)
                    Some((labels.Length + anchors - 1) / anchors)
                else None
            Sampling.shuffledBatches (labels.Length, settings.BatchSize, seed, epoch, iterations)

    /// <summary>Evaluates a model on clean test images: top-1/top-5, NLL, ECE, per class (eval mode, no autograd).</summary>
    [<CompiledName("Evaluate")>]
    let evaluate (model: Classifier, dataset: Dataset, transform: TransformSpec, batchSize: int, device: torch.Device, workers: int) : EvalMetrics =
        let logits, labels = Evaluation.logits (model, dataset.Test, transform, dataset.Mean, dataset.Std, batchSize, device, workers, Clean)
        use logits = logits
        use labels = labels
        Evaluation.metricsOf (logits, labels, 1.0)

    /// <summary>A view of a split restricted to some of its images.</summary>
    let private subset (split: ISplit) (kept: int[]) : ISplit =
        let labels = kept |> Array.map (fun i -> split.Labels[i])
        { new ISplit with
            member _.Count = kept.Length
            member _.Labels = labels
            member _.Load indices = split.Load(indices |> Array.map (fun i -> kept[i])) }

    /// <summary>Splits a training split per class, in a seeded shuffle: the first <paramref name="holdoutPerClass"/>
    /// images of each class are held out (for calibration), the next <paramref name="perClass"/> (all when 0) train.
    /// Returns (training, held-out); each keeps the original order of its images.</summary>
    [<CompiledName("SplitTraining")>]
    let splitTraining (split: ISplit, perClass: int, holdoutPerClass: int, seed: int) : ISplit * ISplit =
        let random = SeededRandom.Derive(int64 seed, 0x686f6c64L)
        let order = Array.init split.Count id
        random.Shuffle order
        let byClass = order |> Array.groupBy (fun i -> split.Labels[i])
        let held = byClass |> Array.collect (fun (_, members) -> Array.truncate holdoutPerClass members) |> Array.sort
        let training =
            byClass
            |> Array.collect (fun (_, members) ->
                let rest = Array.skip (min holdoutPerClass members.Length) members
                if perClass > 0 then Array.truncate perClass rest else rest)
            |> Array.sort
        subset split training, subset split held

    /// <summary>Sets BN.MOM on every BatchNorm of a model. Momentum only steers the running statistics while training,
    /// so it need not be recorded in checkpoints.</summary>
    let private setBatchNormMomentum (model: Classifier) (momentum: float) =
        for m in model.modules () do
            match m with
            | :? Modules.BatchNorm as norm -> norm.momentum <- momentum
            | _ -> ()

    let private log (runDir: string) (record: JsonObject) = RunFiles.appendLog (Path.Combine(runDir, "log.jsonl")) record

    let private bestOf (history: EpochSummary list) =
        history
        |> List.choose (fun r -> r.Test |> Option.map (fun m -> r.Epoch, m))
        |> function
            | [] -> None
            | evaluated -> Some(evaluated |> List.maxBy (fun (epoch, m) -> m.Top1, -epoch))

    /// <summary>The training and test transforms and the input size. The dataset's presets (native size up to 64 px,
    /// else 224 crops from resizes to 256) unless TRAIN.IM_SIZE / TEST.IM_SIZE ask for another size: then training uses
    /// a random-resized crop to IM_SIZE (scale 0.08–1, the official TinyImageNet and ImageNet recipes) and testing a
    /// resize to TEST.IM_SIZE (default IM_SIZE, or IM_SIZE·256/224 for large images) and a center crop of IM_SIZE.</summary>
    [<CompiledName("TransformsFor")>]
    let transformsFor (settings: TrainingSettings) (dataset: Dataset) : TransformSpec * TransformSpec * int =
        let side = min dataset.ImageShape[1] dataset.ImageShape[2]
        let small = side <= 64
        let native = if small then side else 224
        let size = if settings.ImageSize > 0 then settings.ImageSize else native
        let training = if settings.Augment then Transforms.forTraining dataset else Transforms.forEvaluation dataset
        let evaluation = Transforms.forEvaluation dataset
        let train =
            if size = native then training
            elif settings.Augment then
                { training with RandomCrop = None; ResizeCenterCrop = None
                                RandomResizedCrop = Some { Size = size; Scale = (0.08, 1.0); Ratio = (3.0 / 4.0, 4.0 / 3.0) } }
            else { evaluation with ResizeCenterCrop = Some { Resize = size; Crop = size } }
        let testResize =
            if settings.TestImageSize > 0 then settings.TestImageSize
            elif small then size
            else size * 256 / 224
        let test =
            if size = native && settings.TestImageSize = 0 then evaluation
            else { evaluation with ResizeCenterCrop = Some { Resize = testResize; Crop = size } }
        train, test, size

    /// <summary>Trains a model as the settings say, writing config.yaml, log.jsonl, summary.csv and checkpoints
    /// into <c>settings.OutDir</c>. With <paramref name="resume"/>, continues from the last checkpoint there (and
    /// ends with the same summary as an uninterrupted run). Cancellation stops after the current iteration and
    /// writes a resumable checkpoint. A non-finite loss stops the run with a <see cref="T:Bake.Core.BakeException"/>
    /// naming the iteration and the last good checkpoint.</summary>
    [<CompiledName("Run")>]
    let run (config: Config, settings: TrainingSettings, resume: bool, report: Action<TrainingEvent>, cancellation: CancellationToken) : TrainingOutcome =
        let runDir = Path.GetFullPath settings.OutDir
        let device = torch.Device settings.Device
        use tensorBoard = new Reporting.TensorBoardLog(runDir, settings.LogPeriod, settings.TensorBoard)
        let emit event =
            tensorBoard.Record event
            if not (isNull report) then report.Invoke event
        // Fail before reading any data when the run directory cannot be written.
        try
            Directory.CreateDirectory runDir |> ignore
            let probe = Path.Combine(runDir, $".bake-write-test-{Guid.NewGuid():N}")
            File.WriteAllText(probe, "")
            File.Delete probe
        with
        | :? IOException | :? UnauthorizedAccessException as e ->
            raise (BakeException($"cannot write the run directory {runDir}: {e.Message}", e))
        let existing = Checkpoints.resolve (runDir, "last")
        // pycls' TRAIN.AUTO_RESUME (default True): a run directory that holds a checkpoint is continued, so running
        // the same command again finishes an interrupted run (or just reports a finished one).
        let resuming = existing.IsSome && (resume || settings.AutoResume)
        if existing.IsSome && not resuming then
            raise (UsageException $"{runDir} already holds a run (checkpoints/last.json) and TRAIN.AUTO_RESUME is False: pass --resume to continue it or choose another --out")
        if resume && existing.IsNone then
            let expected = Path.Combine(runDir, "checkpoints", "last.json")
            raise (UsageException $"--resume: no checkpoint in {runDir} (expected {expected})")
        use dataset = Datasets.load (settings.Dataset, settings.DataFormat)
        let testDataset =
            match settings.TestData with
            | spec, _ when spec = settings.Dataset -> dataset
            | spec, format -> Datasets.load (spec, format)
        use _ownTestDataset = if obj.ReferenceEquals(testDataset, dataset) then null else testDataset :> IDisposable
        // Found now rather than at the first evaluation, an epoch into training.
        if testDataset.Classes.Length <> dataset.Classes.Length then
            raise (UsageException $"TEST.DATASET {settings.TestDataset} has {testDataset.Classes.Length} classes but TRAIN.DATASET {settings.Dataset} has {dataset.Classes.Length}")
        if testDataset.ImageShape[0] <> dataset.ImageShape[0] then
            raise (UsageException $"TEST.DATASET {settings.TestDataset} has {testDataset.ImageShape[0]}-channel images but TRAIN.DATASET {settings.Dataset} has {dataset.ImageShape[0]}-channel ones")
        let train =
            if settings.PerClass > 0 || settings.HoldoutPerClass > 0 then
                fst (splitTraining (dataset.Train, settings.PerClass, settings.HoldoutPerClass, settings.Seed))
            else dataset.Train
        // Checkpoints record the dataset's class names and rebuild the model with that many logits, so a head of
        // another width would train but could never be evaluated, exported or used for prediction.
        if settings.Classes > 0 && settings.Classes <> dataset.Classes.Length then
            raise (UsageException $"MODEL.NUM_CLASSES = {settings.Classes} but the dataset {dataset.Name} has {dataset.Classes.Length} classes: set it to {dataset.Classes.Length} or to 0 (taken from the dataset)")
        let classes = if settings.Classes > 0 then settings.Classes else dataset.Classes.Length
        let trainTransform, testTransform, size = transformsFor settings dataset
        let channels = dataset.ImageShape[0]
        torch.manual_seed (int64 settings.Seed) |> ignore
        use model = Models.create (settings.Model, classes, channels, size)
        setBatchNormMomentum model settings.BatchNormMomentum
        if settings.Weights <> "" then Weights.load (model, settings.Weights)
        model.``to`` device |> ignore
        use optimizer = Optimizer.sgd (model, settings.Optimizer, settings.Schedule.BaseLr)
        let configHash = Configs.hash config
        let startState =
            match existing with
            | Some checkpoint when resuming ->
                let state = Checkpoints.readState checkpoint
                if state.ConfigHash <> configHash then
                    let written = Path.Combine(runDir, "config.yaml")
                    raise (UsageException $"{runDir} holds a run trained with another configuration (checkpoint {checkpoint}; compare {written}): choose another --out to start a new run")
                Checkpoints.load (checkpoint, model, Some(optimizer :> torch.optim.Optimizer))
                Some state
            | _ -> None
        Files.writeAllTextAtomic (Path.Combine(runDir, "config.yaml")) (Configs.toYaml config)
        let mutable history = startState |> Option.map (fun s -> s.History) |> Option.defaultValue []
        let firstEpoch = startState |> Option.map (fun s -> s.Epoch) |> Option.defaultValue 0
        let mutable progress = startState |> Option.map (fun s -> s.Progress) |> Option.defaultValue EpochProgress.Empty
        let mutable lastCheckpoint = existing |> Option.filter (fun _ -> resuming)
        let stateFor epoch p =
            { Epoch = epoch; Progress = p; ConfigHash = configHash; Model = settings.Model; Classes = dataset.Classes
              ImageShape = [| channels; size; size |]; Mean = dataset.Mean; Std = dataset.Std; History = history }
        let saveCheckpoint name pointers epoch p =
            let path = Checkpoints.save (runDir, name, pointers, model, optimizer, stateFor epoch p)
            lastCheckpoint <- Some path
            emit (CheckpointWritten path)
        emit (Started ($"{settings.Method.Name} · {settings.Model} ({Classifier.parameterCount model:N0} parameters) · {dataset.Name}: {train.Count} train / {testDataset.Test.Count} test images, {classes} classes · epochs {firstEpoch + 1}–{settings.Epochs} · out {runDir}", dataset.Classes))
        // The per-class samplers cannot find a partner for a class with a single image; they repeat the anchor
        // (Sampling.bakeBatches, pairBatches), which gives such an image no same-class neighbour: say so once.
        let usesClassSampler = settings.IntraImages > 0 || (match settings.Method with CsKd _ -> true | _ -> false)
        match Sampling.singletonClasses train.Labels with
        | singles when usesClassSampler && singles.Length > 0 ->
            let shown = singles |> Array.truncate 5 |> Array.map (fun c -> dataset.Classes[c])
            let names = String.concat ", " (if singles.Length > 5 then Array.append shown [| "…" |] else shown)
            emit (Warning $"{singles.Length} class(es) have a single training image ({names}): the per-class sampler repeats such an image as its own positive")
        | _ -> ()
        let mutable cancelled = false
        let mutable epoch = firstEpoch
        while epoch < settings.Epochs && not cancelled do
            let plan = epochPlan (settings, train.Labels, epoch)
            let iterations = plan.Length
            let clock = Stopwatch.StartNew()
            let secondsBefore = progress.Seconds
            model.train ()
            // Dropout and other torch randomness: reseeded per epoch so that a resumed run repeats it.
            torch.manual_seed (int64 settings.Seed * 100003L + int64 epoch) |> ignore
            let startIteration = progress.Iterations
            let epochLr = Schedules.learningRate (settings.Schedule, epoch, 0, iterations)
            let mutable iteration = startIteration
            let windowClock = Stopwatch.StartNew()
            let mutable windowImages = 0L
            // The whole plan goes to the loader, so each batch keeps its (seed, epoch, index) augmentation seed;
            // batches already trained before a mid-epoch checkpoint are skipped, and freed: the consumer owns every
            // batch it is handed (Seq.skip would leave their native memory to the finalizers).
            use batches = (Loader.epoch (train, plan, trainTransform, settings.Seed, epoch, settings.Workers)).GetEnumerator()
            let mutable skipped = 0
            while skipped < startIteration && batches.MoveNext() do
                (batches.Current :> IDisposable).Dispose()
                skipped <- skipped + 1
            // A token cancelled before an iteration stops before it (no extra step is trained).
            while not cancelled && not cancellation.IsCancellationRequested && batches.MoveNext() do
                use batch = batches.Current
                let lr = Schedules.learningRate (settings.Schedule, epoch, iteration, iterations)
                Optimizer.setLearningRate (optimizer, lr)
                let lossValue, terms, correct, seen =
                    use _scope = torch.NewDisposeScope()
                    let images = batch.Images.``to`` device
                    let labels = batch.Labels.``to`` device
                    optimizer.zero_grad ()
                    let mixRandom = SeededRandom.Derive(int64 settings.Seed, int64 epoch, int64 iteration, 0x6375746dL)
                    let mixing =
                        settings.CutMix.Enabled && epoch < settings.Epochs - settings.CutMix.OffEpochs
                        && mixRandom.NextDouble() < settings.CutMix.Probability
                    let images, mixedTargets =
                        if mixing then
                            let mixed = Transforms.cutMix settings.CutMix.Beta mixRandom (images, labels)
                            mixed.Images, Some(mixed.Targets(int classes).``to`` device)
                        else images, None
                    let loss, logits, logitLabels = batchLoss settings model images labels mixedTargets
                    let lossValue = loss.Total.to_type(torch.float64).item<float> ()
                    if not (Double.IsFinite lossValue) then
                        let last = lastCheckpoint |> Option.defaultValue "none (no checkpoint was written yet)"
                        raise (BakeException $"non-finite loss ({lossValue}) at epoch {epoch + 1}, iteration {iteration + 1}: training stopped. Last good checkpoint: {last}. Lower OPTIM.BASE_LR or check the data.")
                    loss.Total.backward ()
                    optimizer.step () |> ignore
                    let terms = loss.Terms |> Array.map (fun t -> t.Name, t.Value.to_type(torch.float64).item<float> ()) |> List.ofArray
                    let predictions = logits.detach().argmax (1L)
                    let correct = predictions.eq(logitLabels).sum().item<int64> ()
                    lossValue, terms, correct, logitLabels.shape[0]
                iteration <- iteration + 1
                windowImages <- windowImages + batch.Images.shape[0]
                progress <-
                    { Iterations = iteration
                      LossSum = progress.LossSum + lossValue
                      TermSums = if progress.TermSums.IsEmpty then terms else List.map2 (fun (n, a) (_, b) -> n, a + b) progress.TermSums terms
                      Correct = progress.Correct + correct
                      Seen = progress.Seen + seen
                      Seconds = secondsBefore + clock.Elapsed.TotalSeconds }
                let imagesPerSecond = float windowImages / max 1e-9 windowClock.Elapsed.TotalSeconds
                emit (Iteration(epoch + 1, iteration, iterations, progress.LossSum / float iteration, 100.0 * float progress.Correct / float (max 1L progress.Seen), imagesPerSecond, lr))
                if iteration % settings.LogPeriod = 0 || iteration = iterations then
                    let record = JsonObject()
                    record["phase"] <- JsonValue.Create "train_iter"
                    record["epoch"] <- JsonValue.Create(epoch + 1)
                    record["iteration"] <- JsonValue.Create iteration
                    record["iterations"] <- JsonValue.Create iterations
                    record["lr"] <- JsonValue.Create lr
                    record["loss"] <- JsonValue.Create lossValue
                    for name, value in terms do record[name] <- JsonValue.Create value
                    record["images_per_second"] <- JsonValue.Create imagesPerSecond
                    log runDir record
                    windowClock.Restart()
                    windowImages <- 0L
                if cancellation.IsCancellationRequested && iteration < iterations then
                    cancelled <- true
            if not cancelled && cancellation.IsCancellationRequested && iteration < iterations then cancelled <- true
            if cancelled then
                saveCheckpoint (sprintf "epoch_%04d_iter_%05d" (epoch + 1) iteration) [ "last" ] epoch progress
            else
                let evaluate' = (epoch + 1) % settings.EvalPeriod = 0 || epoch + 1 = settings.Epochs
                let test =
                    if evaluate' then Some(evaluate (model, testDataset, testTransform, settings.TestBatchSize, device, settings.Workers))
                    else None
                let row =
                    { Epoch = epoch + 1
                      Iterations = iterations
                      LearningRate = epochLr
                      TrainLoss = progress.LossSum / float (max 1 iterations)
                      TrainTerms = progress.TermSums |> List.map (fun (n, v) -> n, v / float (max 1 iterations))
                      TrainTop1 = 100.0 * float progress.Correct / float (max 1L progress.Seen)
                      Test = test
                      Seconds = secondsBefore + clock.Elapsed.TotalSeconds }
                history <- history @ [ row ]
                RunFiles.writeSummary (Path.Combine(runDir, "summary.csv")) history
                // loss.png and accuracy.png are a convenience: a failure to draw them (no SkiaSharp natives, a full disk) must not stop
                // training, so it is ignored here; `bake plot <run dir>` redraws them and reports the error.
                (try Reporting.Plots.summaryFigures runDir |> ignore with _ -> ())
                log runDir (RunFiles.epochJson row)
                progress <- EpochProgress.Empty
                let isBest = match bestOf history, test with Some (bestEpoch, _), Some _ -> bestEpoch = row.Epoch | _ -> false
                let periodic = (epoch + 1) % settings.CheckpointPeriod = 0 || epoch + 1 = settings.Epochs
                if periodic || isBest then
                    let pointers = (if periodic then [ "last" ] else []) @ (if isBest then [ "best" ] else [])
                    saveCheckpoint (sprintf "epoch_%04d" (epoch + 1)) pointers (epoch + 1) EpochProgress.Empty
                emit (EpochFinished row)
                epoch <- epoch + 1
        { OutDir = runDir
          History = history
          Final = history |> List.tryLast |> Option.bind (fun r -> if r.Epoch = settings.Epochs then r.Test else None)
          Best = bestOf history
          Classes = dataset.Classes
          Cancelled = cancelled }

    /// <summary>The input shape a dry run assumes without touching data: known datasets' shapes, else 3×IM_SIZE
    /// (224 when unset).</summary>
    let private assumedShape (settings: TrainingSettings) =
        let size fallback = if settings.ImageSize > 0 then settings.ImageSize else fallback
        match settings.Dataset.ToLowerInvariant() with
        | "embedded" | "fashion-mnist" | "mnist" -> 1, size 28
        | "cifar10" | "cifar100" -> 3, size 32
        | _ -> 3, size 224

    /// <summary>What <c>bake train --dry-run</c> prints: the resolved config, the method and the model summary,
    /// built without reading any data.</summary>
    [<CompiledName("DryRun")>]
    let dryRun (config: Config, settings: TrainingSettings) : string =
        let channels, size = assumedShape settings
        let classes = if settings.Classes > 0 then settings.Classes else 10
        use model = Models.create (settings.Model, classes, channels, size)
        let classesNote = if settings.Classes > 0 then "" else " (MODEL.NUM_CLASSES = 0: taken from the dataset at training time; shown with 10)"
        String.concat "\n"
            [ Configs.toYaml config
              $"method: {settings.Method.Name}; batch {settings.BatchSize} = {settings.Anchors} anchors × {settings.IntraImages + 1}; epochs {settings.Epochs}; base lr {settings.Schedule.BaseLr}"
              $"model: {settings.Model}, input {channels}×{size}×{size}, {classes} classes{classesNote}"
              Models.describe model ]

    /// <summary>Evaluates a checkpoint (a checkpoint folder, or a run directory: its last checkpoint, i.e. the final model) on
    /// the test split of a dataset (by default the one the run evaluated on, read from its config.yaml: TEST.DATASET, else
    /// TRAIN.DATASET in DATA.FORMAT). Images are normalised with the checkpoint's mean and std, as in training.</summary>
    [<CompiledName("EvaluateCheckpoint")>]
    let evaluateCheckpoint (path: string, datasetSpec: string option, workers: int, batchSize: int) : CheckpointState * EvalMetrics =
        let checkpoint = Checkpoints.ofPath path
        let state, model = Checkpoints.loadModel checkpoint
        use model = model
        let settings = Checkpoints.runConfig checkpoint |> Option.map (fun (_, _, settings) -> settings)
        let spec, format =
            match datasetSpec, settings with
            | Some spec, _ -> spec, None
            | None, Some settings -> settings.TestData
            | None, None -> raise (UsageException $"{path}: the run's config.yaml was not found next to the checkpoint; pass --dataset")
        use dataset = Datasets.load (spec, format)
        Checkpoints.requireSameClasses (checkpoint, state, spec, dataset)
        // The model expects the training data's normalisation, whatever dataset it is evaluated on.
        let normalisedAsTrained = { dataset with Mean = state.Mean; Std = state.Std }
        // The run's own test transform (its TRAIN/TEST.IM_SIZE), else the dataset's preset.
        let transform =
            match settings with
            | Some settings -> let _, test, _ = transformsFor settings normalisedAsTrained in test
            | None -> Transforms.forEvaluation normalisedAsTrained
        state, evaluate (model, dataset, transform, batchSize, torch.CPU, workers)

    /// <summary>Evaluates weights from anywhere (a torchvision or official BAKE/pycls state dict, a .safetensors file)
    /// in a registered model on the test split of a dataset; the model is built for the dataset's classes and image
    /// shape.</summary>
    [<CompiledName("EvaluateWeights")>]
    let evaluateWeights (weights: string, modelName: string, datasetSpec: string, workers: int, batchSize: int) : string[] * EvalMetrics =
        use dataset = Datasets.load (datasetSpec, None)
        use model = Models.create (modelName, dataset.Classes.Length, dataset.ImageShape[0], dataset.ImageShape[1])
        Weights.load (model, weights)
        dataset.Classes, evaluate (model, dataset, Transforms.forEvaluation dataset, batchSize, torch.CPU, workers)

/// <summary>Clean, calibrated, adversarial and corrupted test metrics of one model.</summary>
[<NoComparison>]
type RobustnessReport =
    { Checkpoint: string
      Clean: EvalMetrics
      /// <summary>The temperature fitted on the run's held-out training images, and the test metrics after scaling.</summary>
      Calibrated: (float * EvalMetrics) option
      /// <summary>(ε in pixel units, metrics) for each FGSM strength.</summary>
      Fgsm: (float * EvalMetrics) list
      /// <summary>(corruption, severity 1–3, metrics).</summary>
      Corruptions: (Corruption * int * EvalMetrics) list }

/// <summary>Robustness and calibration evaluation of checkpoints (`bake eval --fgsm --corruption --calibrate`).</summary>
[<RequireQualifiedAccess>]
module Robustness =

    /// <summary>Evaluates a checkpoint (a checkpoint folder, or a run directory: its last checkpoint) on its run's test split: clean,
    /// after temperature scaling fitted on the run's held-out training images (TRAIN.HOLDOUT_PER_CLASS), under FGSM
    /// at each ε and under each corruption at severities 1–3.</summary>
    [<CompiledName("Evaluate")>]
    let evaluate (path: string, fgsm: float list, corruptions: Corruption list, calibrate: bool, batchSize: int, workers: int) : RobustnessReport =
        let checkpoint = Checkpoints.ofPath path
        let runConfig, settings =
            match Checkpoints.runConfig checkpoint with
            | Some (runConfig, _, settings) -> runConfig, settings
            | None ->
                let expected = Path.Combine(Checkpoints.runDirectory checkpoint, "config.yaml")
                raise (BakeException $"{checkpoint}: the run's config.yaml is missing ({expected})")
        use dataset = Datasets.load (settings.Dataset, settings.DataFormat)
        let _, model = Checkpoints.loadModel checkpoint
        use model = model
        let _, transform, _ = Trainer.transformsFor settings dataset
        let logitsOf (split: ISplit) perturbation =
            Evaluation.logits (model, split, transform, dataset.Mean, dataset.Std, batchSize, torch.CPU, workers, perturbation)
        let metrics split perturbation temperature =
            let logits, labels = logitsOf split perturbation
            use logits = logits
            use labels = labels
            Evaluation.metricsOf (logits, labels, temperature)
        let clean = metrics dataset.Test Clean 1.0
        let calibrated =
            if not calibrate then None
            elif settings.HoldoutPerClass = 0 then
                raise (UsageException $"--calibrate needs held-out training images: the run {runConfig} has TRAIN.HOLDOUT_PER_CLASS = 0")
            else
                let _, held = Trainer.splitTraining (dataset.Train, settings.PerClass, settings.HoldoutPerClass, settings.Seed)
                let logits, labels = logitsOf held Clean
                use logits = logits
                use labels = labels
                let temperature = Evaluation.fitTemperature (logits, labels)
                Some(temperature, metrics dataset.Test Clean temperature)
        { Checkpoint = checkpoint
          Clean = clean
          Calibrated = calibrated
          Fgsm = fgsm |> List.map (fun epsilon -> epsilon, metrics dataset.Test (Fgsm epsilon) 1.0)
          Corruptions =
            [ for corruption in corruptions do
                  for severity in 1..3 -> corruption, severity, metrics dataset.Test (Corrupted(corruption, severity)) 1.0 ] }

    /// <summary>The report as JSON (written atomically by the command line's --out).</summary>
    [<CompiledName("ToJson")>]
    let toJson (report: RobustnessReport) : string =
        let metrics (m: EvalMetrics) =
            let o = JsonObject()
            o["top1"] <- RunFiles.jsonNumber m.Top1
            o["top5"] <- RunFiles.jsonNumber m.Top5
            o["nll"] <- RunFiles.jsonNumber m.Nll
            o["ece"] <- RunFiles.jsonNumber m.Ece
            o
        let root = JsonObject()
        root["checkpoint"] <- JsonValue.Create report.Checkpoint
        root["clean"] <- metrics report.Clean
        match report.Calibrated with
        | Some (t, m) ->
            let o = metrics m
            o["temperature"] <- JsonValue.Create t
            root["calibrated"] <- o
        | None -> ()
        root["fgsm"] <-
            JsonArray(report.Fgsm |> List.map (fun (e, m) -> let o = metrics m in o["epsilon"] <- JsonValue.Create e; o :> JsonNode) |> Array.ofList)
        root["corruptions"] <-
            JsonArray(report.Corruptions |> List.map (fun (c, s, m) ->
                let o = metrics m
                o["corruption"] <- JsonValue.Create c.Name
                o["severity"] <- JsonValue.Create s
                o :> JsonNode) |> Array.ofList)
        root.ToJsonString(Text.Json.JsonSerializerOptions(WriteIndented = true))
