namespace Bake.Core

open System
open System.Diagnostics
open System.Text.Json.Nodes
open System.Threading
open TorchSharp
open Bake.Core.Data
open Bake.Core.Distributed

/// <summary>How a training epoch ended.</summary>
[<NoComparison>]
type EpochResult =
    /// <summary>Every batch of the plan was trained: the epoch's running sums and its iteration count.</summary>
    | Completed of progress: EpochProgress * iterations: int
    /// <summary>Cancellation stopped it before the end: the running sums so far (a mid-epoch checkpoint resumes them).</summary>
    | Interrupted of progress: EpochProgress

/// <summary>One training epoch (pycls's <c>train_epoch</c>): the method's batch plan, one SGD step per batch with
/// CutMix and the method's loss, the non-finite-loss guard, running sums, iteration events and log lines.</summary>
[<RequireQualifiedAccess>]
module Epoch =

    /// <summary>The batches (index lists into the training images) of one epoch for the method's sampler.</summary>
    [<CompiledName("Plan")>]
    let plan (settings: TrainingSettings, labels: int[], epoch: int) : int[][] =
        let seed = settings.Seed
        match settings.Method.Sampler with
        | Sampler.ClassPairs -> Sampling.pairBatches (labels, settings.Anchors, seed, epoch)
        | Sampler.RepeatLastHalf -> Sampling.lastHalfBatches (labels.Length, settings.Anchors, seed, epoch)
        | Sampler.Standard when settings.IntraImages > 0 -> Sampling.bakeBatches (labels, settings.Anchors, settings.IntraImages, seed, epoch)
        | Sampler.Standard ->
            let iterations =
                if settings.EqualStepsM > 0 then Some(Sampling.iterationsPerEpoch (labels.Length, settings.BatchSize / (settings.EqualStepsM + 1)))
                else None
            Sampling.shuffledBatches (labels.Length, settings.BatchSize, seed, epoch, iterations)

    /// <summary>Adds one iteration's numbers to the running sums.</summary>
    let private accumulate (progress: EpochProgress) (loss: float) (terms: (string * float) list) (correct: int64) (seen: int64) seconds =
        { Iterations = progress.Iterations + 1
          LossSum = progress.LossSum + loss
          TermSums = if progress.TermSums.IsEmpty then terms else List.map2 (fun (n, a) (_, b) -> n, a + b) progress.TermSums terms
          Correct = progress.Correct + correct
          Seen = progress.Seen + seen
          Seconds = seconds }

    /// <summary>One SGD step on a batch: CutMix when it is on for this iteration, the method's loss, the guard against
    /// a non-finite loss, backward and the optimizer step. Everything it allocates is freed by one dispose scope.</summary>
    /// <returns>The loss, its terms, and the correct and counted predictions on the batch as trained.</returns>
    let private step (setup: TrainingSetup) (epoch: int) (iteration: int) (batch: Batch) (indices: int[]) (shares: ShardedPlan) (lastCheckpoint: string option) =
        let settings = setup.Settings
        let world = World.Current
        use _scope = torch.NewDisposeScope()
        let images = batch.Images.``to`` setup.Device
        let labels = batch.Labels.``to`` setup.Device
        setup.Optimizer.zero_grad ()
        let mixRandom = SeededRandom.Derive(int64 settings.Seed, int64 epoch, int64 iteration, 0x6375746dL)
        let mixing =
            settings.CutMix.Enabled && epoch < settings.Epochs - settings.CutMix.OffEpochs
            && mixRandom.NextDouble() < settings.CutMix.Probability
        let images, mixedTargets =
            if mixing then
                let mixed = Transforms.cutMix settings.CutMix.Beta mixRandom (images, labels)
                mixed.Images, Some(mixed.Targets(setup.Classes).``to`` setup.Device)
            else images, None
        let result =
            settings.Method.Step setup.Carried
                { Model = setup.Model; Images = images; Labels = labels; MixedTargets = mixedTargets; Indices = indices
                  Epoch = epoch; Epochs = settings.Epochs
                  Global = DataParallel.globalBatch (world, Keys.TRAIN.GLOBAL_KE.Of setup.Config, shares.Offsets[iteration]) }
        let terms = result.Loss.Terms |> Array.map (fun t -> t.Name, t.Value.to_type(torch.float64).item<float> ()) |> List.ofArray
        let correct = result.Logits.detach().argmax(1L).eq(result.Labels).sum().item<int64> ()
        // Over the global batch: every rank sees the same numbers (and stops together on a non-finite loss).
        let lossValue, terms, correct, seen =
            DataParallel.reduceStep (world, shares.Weights[iteration], result.Loss.Total.to_type(torch.float64).item<float> (), terms, correct, result.Labels.shape[0])
        if not (Double.IsFinite lossValue) then
            let last = lastCheckpoint |> Option.defaultValue "none (no checkpoint was written yet)"
            raise (BakeException $"non-finite loss ({lossValue}) at epoch {epoch + 1}, iteration {iteration + 1}: training stopped. Last good checkpoint: {last}. Lower OPTIM.BASE_LR or check the data.")
        result.Loss.Total.backward ()
        DataParallel.averageGradients (world, setup.Model, shares.Weights[iteration])
        setup.Optimizer.step () |> ignore
        lossValue, terms, correct, seen

    /// <summary>Trains epoch <paramref name="epoch"/> (0-based), from <paramref name="start"/>'s iteration on (a
    /// mid-epoch checkpoint's progress, or <c>EpochProgress.Empty</c>). Cancellation stops before the next iteration.</summary>
    /// <param name="setup">The run.</param>
    /// <param name="epoch">0-based epoch.</param>
    /// <param name="start">The running sums the epoch starts from.</param>
    /// <param name="lastCheckpoint">Named by the non-finite-loss error.</param>
    /// <param name="emit">Receives an <c>Iteration</c> event per step.</param>
    /// <param name="log">Receives a <c>train_iter</c> record every LOG_PERIOD iterations and at the last.</param>
    /// <param name="cancellation">Stops the epoch before its next iteration.</param>
    [<CompiledName("Train")>]
    let train (setup: TrainingSetup, epoch: int, start: EpochProgress, lastCheckpoint: string option,
               emit: TrainingEvent -> unit, log: JsonObject -> unit, cancellation: CancellationToken) : EpochResult =
        let settings = setup.Settings
        let world = World.Current
        // On K processes: this rank's shard of every global batch (docs/distributed.md).
        let shares = DataParallel.shard (world, settings, plan (settings, setup.Train.Labels, epoch))
        let batches = shares.Local
        let iterations = batches.Length
        let clock = Stopwatch.StartNew()
        let secondsBefore = start.Seconds
        setup.Model.train ()
        // Dropout and other torch randomness: reseeded per epoch so that a resumed run repeats it.
        torch.manual_seed (int64 settings.Seed * 100003L + int64 epoch + 7919L * int64 world.Rank) |> ignore
        let mutable progress = start
        let windowClock = Stopwatch.StartNew()
        let mutable windowImages = 0L
        // The whole plan goes to the loader, so each batch keeps its (seed, epoch, index) augmentation seed; batches
        // already trained before a mid-epoch checkpoint are skipped, and freed: the consumer owns every batch it is
        // handed (Seq.skip would leave their native memory to the finalizers).
        use loaded = (Loader.epoch (setup.Train, batches, setup.TrainTransform, settings.Seed, epoch, settings.Workers)).GetEnumerator()
        let mutable skipped = 0
        while skipped < start.Iterations && loaded.MoveNext() do
            (loaded.Current :> IDisposable).Dispose()
            skipped <- skipped + 1
        // A token cancelled before an iteration stops before it (no extra step is trained).
        // The ranks agree on stopping, so that none waits in a collective for one that stopped.
        while not (world.Any cancellation.IsCancellationRequested) && loaded.MoveNext() do
            use batch = loaded.Current
            let iteration = progress.Iterations
            let lr = Schedules.learningRate (settings.Schedule, epoch, iteration, iterations)
            Optimizer.setLearningRate (setup.Optimizer, lr)
            // No collection during the step: TorchSharp's own on-the-fly Scalars must not be finalized mid-call.
            let loss, terms, correct, seen = Runtime.withoutCollections (fun () -> step setup epoch iteration batch batches[iteration] shares lastCheckpoint)
            progress <- accumulate progress loss terms correct seen (secondsBefore + clock.Elapsed.TotalSeconds)
            windowImages <- windowImages + seen
            let imagesPerSecond = float windowImages / max 1e-9 windowClock.Elapsed.TotalSeconds
            let done' = progress.Iterations
            emit (Iteration(epoch + 1, done', iterations, progress.LossSum / float done', 100.0 * float progress.Correct / float (max 1L progress.Seen), imagesPerSecond, lr))
            if done' % settings.LogPeriod = 0 || done' = iterations then
                let record = JsonObject()
                record["phase"] <- JsonValue.Create "train_iter"
                record["epoch"] <- JsonValue.Create(epoch + 1)
                record["iteration"] <- JsonValue.Create done'
                record["iterations"] <- JsonValue.Create iterations
                record["lr"] <- JsonValue.Create lr
                record["loss"] <- JsonValue.Create loss
                for name, value in terms do record[name] <- JsonValue.Create value
                record["images_per_second"] <- JsonValue.Create imagesPerSecond
                log record
                windowClock.Restart()
                windowImages <- 0L
        DataParallel.broadcastBuffers (world, setup.Model)
        if progress.Iterations < iterations then Interrupted progress else Completed(progress, iterations)
