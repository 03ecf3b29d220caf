namespace Bake.Core

open System.IO
open Bake.Core.Data
open Bake.Core.Models

/// <summary>A run directory's configuration: where its config.yaml is, the config and its validated settings.</summary>
[<NoComparison; NoEquality>]
type RunConfiguration =
    { Directory: string
      ConfigPath: string
      Config: Config
      Settings: TrainingSettings }

/// <summary>A checkpoint opened for use: its folder, its state, and the run it belongs to (None for a checkpoint
/// folder copied out of its run directory).</summary>
[<NoComparison; NoEquality>]
type OpenedCheckpoint =
    { Checkpoint: string
      State: CheckpointState
      Run: RunConfiguration option }

/// <summary>Opening runs and checkpoints: the one place that knows how a run directory's config.yaml, its checkpoints
/// and the dataset a run was trained and tested on belong together (evaluation, robustness, soft-target figures).</summary>
[<RequireQualifiedAccess>]
module RunDirectory =

    /// <summary>The resolved configuration's file name in a run directory.</summary>
    [<Literal>]
    let ConfigFile = "config.yaml"

    /// <summary>Writes the resolved configuration into a run directory, atomically.</summary>
    [<CompiledName("WriteConfig")>]
    let writeConfig (runDir: string, config: Config) : unit =
        Files.writeAllTextAtomic (Path.Combine(runDir, ConfigFile)) (Configs.toYaml config)

    /// <summary>The configuration of a run directory, or None when it has no config.yaml.</summary>
    /// <exception cref="T:Bake.Core.UsageException">The config.yaml is invalid; the message names it.</exception>
    [<CompiledName("TryConfiguration")>]
    let tryConfiguration (runDir: string) : RunConfiguration option =
        let directory = Path.GetFullPath runDir
        let path = Path.Combine(directory, ConfigFile)
        if File.Exists path then
            let config = Configs.load (path, [])
            Some { Directory = directory; ConfigPath = path; Config = config; Settings = Settings.ofConfigOrThrow config }
        else None

    /// <summary>Opens a checkpoint folder, or a run directory's last checkpoint (its final model), with its run.</summary>
    /// <exception cref="T:Bake.Core.BakeException">No checkpoint there, or its state cannot be read.</exception>
    [<CompiledName("OpenCheckpoint")>]
    let openCheckpoint (path: string) : OpenedCheckpoint =
        let checkpoint = Checkpoints.ofPath path
        { Checkpoint = checkpoint
          State = Checkpoints.readState checkpoint
          Run = tryConfiguration (Checkpoints.runDirectory checkpoint) }

    /// <summary>The run of an opened checkpoint, or an error naming the missing config.yaml.</summary>
    /// <exception cref="T:Bake.Core.BakeException">The checkpoint has no run directory around it.</exception>
    [<CompiledName("RequireRun")>]
    let requireRun (opened: OpenedCheckpoint) : RunConfiguration =
        match opened.Run with
        | Some run -> run
        | None ->
            let expected = Path.Combine(Checkpoints.runDirectory opened.Checkpoint, ConfigFile)
            raise (BakeException $"{opened.Checkpoint}: the run's {ConfigFile} is missing ({expected})")

    /// <summary>The checkpoint's model with its weights, in eval mode on the CPU; the caller owns it.</summary>
    [<CompiledName("LoadModel")>]
    let loadModel (opened: OpenedCheckpoint) : Classifier = snd (Checkpoints.loadModel opened.Checkpoint)

    /// <summary>The dataset to test a checkpoint on and the transform to test it with: <paramref name="datasetSpec"/>
    /// (its layout detected) or the one the run evaluated on (TEST.DATASET, else TRAIN.DATASET in DATA.FORMAT),
    /// normalised with the checkpoint's statistics (the model expects the training data's normalisation, whatever it
    /// is tested on), transformed as the run tested (its TRAIN/TEST.IM_SIZE), else with the dataset's preset. The
    /// caller owns (and disposes) the dataset.</summary>
    /// <exception cref="T:Bake.Core.UsageException">No dataset given and the checkpoint has no run.</exception>
    /// <exception cref="T:Bake.Core.BakeException">The dataset has another class count than the checkpoint.</exception>
    [<CompiledName("TestData")>]
    let testData (opened: OpenedCheckpoint, datasetSpec: string option) : Dataset * TransformSpec =
        let spec, format =
            match datasetSpec, opened.Run with
            | Some spec, _ -> spec, None
            | None, Some run -> run.Settings.TestData
            | None, None ->
                raise (UsageException $"{opened.Checkpoint}: the run's {ConfigFile} was not found next to the checkpoint; name the dataset to test on")
        // Only the test split is read, normalised with the checkpoint's statistics: no training image is decoded.
        let dataset = Datasets.loadTestSplit (spec, format)
        try
            Checkpoints.requireSameClasses (opened.Checkpoint, opened.State, spec, dataset)
            let normalisedAsTrained = { dataset with Mean = opened.State.Mean; Std = opened.State.Std }
            let transform =
                match opened.Run with
                | Some run -> let _, test, _ = run.Settings.Transforms normalisedAsTrained in test
                | None -> Transforms.forEvaluation normalisedAsTrained
            normalisedAsTrained, transform
        with _ ->
            (dataset :> System.IDisposable).Dispose()
            reraise ()

    /// <summary>The dataset a run trained on (TRAIN.DATASET in DATA.FORMAT); the caller owns it.</summary>
    [<CompiledName("TrainingData")>]
    let trainingData (run: RunConfiguration) : Dataset =
        Datasets.loadIn (run.Settings.Dataset, run.Settings.Format, run.Settings.TrainingSelection)
