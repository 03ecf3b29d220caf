namespace Bake.Core

open System
open System.IO
open TorchSharp
open Bake.Core.Data
open Bake.Core.Models
open Bake.Core.Distributed

/// <summary>Everything a training run is set up with (pycls's <c>setup_model</c> and loaders): the run directory,
/// the data and its transforms, the model, the optimizer, the method's carried state, and the checkpoint it continues.
/// It owns the datasets, the model, the optimizer and the carried state, and frees them when disposed.</summary>
[<NoComparison; NoEquality>]
type TrainingSetup =
    { RunDir: string
      Config: Config
      Settings: TrainingSettings
      Device: torch.Device
      /// <summary>The training dataset (TRAIN.DATASET).</summary>
      Dataset: Dataset
      /// <summary>The dataset whose test split is evaluated (the training dataset unless TEST.DATASET names another).</summary>
      TestDataset: Dataset
      /// <summary>The training images actually trained on (after TRAIN.PER_CLASS and TRAIN.HOLDOUT_PER_CLASS).</summary>
      Train: ISplit
      Classes: int
      TrainTransform: TransformSpec
      TestTransform: TransformSpec
      ImageSize: int
      Model: Classifier
      Optimizer: Modules.SGD
      Carried: CarriedState
      /// <summary>Identifies the configuration in checkpoints (a resume with another one is refused).</summary>
      ConfigHash: string
      /// <summary>The checkpoint this run continues, and its state; None for a fresh run.</summary>
      Resumed: (string * CheckpointState) option
      /// <summary>What the user should know before training starts (e.g. a resume with another thread count).</summary>
      Warnings: string list
      /// <summary>This process's hold on the run directory (null on MPI ranks other than 0, which never write it).</summary>
      Lock: RunLock }

    interface IDisposable with
        member this.Dispose() =
            if not (isNull (box this.Lock)) then (this.Lock :> IDisposable).Dispose()
            (this.Carried :> IDisposable).Dispose()
            this.Optimizer.Dispose()
            this.Model.Dispose()
            if not (obj.ReferenceEquals(this.TestDataset, this.Dataset)) then (this.TestDataset :> IDisposable).Dispose()
            (this.Dataset :> IDisposable).Dispose()

/// <summary>Setting a run up: checks before any data is read, data and its cross-checks, model, optimizer, restore.</summary>
[<RequireQualifiedAccess>]
module Setup =

    /// <summary>Splits a training split per class, in a seeded shuffle: the first <paramref name="holdoutPerClass"/>
    /// images of each class are held out (for calibration), the next <paramref name="perClass"/> (all when 0) train.
    /// Returns (training, held-out); each keeps the original order of its images.</summary>
    [<CompiledName("SplitTraining")>]
    let splitTraining (split: ISplit, perClass: int, holdoutPerClass: int, seed: int) : ISplit * ISplit =
        let training, held = Split.perClass (split.Labels, perClass, holdoutPerClass, seed)
        Split.subset split training, Split.subset split held

    /// <summary>The indices, in the training split, of the images a run trains on: all but the held-out images, at
    /// most TRAIN.PER_CLASS per class (sorted).</summary>
    [<CompiledName("TrainingIndices")>]
    let trainingIndices (settings: TrainingSettings) (dataset: Dataset) : int[] =
        if settings.PerClass > 0 || settings.HoldoutPerClass > 0 then
            fst (Split.perClass (dataset.Train.Labels, settings.PerClass, settings.HoldoutPerClass, settings.Seed))
        else Array.init dataset.Train.Count id

    /// <summary>The images a run trains on: the training split less held-out images, at most TRAIN.PER_CLASS per class.</summary>
    [<CompiledName("TrainingImages")>]
    let trainingImages (settings: TrainingSettings) (dataset: Dataset) : ISplit =
        if settings.PerClass > 0 || settings.HoldoutPerClass > 0 then Split.subset dataset.Train (trainingIndices settings dataset)
        else dataset.Train

    /// <summary>Fails before reading any data when the run directory cannot be written.</summary>
    let private probeWritable (runDir: string) =
        try
            Directory.CreateDirectory runDir |> ignore
            let probe = Path.Combine(runDir, $".bake-write-test-{Guid.NewGuid():N}")
            File.WriteAllText(probe, "")
            File.Delete probe
        with
        | :? IOException | :? UnauthorizedAccessException as e ->
            raise (BakeException($"cannot write the run directory {runDir} (OUT_DIR): {e.Message}", e))

    /// <summary>Removes what killed writers left behind (<c>.*.tmp</c> files and folders of atomic writes, write probes)
    /// in the run directory and its checkpoints folder. Only the lock's holder may: no other writer is running.</summary>
    let private removeLeftovers (runDir: string) =
        for dir in [ runDir; Path.Combine(runDir, "checkpoints") ] do
            if Directory.Exists dir then
                for entry in Directory.EnumerateFileSystemEntries dir do
                    let name = Path.GetFileName entry
                    if name.StartsWith "." && (name.EndsWith ".tmp" || name.StartsWith ".bake-write-test-") then
                        try
                            if Directory.Exists entry then Directory.Delete(entry, true) else File.Delete entry
                        with _ -> ()

    /// <summary>A run directory's identity is fixed by its first write: a config.yaml of another identity (a run
    /// killed before its first checkpoint, started with other settings) is refused like a checkpoint of one.</summary>
    let private requireSameRun (runDir: string) (config: Config) =
        let written = Path.Combine(runDir, RunDirectory.ConfigFile)
        if File.Exists written then
            let existing =
                try Configs.load (written, [])
                with :? UsageException as e -> raise (UsageException $"{runDir} (OUT_DIR) holds a config.yaml that is not a valid configuration ({e.Message}): choose another OUT_DIR")
            if Configs.hash existing <> Configs.hash config then
                raise (UsageException $"{runDir} (OUT_DIR) holds a run with another configuration (compare {written}): choose another OUT_DIR to start a new run")

    /// <summary>The checkpoint to continue, by pycls's TRAIN.AUTO_RESUME rule (default True): a run directory that
    /// holds a checkpoint is continued, so running the same command again finishes an interrupted run (or just
    /// reports a finished one); with it False, only an explicit resume reuses the directory.</summary>
    let private checkpointToContinue (runDir: string) (settings: TrainingSettings) (resume: bool) : string option =
        let existing = Checkpoints.resolve (runDir, "last")
        match existing with
        | Some _ when not (resume || settings.AutoResume) ->
            raise (UsageException($"{runDir} (OUT_DIR) already holds a run (checkpoints/last.json) and TRAIN.AUTO_RESUME is False: resume it or choose another OUT_DIR", "resume"))
        | None when resume ->
            let expected = Path.Combine(runDir, "checkpoints", "last.json")
            raise (UsageException($"resume: no checkpoint in {runDir} (OUT_DIR; expected {expected})", "resume"))
        | found -> found

    /// <summary>Sets BN.MOM on every BatchNorm of a model. Momentum only steers the running statistics while training,
    /// so it need not be recorded in checkpoints.</summary>
    let private setBatchNormMomentum (model: Classifier) (momentum: float) =
        for m in model.modules () do
            match m with
            | :? Modules.BatchNorm as norm -> norm.momentum <- momentum
            | _ -> ()

    /// <summary>The training and test datasets, cross-checked now rather than at the first evaluation, an epoch into
    /// training. The caller owns both (the same object when the run tests on the training dataset's test split).</summary>
    let private loadData (settings: TrainingSettings) : Dataset * Dataset =
        let dataset = Datasets.loadIn (settings.Dataset, settings.Format, settings.TrainingSelection)
        try
            let testDataset =
                match settings.TestData with
                | spec, _ when spec = settings.Dataset -> dataset
                // Only its test split is read (normalised with the training dataset's statistics).
                | spec, format -> Datasets.loadTestSplit (spec, format)
            let refuse message =
                if not (obj.ReferenceEquals(testDataset, dataset)) then (testDataset :> IDisposable).Dispose()
                raise (UsageException message)
            if testDataset.Classes.Length <> dataset.Classes.Length then
                refuse $"TEST.DATASET {settings.TestDataset} has {testDataset.Classes.Length} classes but TRAIN.DATASET {settings.Dataset} has {dataset.Classes.Length}"
            if testDataset.ImageShape[0] <> dataset.ImageShape[0] then
                refuse $"TEST.DATASET {settings.TestDataset} has {testDataset.ImageShape[0]}-channel images but TRAIN.DATASET {settings.Dataset} has {dataset.ImageShape[0]}-channel ones"
            // Checkpoints record the dataset's class names and rebuild the model with that many logits, so a head of
            // another width would train but could never be evaluated, exported or used for prediction.
            if settings.Classes > 0 && settings.Classes <> dataset.Classes.Length then
                refuse $"MODEL.NUM_CLASSES = {settings.Classes} but the dataset {dataset.Name} has {dataset.Classes.Length} classes: set it to {dataset.Classes.Length} or to 0 (taken from the dataset)"
            dataset, testDataset
        with _ ->
            (dataset :> IDisposable).Dispose()
            reraise ()

    /// <summary>What <see cref="M:Bake.Core.Setup.Create"/> does once rank 0 holds the run directory's lock (the
    /// other ranks of a data-parallel run hold none: rank 0 alone checks and writes the directory).</summary>
    let private createIn (config: Config, settings: TrainingSettings, resume: bool, runDir: string, lock: RunLock, world: World) : TrainingSetup =
        // The caller releases the lock if this fails.
        if world.IsRoot then
            removeLeftovers runDir
            requireSameRun runDir config
        let existing = checkpointToContinue runDir settings resume
        // The other ranks wait for rank 0's checks, then read the same checkpoint (a directory all ranks see).
        world.Barrier()
        let dataset, testDataset = loadData settings
        let mutable owned : IDisposable list = [ (if obj.ReferenceEquals(testDataset, dataset) then null else testDataset :> IDisposable); dataset ]
        let own (d: IDisposable) = owned <- d :: owned
        try
            let train = trainingImages settings dataset
            let classes = dataset.Classes.Length
            let trainTransform, testTransform, size = settings.Transforms dataset
            let device = torch.Device settings.Device
            torch.manual_seed (int64 settings.Seed) |> ignore
            let model = Models.create (settings.Model, classes, dataset.ImageShape[0], size)
            own (model :> IDisposable)
            setBatchNormMomentum model settings.BatchNormMomentum
            if settings.Weights <> "" then Weights.load (model, settings.Weights)
            model.``to`` device |> ignore
            // Before the optimizer, so that its momentum buffers follow the parameters' layout.
            Classifier.useChannelsLast (model, settings.ChannelsLast)
            let optimizer = Optimizer.sgd (model, settings.Optimizer, settings.Schedule.BaseLr)
            own (optimizer :> IDisposable)
            let carried = new CarriedState()
            own (carried :> IDisposable)
            let configHash = Configs.hash config
            let resumed =
                match existing with
                | Some checkpoint ->
                    let state = Checkpoints.readState checkpoint
                    if state.ConfigHash <> configHash then
                        let written = Path.Combine(runDir, RunDirectory.ConfigFile)
                        raise (UsageException $"{runDir} (OUT_DIR) holds a run trained with another configuration (checkpoint {checkpoint}; compare {written}): choose another OUT_DIR to start a new run")
                    Checkpoints.load (checkpoint, model, Some optimizer)
                    // The file holds the momentum buffers in the standard layout; they follow the parameters again.
                    MemoryFormat.applyToOptimizer (optimizer, settings.ChannelsLast)
                    Checkpoints.loadMethodState (checkpoint, carried, device)
                    Some(checkpoint, state)
                | None ->
                    settings.Method.Initialise carried train.Labels classes
                    for pair in carried.Tensors |> Seq.toList do
                        if pair.Value.device <> device then carried.Set(pair.Key, pair.Value.``to`` device)
                    None
            // Identical weights on every rank: a fresh run's seeded initialisation, or the checkpoint, from rank 0.
            DataParallel.broadcastModel (world, model)
            // SyncBN: hooks that live as long as the model (nothing on one process, where BN sees the whole batch).
            if Keys.TRAIN.SYNC_BN.Of config then SyncBatchNorm.attach (world, model) |> ignore
            if world.IsRoot then RunDirectory.writeConfig (runDir, config)
            let threads = torch.get_num_threads ()
            let warnings =
                match resumed with
                | Some(checkpoint, state) when state.Threads > 0 && state.Threads <> threads && state.Epoch < settings.Epochs ->
                    [ $"resuming {checkpoint}, written with {state.Threads} intra-op threads, with {threads}: the run continues, but its results will not be bit-identical to an uninterrupted run (libtorch's reductions depend on the thread count)" ]
                | _ -> []
            { RunDir = runDir; Config = config; Settings = settings; Device = device
              Dataset = dataset; TestDataset = testDataset; Train = train; Classes = classes
              TrainTransform = trainTransform; TestTransform = testTransform; ImageSize = size
              Model = model; Optimizer = optimizer; Carried = carried; ConfigHash = configHash; Resumed = resumed
              Warnings = warnings; Lock = lock }
        with _ ->
            for d in owned do
                if not (isNull d) then d.Dispose()
            reraise ()

    /// <summary>Sets a run up as the settings say (pycls's <c>setup_model</c>, loaders and checkpoint restore): checks
    /// that the run directory can be written and may be (re)used, loads and cross-checks the data, builds the model,
    /// the optimizer and the method's carried state, restores them from the checkpoint a resume continues (refusing
    /// one of another configuration), and writes config.yaml.</summary>
    /// <param name="config">The resolved configuration (written to config.yaml; its hash identifies the run).</param>
    /// <param name="settings">Its validated settings.</param>
    /// <param name="resume">Continue the run in OUT_DIR from its last checkpoint (it must have one).</param>
    /// <exception cref="T:Bake.Core.UsageException">The run directory holds another run, or the data contradicts the
    /// settings.</exception>
    /// <exception cref="T:Bake.Core.BakeException">The run directory cannot be written, or the data cannot be read.</exception>
    [<CompiledName("Create")>]
    let create (config: Config, settings: TrainingSettings, resume: bool) : TrainingSetup =
        // Every consumer (CLI, C#, scripts) trains with freed memory kept for the next step.
        Runtime.keepFreedMemory ()
        if String.IsNullOrWhiteSpace settings.OutDir then raise (UsageException "OUT_DIR is empty: name the run directory")
        if settings.Device.StartsWith "cuda" && not (torch.cuda.is_available ()) then
            raise (
                UsageException
                    $"DEVICE = {settings.Device}: CUDA is not available to this build of Bake, which runs on libtorch's CPU package (libtorch-cpu, 2.10): use DEVICE=cpu, or build Bake against TorchSharp's CUDA packages on a machine with an NVIDIA GPU and driver"
            )
        let runDir = Path.GetFullPath settings.OutDir
        let world = World.Current
        DataParallel.requireSupported (world, settings)
        let created = not (Directory.Exists runDir)
        let lock =
            if world.IsRoot then
                probeWritable runDir
                RunLock.Acquire runDir
            else Unchecked.defaultof<RunLock>
        try
            createIn (config, settings, resume, runDir, lock, world)
        with _ ->
            // A run that failed before training (bad data, a contradiction) leaves no directory it created behind;
            // removed while the lock is held, so no other training can be using it.
            if created && world.IsRoot then (try Directory.Delete(runDir, true) with _ -> ())
            if not (isNull (box lock)) then (lock :> IDisposable).Dispose()
            reraise ()
